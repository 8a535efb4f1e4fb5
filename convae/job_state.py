"""What a training job is, the copy of it that pages draw, and how long the queue waits (convae.jobs runs
the jobs). A job knows who waits for it: one entry per browser session that asked for its configuration,
with that student's name and guess; the first of them who gave either is the run's owner."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from convae.snapshots import Snapshots, Weights
from convae.store import StoredRun
from convae.student import Waiter
from convae.train import Progress, TrainConfig


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # was running when the server stopped (found in the queue file after a restart)

    @property
    def active(self) -> bool:
        return self in (JobState.QUEUED, JobState.RUNNING)


@dataclass
class JobView:
    """A consistent copy of a job's state for a page to draw."""

    id: str
    config: TrainConfig
    state: JobState = JobState.QUEUED
    position: int | None = None  # 1-based place in the queue while queued (set in views only)
    latest: Progress | None = None
    steps: list[int] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    preview: torch.Tensor | None = None
    error: str | None = None
    run: StoredRun | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    requests: int = 1  # how many times this config was asked for while the job was active
    restarts: list[str] = field(default_factory=list)  # what happened at each restart after a collapse, in words
    resumed_from: int | None = None  # the epoch this job went on from, when it resumed a kept one
    stopped_after: int | None = None  # for a stopped job: its last finished epoch (None: stopped in the first)
    notes: list[str] = field(default_factory=list)  # what a person should know (an epoch not kept on disk, ...)
    snapshots: Snapshots | None = None  # the run's latent snapshots so far (convae.snapshots)
    weights: Weights | None = None  # a copy of its latest weights: with each snapshot and at every epoch end
    owner: str | None = None  # the name stored with the run (convae.student.clean_name), if anyone gave one
    guess: float | None = None  # the owner's guess of the final validation MSE
    priority: bool = False  # queued at the front (the presenter's jobs)
    starts_in_s: float | None = None  # while queued: about how long until it starts (set in views only)


@dataclass
class Job(JobView):
    """A job as the manager keeps it: what its views show, and what only the manager uses."""

    fresh: bool = False  # start over instead of resuming the configuration's kept epoch
    stop: threading.Event = field(default_factory=threading.Event)
    done_event: threading.Event = field(default_factory=threading.Event)
    waiters: dict[str, Waiter] = field(default_factory=dict)  # by session id ("": asked without one)

    @property
    def wanted(self) -> bool:
        """True while anyone waits for it: a session, or a caller without one (never dropped by a replace)."""
        return bool(self.waiters)

    def waits_for(self, session: str) -> bool:
        return session in self.waiters

    def add_waiter(self, waiter: Waiter) -> None:
        """A session asks for this job (again: its name and guess are updated; a caller without a session
        does not overwrite the first such caller's)."""
        if waiter.session or waiter.session not in self.waiters:
            self.waiters[waiter.session] = waiter
        self._credit()

    def drop_waiter(self, session: str) -> None:
        self.waiters.pop(session, None)
        self._credit()

    def _credit(self) -> None:
        """The run's owner and guess: those of the first waiter who gave a name or a guess."""
        first = next((w for w in self.waiters.values() if w.name is not None or w.guess is not None), None)
        self.owner, self.guess = (first.name, first.guess) if first else (None, None)


class JobRefusedError(RuntimeError):
    """A session asked for a second training while its first one runs; the message says what to do."""


@dataclass(frozen=True)
class Submission:
    """What a request for a training did: the job that trains it, and the session's queued job it replaced."""

    job_id: str
    replaced: TrainConfig | None = None  # the configuration of the session's queued job, given up for this one
    replaced_kept: bool = False  # that job stays queued: another session (or caller) still waits for it


# ------------------------------------------------------------------------------- how long the queue waits

# From the dashboard's own timings on a 2-core CPU: about 4,500 images/s at batch 32 for Q1 = Q2 = 32.
_BASE_RATE = 4500.0


def estimate_seconds(config: TrainConfig) -> float:
    """A rough duration of a whole training of `config` on this kind of machine (a CPU)."""
    n = config.train_size or 60000
    rate = _BASE_RATE * (1.8 if config.batch_size >= 128 else 1.0) * (32 * 32) / max(256, config.q1 * config.q2)
    return config.epochs * (n / min(rate, 20000.0) + 1.5)


def remaining_seconds(job: JobView, now: float | None = None) -> float:
    """About how long a job has left: the engine's own estimate while it runs, else the rough one."""
    if job.latest is not None and job.latest.eta_s is not None:
        return max(0.0, job.latest.eta_s)
    if job.state is JobState.RUNNING and job.started is not None:
        return max(0.0, estimate_seconds(job.config) - ((now or time.time()) - job.started))
    return estimate_seconds(job.config)


def start_times(running_left: Sequence[float], queued: Sequence[float], slots: int) -> list[float]:
    """When each queued job starts, in seconds from now: `slots` jobs run at once, the running ones end
    after `running_left`, each queued one (in order) takes the first free slot and lasts `queued[i]`."""
    slots = max(1, slots)  # a closing server (no slot) is estimated as if it went on
    free = sorted([*running_left, *[0.0] * max(0, slots - len(running_left))])[:slots]
    starts = []
    for need in queued:
        first = min(range(len(free)), key=free.__getitem__)
        starts.append(free[first])
        free[first] += need
    return starts


def about(seconds: float) -> str:
    """A wait or a duration in words: "about 40 s", "about 3 min"."""
    return f"about {seconds / 60:.0f} min" if seconds >= 90 else f"about {max(1.0, seconds):.0f} s"
