"""Background training jobs: a first-in-first-out queue, a concurrency limit, cancel, dedup.

One `JobManager` per server process. Each job trains in a thread of its own and keeps the latest
progress; pages read a `snapshot()` of it (never a live object), so no UI code runs in a worker.
The same config asked for twice while it is queued or running is attached to the one job.
"""

from __future__ import annotations

import collections
import enum
import itertools
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from convae.analysis import class_means, encode
from convae.data import load_splits
from convae.store import RunStore, StoredRun
from convae.train import Collapsed, NonFiniteLoss, Progress, TrainConfig, TrainingStopped, pick_device, train

log = logging.getLogger("convae.jobs")


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in (JobState.QUEUED, JobState.RUNNING)


@dataclass
class JobView:
    """A consistent copy of a job's state for a page to draw."""

    id: str
    config: TrainConfig
    state: JobState
    position: int | None  # 1-based place in the queue while queued
    latest: Progress | None
    steps: list[int]
    step_losses: list[float]
    epochs: list[dict]
    preview: torch.Tensor | None
    error: str | None
    run: StoredRun | None
    created: float
    started: float | None
    finished: float | None
    requests: int  # how many times this config was asked for while the job was active
    restarts: list[str]  # what happened at each restart after a collapse, in words


@dataclass
class Job:
    id: str
    config: TrainConfig
    state: JobState = JobState.QUEUED
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
    requests: int = 1
    restarts: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    done_event: threading.Event = field(default_factory=threading.Event)


def default_concurrency() -> int:
    """$CONVAE_MAX_JOBS, else 1 (one training at a time uses all CPU cores best; CPU jobs never overlap)."""
    env = os.environ.get("CONVAE_MAX_JOBS")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"CONVAE_MAX_JOBS must be a whole number, got {env!r}.") from None
        if value < 1:
            raise ValueError(f"CONVAE_MAX_JOBS must be 1 or more, got {value}.")
        return value
    return 1


def _device_type(device: str) -> str:
    """The kind of device ("cpu", "cuda", "mps") that `device` names or "auto" picks."""
    return pick_device(device).type if device == "auto" else torch.device(device).type


