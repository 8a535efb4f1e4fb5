"""What a training job is, and the copy of it that pages draw (convae.jobs runs the jobs)."""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field

import torch

from convae.store import StoredRun
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


@dataclass
class Job(JobView):
    """A job as the manager keeps it: what its views show, and what only the manager uses."""

    fresh: bool = False  # start over instead of resuming the configuration's kept epoch
    stop: threading.Event = field(default_factory=threading.Event)
    done_event: threading.Event = field(default_factory=threading.Event)
