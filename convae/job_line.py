"""The line of training jobs: which jobs a server knows, their order, who waits for each, and when each
queued one is likely to start. Bookkeeping only (no threads, no files): convae.jobs.JobManager holds
one and calls it with its lock held.

The rules a class needs: the same configuration asked for twice while it is queued or running is one
job; a browser session has at most one queued or running job (asking for another configuration replaces
its queued one, which stays queued while someone else still waits for it, and is refused while its job
runs); a priority job (the presenter's) queues behind the other priority jobs, ahead of everyone else.
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
from collections.abc import Callable

from convae.config import TrainConfig, epochs_text
from convae.job_state import (
    Job,
    JobRefusedError,
    JobState,
    JobView,
    Submission,
    about,
    estimate_seconds,
    remaining_seconds,
    start_times,
)
from convae.student import Waiter

log = logging.getLogger("convae.jobs")


class JobLine:
    """The jobs of one manager, the queue's order and who waits for each (the caller holds its lock)."""

    def __init__(self, keep_finished: int = 50) -> None:
        self.jobs: dict[str, Job] = {}
        self.queue: collections.deque[str] = collections.deque()
        self.running: set[str] = set()
        self._ids = itertools.count(1)
        self._keep_finished = keep_finished

    def new_job(self, config: TrainConfig, fresh: bool, priority: bool = False, created: float | None = None) -> Job:
        job = Job(id=f"job-{next(self._ids)}", config=config, fresh=fresh, priority=priority)
        if created is not None:
            job.created = created
        self.jobs[job.id] = job
        return job

    def active(self, match: Callable[[Job], bool]) -> Job | None:
        """The queued or running job that `match` picks; one being cancelled (stop set, still finishing
        its step) no longer counts."""
        return next((j for j in self.jobs.values() if j.state.active and not j.stop.is_set() and match(j)), None)

    def request(self, config: TrainConfig, fresh: bool, waiter: Waiter, priority: bool) -> Submission:
        """Queue `config` for `waiter` (or join its active job), by the rules above."""
        job = self.active(lambda j: j.config == config)
        mine = self.active(lambda j: j.waits_for(waiter.session)) if waiter.session else None
        replaced, kept = None, False
        if mine is not None and mine is not job:
            if mine.state is JobState.RUNNING:
                raise JobRefusedError(refusal(mine))
            replaced, kept = mine.config, self.leave(mine, waiter.session)
        if job is None:
            job = self.new_job(config, fresh, priority)
            log.info("%s queued: %s", job.id, config.key())
            self.enqueue(job)
        else:
            job.requests += 1
            log.info("%s attached (request %d): %s", job.id, job.requests, config.key())
            if priority and not job.priority and job.state is JobState.QUEUED:
                job.priority = True
                self.queue.remove(job.id)
                self.enqueue(job)
        job.add_waiter(waiter)
        self.prune()
        return Submission(job.id, replaced, kept)

    def enqueue(self, job: Job) -> None:
        """Into the line: a priority job behind the other priority jobs (all at the front), others at the end."""
        if job.priority:
            front = next((n for n, i in enumerate(self.queue) if not self.jobs[i].priority), len(self.queue))
            self.queue.insert(front, job.id)
        else:
            self.queue.append(job.id)

    def leave(self, job: Job, session: str) -> bool:
        """A session gives up its place on a queued job, which is dropped when nobody else waits for it.
        True if it stays queued."""
        job.drop_waiter(session)
        if job.wanted:
            log.info("%s: one session left it, %d still wait", job.id, len(job.waiters))
            return True
        job.stop.set()
        self.queue.remove(job.id)
        self.finish(job, JobState.CANCELLED, "replaced by another configuration of the same session")
        return False

    def finish(self, job: Job, state: JobState, error: str | None = None) -> None:
        job.state, job.error, job.finished = state, error, time.time()
        job.done_event.set()
        log.info("%s %s: %s%s", job.id, state, job.config.key(), f" ({error})" if error else "")

    def waits(self, slots: int) -> dict[str, float]:
        """About how many seconds until each queued job starts: the running jobs' time left, then the
        queued ones ahead, `slots` at a time."""
        now = time.time()
        running = [remaining_seconds(self.jobs[i], now) for i in self.running]
        queued = [self.jobs[i] for i in self.queue]
        starts = start_times(running, [estimate_seconds(j.config) for j in queued], slots)
        return {j.id: s for j, s in zip(queued, starts, strict=True)}

    def view(self, job: Job, waits: dict[str, float]) -> JobView:
        """A copy of a job for a page (its lists copied too), with its place in the line and its wait."""
        position = list(self.queue).index(job.id) + 1 if job.state is JobState.QUEUED else None
        copied = {name: getattr(job, name) for name in JobView.__dataclass_fields__}
        copied = {k: list(v) if isinstance(v, list) else v for k, v in copied.items()}
        return JobView(**{**copied, "position": position, "starts_in_s": waits.get(job.id)})

    def prune(self) -> None:
        finished = [j for j in self.jobs.values() if not j.state.active]
        for job in finished[: max(0, len(finished) - self._keep_finished)]:
            del self.jobs[job.id]


def refusal(running: Job) -> str:
    """Why a session's second training is refused while its first runs, and what to do."""
    c = running.config
    epochs = epochs_text(c.epochs)
    return (
        f"Your training of Q1={c.q1}, Q2={c.q2}, K={c.k} ({epochs}) is running, and each person trains "
        f"one model at a time. Wait until it ends ({about(remaining_seconds(running))} left), or stop it first: "
        "show it (under Your training) and press Stop. Then press Train again."
    )