class JobManager:
    """Runs training jobs in background threads, at most `max_concurrent` at a time.

    On the CPU that is one at a time whatever is asked: a CPU run changes torch's intra-op thread
    count (convae.engines.EagerSteps), and two at once would change each other's, and so their
    results. On a GPU the eager engine changes no process-wide setting, so jobs may overlap.
    """

    def __init__(
        self,
        store: RunStore,
        data_dir: Path | None = None,
        max_concurrent: int | None = None,
        device: str = "auto",
        keep_finished: int = 50,
    ) -> None:
        self.store = store
        self.data_dir = data_dir
        self.device = device
        self.max_concurrent = max_concurrent or default_concurrency()
        if self.max_concurrent > 1 and _device_type(device) == "cpu":
            log.warning(
                "CPU training jobs run one at a time, not %d as asked: each sets torch's intra-op thread count, "
                "which threads of other jobs would pick up (CONVAE_MAX_JOBS above 1 is for GPUs).",
                self.max_concurrent,
            )
            self.max_concurrent = 1
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._running: set[str] = set()
        self._ids = itertools.count(1)
        self._keep_finished = keep_finished

    # ------------------------------------------------------------------------------ public
    def submit(self, config: TrainConfig) -> str:
        """Queue a training of `config`, or return the id of the active job that trains it already."""
        with self._lock:
            for job in self._jobs.values():
                # A job being cancelled (stop set, still finishing its step) no longer trains this config.
                if job.state.active and job.config == config and not job.stop.is_set():
                    job.requests += 1
                    log.info("%s attached (request %d): %s", job.id, job.requests, config.key())
                    return job.id
            job = Job(id=f"job-{next(self._ids)}", config=config)
            log.info("%s queued: %s", job.id, config.key())
            self._jobs[job.id] = job
            self._queue.append(job.id)
            self._prune()
        self._dispatch()
        return job.id

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop (a queued one is dropped at once). True if it was still active."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not job.state.active:
                return False
            job.stop.set()
            if job.state is JobState.QUEUED:
                self._queue.remove(job_id)
                self._finish(job, JobState.CANCELLED)
        return True

    def snapshot(self, job_id: str) -> JobView | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            return self._view(job)

    def active_for(self, config: TrainConfig) -> str | None:
        """The id of the queued or running job for this config, if any (to re-attach a new tab)."""
        with self._lock:
            for job in self._jobs.values():
                if job.state.active and job.config == config and not job.stop.is_set():
                    return job.id
        return None

    def latest_for(self, config: TrainConfig) -> str | None:
        """The newest job of any state for this config."""
        with self._lock:
            ids = [j.id for j in self._jobs.values() if j.config == config]
        return ids[-1] if ids else None

    def views(self) -> list[JobView]:
        with self._lock:
            return [self._view(j) for j in self._jobs.values()]

    def wait(self, job_id: str, timeout: float | None = None) -> JobView | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            return None
        job.done_event.wait(timeout)
        return self.snapshot(job_id)

    # ----------------------------------------------------------------------------- internal
    def _view(self, job: Job) -> JobView:
        position = list(self._queue).index(job.id) + 1 if job.state is JobState.QUEUED else None
        return JobView(
            job.id,
            job.config,
            job.state,
            position,
            job.latest,
            list(job.steps),
            list(job.step_losses),
            list(job.epochs),
            job.preview,
            job.error,
            job.run,
            job.created,
            job.started,
            job.finished,
            job.requests,
            list(job.restarts),
        )

    def _prune(self) -> None:
        finished = [j for j in self._jobs.values() if not j.state.active]
        for job in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._jobs[job.id]

    def _finish(self, job: Job, state: JobState, error: str | None = None) -> None:
        job.state, job.error, job.finished = state, error, time.time()
        job.done_event.set()
        log.info("%s %s: %s%s", job.id, state, job.config.key(), f" ({error})" if error else "")

    def _dispatch(self) -> None:
        with self._lock:
            while self._queue and len(self._running) < self.max_concurrent:
                job = self._jobs[self._queue.popleft()]
                job.state, job.started = JobState.RUNNING, time.time()
                self._running.add(job.id)
                log.info("%s running: %s", job.id, job.config.key())
                threading.Thread(target=self._work, args=(job,), name=job.id, daemon=True).start()

    def _on_event(self, job: Job, p: Progress) -> None:
        with self._lock:
            job.latest = p
            if p.kind == "restart":  # a collapsed attempt: its curve goes, the note stays
                job.restarts.append(p.note or "restarted")
                job.steps, job.step_losses, job.epochs = [], [], []
            if p.kind == "step" and p.train_loss is not None:
                job.steps.append(p.global_step)
                job.step_losses.append(p.train_loss)
            if p.kind == "epoch":
                job.epochs.append({"epoch": p.epoch, "train_loss": p.train_loss, "val_loss": p.val_loss})
            if p.preview is not None:
                job.preview = p.preview

    def _work(self, job: Job) -> None:
        try:
            splits = load_splits(self.data_dir, job.config.dataset)
            result = train(job.config, splits, lambda p: self._on_event(job, p), job.stop, self.device)
            means = class_means(encode(result.model, splits.val_images), splits.val_labels)
            if job.stop.is_set():
                raise TrainingStopped("stopped after the last epoch")
            run = self.store.save(result, means)
            with self._lock:
                job.run = run
                self._finish(job, JobState.DONE)
        except TrainingStopped:
            with self._lock:
                self._finish(job, JobState.CANCELLED)
        except (NonFiniteLoss, Collapsed) as e:
            with self._lock:
                self._finish(job, JobState.FAILED, str(e))
        except Exception as e:  # a job must never take the server down; the page shows the reason
            log.error("training job %s failed:\n%s", job.id, traceback.format_exc())
            reason = str(e).strip() or type(e).__name__
            with self._lock:
                self._finish(job, JobState.FAILED, f"{type(e).__name__}: {reason}")
        finally:
            with self._lock:
                self._running.discard(job.id)
            self._dispatch()
