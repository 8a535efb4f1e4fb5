"""Background training jobs: a first-in-first-out queue, a concurrency limit, cancel, dedup, fairness.

One `JobManager` per server process. Each job trains in a thread of its own and keeps the latest
progress; pages read a `snapshot()` of it (never a live object), so no UI code runs in a worker.
The same config asked for twice while it is queued or running is attached to the one job. A browser
session has at most one queued or running job (see `request`); priority jobs queue at the front.

Nothing is lost when the server stops: every epoch end is kept (convae.resume) and resumed when
the configuration is trained again; the queue lives in the runs folder (convae.queue_file); Stop
keeps the last finished epoch's model; a job holds its configuration's files while it trains.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from functools import partial
from pathlib import Path

import torch

from convae import kernels
from convae.analysis import class_means, encode
from convae.data import Splits, load_splits
from convae.job_line import JobLine
from convae.job_state import Job as Job  # re-exported with the four below: pages import them from here
from convae.job_state import JobRefusedError as JobRefusedError
from convae.job_state import JobState as JobState
from convae.job_state import JobView as JobView
from convae.job_state import Submission as Submission
from convae.queue_file import Entry, QueueFile
from convae.resume import EpochState, EpochWriter, ResumeError
from convae.store import RunBusyError, RunStore, StoredRun
from convae.student import Waiter, check_guess, clean_name
from convae.train import (
    Collapsed,
    NonFiniteLoss,
    Progress,
    TrainConfig,
    TrainingStopped,
    TrainResult,
    kept_result,
    pick_device,
    train,
)

log = logging.getLogger("convae.jobs")


def _rows(epochs: list[dict]) -> list[dict]:
    """A history's epoch rows as a job keeps them for the live chart."""
    return [{k: e[k] for k in ("epoch", "train_loss", "val_loss")} for e in epochs]


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
        persist: bool = True,
    ) -> None:
        """`persist`: write the queue to the runs folder and take over the queue of a server that is gone."""
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
        self._line = JobLine(keep_finished)  # the jobs, their order, who waits for each: used under self._lock
        self._jobs, self._queue, self._running = self._line.jobs, self._line.queue, self._line.running
        self._persist_lock = threading.Lock()  # one queue-file write at a time, each with the latest state
        self._queue_file: QueueFile | None = None
        self._notices: list[str] = []
        try:
            self._queue_file = QueueFile(store.root) if persist else None
            self._restore(self._queue_file.adopt() if self._queue_file else [])
        except OSError as e:  # an unwritable runs folder: train on, say so (saving will say it again)
            self._notices.append(
                f"The queue cannot be kept in {store.root} ({e.strerror or e}): it is lost if the server stops."
            )
            log.warning(self._notices[-1])

    # ------------------------------------------------------------------------------ public
    def submit(self, config: TrainConfig, fresh: bool = False, **who: object) -> str:
        """Queue a training of `config`, or return the id of the active job that trains it already: `request`
        (the same keywords), which also says what the request replaced."""
        return self.request(config, fresh, **who).job_id  # type: ignore[arg-type]

    def request(
        self,
        config: TrainConfig,
        fresh: bool = False,
        *,
        session: str | None = None,
        owner: str | None = None,
        guess: float | None = None,
        priority: bool = False,
    ) -> Submission:
        """Queue a training of `config`, or join the active job that trains it already. It resumes the
        configuration's kept epoch, if there is one, unless `fresh` says to start over.

        A `session` has at most one queued or running job: asking for another configuration replaces
        its queued one (which stays queued while another session still waits for it) and is refused with
        JobRefusedError while its job runs. `owner` and `guess` are bounded (convae.student; a bad guess raises
        ValueError) and stored with the run. `priority` queues the job at the front (the presenter's)."""
        waiter = Waiter(session or "", clean_name(owner), check_guess(guess))
        with self._lock:
            submission = self._line.request(config, fresh, waiter, priority)
        self._dispatch()
        return submission

    def job_of(self, session: str) -> str | None:
        """The id of the queued or running job that `session` waits for, if any."""
        with self._lock:
            job = self._line.active(lambda j: j.waits_for(session))
            return job.id if job else None

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop (a queued one is dropped at once). True if it was still active."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not job.state.active:
                return False
            job.stop.set()
            if job.state is JobState.QUEUED:
                self._queue.remove(job_id)
                self._line.finish(job, JobState.CANCELLED)
        self._persist()
        return True

    def notices(self) -> list[str]:
        """What went wrong with the queue file when this server read it (for the pages to show)."""
        return self._notices + (list(self._queue_file.problems) if self._queue_file else [])

    def close(self) -> None:
        """The server is going: no job starts any more, the queue file is let go of (its entries stay, for
        the next server to take over) and no longer written; running jobs are not stopped."""
        with self._lock:
            self.max_concurrent = 0
        if self._queue_file is not None:
            self._queue_file.close()
            self._queue_file = None

    def snapshot(self, job_id: str) -> JobView | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            return self._line.view(job, self._line.waits(self.max_concurrent) if job.state is JobState.QUEUED else {})

    def active_for(self, config: TrainConfig) -> str | None:
        """The id of the queued or running job for this config, if any (to re-attach a new tab)."""
        with self._lock:
            job = self._line.active(lambda j: j.config == config)
            return job.id if job else None

    def latest_for(self, config: TrainConfig) -> str | None:
        """The newest job of any state for this config."""
        with self._lock:
            ids = [j.id for j in self._jobs.values() if j.config == config]
        return ids[-1] if ids else None

    def views(self) -> list[JobView]:
        with self._lock:
            waits = self._line.waits(self.max_concurrent)
            return [self._line.view(j, waits) for j in self._jobs.values()]

    def wait(self, job_id: str, timeout: float | None = None) -> JobView | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            return None
        job.done_event.wait(timeout)
        return self.snapshot(job_id)

    # ----------------------------------------------------------------------------- internal
    def _dispatch(self) -> None:
        with self._lock:
            while self._queue and len(self._running) < self.max_concurrent:
                job = self._jobs[self._queue.popleft()]
                job.state, job.started = JobState.RUNNING, time.time()
                self._running.add(job.id)
                log.info("%s running: %s", job.id, job.config.key())
                threading.Thread(target=self._work, args=(job,), name=job.id, daemon=True).start()
        self._persist()

    def _restore(self, entries: list[Entry]) -> None:
        """Take over a gone server's entries: queued ones queue again, in order; running ones are interrupted."""
        with self._lock:
            for e in entries:
                if any(j.state.active and j.config == e.config for j in self._jobs.values()):
                    continue
                if e.state == "running" and self.store.completed_since(e.config, e.queued_at):
                    continue  # it ended just before the server stopped
                job = self._line.new_job(e.config, e.fresh, e.priority, created=e.queued_at)
                for waiter in e.waiters:
                    job.add_waiter(waiter)
                if e.state == "queued":
                    self._line.enqueue(job)
                    log.info("%s queued again after a restart: %s", job.id, e.config.key())
                else:
                    self._line.finish(job, JobState.INTERRUPTED, "the server stopped while it trained")
        self._dispatch()

    def _persist(self) -> None:
        """Write the queued and running jobs to the queue file (never called with self._lock held)."""
        queue_file = self._queue_file
        if queue_file is None:
            return
        with self._persist_lock:
            with self._lock:
                jobs = [j for j in self._jobs.values() if j.state is JobState.RUNNING]
                jobs += [self._jobs[i] for i in self._queue]
                entries = [
                    Entry(
                        j.config,
                        j.state.value,
                        j.fresh,
                        j.created,
                        waiters=tuple(j.waiters.values()),
                        priority=j.priority,
                    )
                    for j in jobs
                ]
            try:
                queue_file.write(entries)
            except OSError as e:
                log.warning("The queue could not be written to %s (%s).", queue_file.path, e)

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
            job.snapshots, job.weights = p.snapshots or job.snapshots, p.weights or job.weights  # the latest of each

    def _work(self, job: Job) -> None:
        try:
            splits = load_splits(self.data_dir, job.config.dataset)
            with self.store.claim(job.config):  # released before the job ends: a page may resume it at once
                state, run = self._train_and_keep(job, splits)
            with self._lock:
                job.run = run
                self._line.finish(job, state)
        except (NonFiniteLoss, Collapsed, RunBusyError) as e:
            with self._lock:
                self._line.finish(job, JobState.FAILED, str(e))
        except Exception as e:  # a job must never take the server down; the page shows the reason
            log.error("training job %s failed:\n%s", job.id, traceback.format_exc())
            reason = str(e).strip() or type(e).__name__
            with self._lock:
                self._line.finish(job, JobState.FAILED, f"{type(e).__name__}: {reason}")
        finally:
            with self._lock:
                self._running.discard(job.id)
                job.snapshots = job.weights = None  # live views only: the stored run keeps its snapshots
            self._dispatch()

    def _train_and_keep(self, job: Job, splits: Splits) -> tuple[JobState, StoredRun | None]:
        """Train the job's configuration, its files held; how it ended, and the model it stored."""
        done = self._done_meanwhile(job)
        if done is not None:
            return JobState.DONE, done
        start = None if job.fresh else self._resume_point(job)
        writer = EpochWriter(self.store.keep_epoch, partial(self._kept, job))
        try:
            events = partial(self._on_event, job)
            result = train(job.config, splits, events, job.stop, self.device, resume=start, on_epoch=writer.keep)
        except TrainingStopped as stopped:
            writer.close()
            return JobState.CANCELLED, self._keep_stopped(job, stopped.kept, splits)
        except (NonFiniteLoss, Collapsed):
            writer.close()
            self.store.drop_epoch(job.config)  # resuming would only fail the same way
            raise
        finally:
            writer.close()  # every kept epoch is on disk before what follows replaces or removes it
        if result.history.kernels:
            log.info("%s trained on CPU kernels %s", job.id, kernels.summary(result.history.kernels))
        run = self._save(job, result, splits)
        self.store.drop_epoch(job.config)  # the run is complete: nothing left to resume
        return JobState.DONE, run

    def _done_meanwhile(self, job: Job) -> StoredRun | None:
        """The model of this run when another server completed it after the job was asked for (so it is
        not trained twice), else None."""
        run = None if job.fresh else self.store.completed_since(job.config, job.created)
        if run is not None:
            with self._lock:
                job.epochs = _rows(run.history.epochs)
                job.notes.append("Another server that uses this runs folder finished this training meanwhile.")
        return run

    def _resume_point(self, job: Job) -> EpochState | None:
        """The kept epoch this job goes on from (its loss curve so far shown at once), if any."""
        try:
            state = self.store.load_epoch(job.config)
        except ResumeError as e:
            self._note(job, f"{e} It was not resumed: the training starts from its first epoch.")
            return None
        if state is not None:
            log.info("%s resumes %s after epoch %d (seed %d)", job.id, job.config.key(), state.epoch, state.seed)
            with self._lock:
                job.resumed_from = state.epoch
                job.steps, job.step_losses = list(state.history.steps), list(state.history.step_losses)
                job.epochs = _rows(state.history.epochs)
        return state

    def _kept(self, job: Job, state: EpochState, outcome: float | OSError) -> None:
        """An epoch's state was written (or not: a full disk does not stop the run, it is said on the page)."""
        n, total = state.epoch, state.epochs
        if not isinstance(outcome, OSError):
            log.info("%s kept epoch %d/%d (written in %.3f s, beside the training)", job.id, n, total, outcome)
            return
        text = f"Epoch {n} could not be kept on disk ({outcome.strerror or outcome}): the training goes on, but if "
        self._note(job, text + "the server stopped now, less of it could be resumed. Free disk space.")

    def _keep_stopped(self, job: Job, kept: EpochState | None, splits: Splits) -> StoredRun | None:
        """Stop: the model of the last finished epoch becomes a stored run (marked stopped, resumable),
        unless a complete model of this configuration is stored already; stopped in the first: nothing."""
        run = None
        if kept is not None:
            existing = self.store.get(job.config)
            if existing is not None and existing.complete:
                self.store.drop_epoch(job.config)  # resuming would only make that model again
            else:
                kept.stopped = True
                self.store.keep_epoch(kept)
                run = self._save(job, kept_result(kept), splits)
        with self._lock:
            job.stopped_after = kept.epoch if kept is not None else None
        return run

    def _save(self, job: Job, result: TrainResult, splits: Splits) -> StoredRun:
        """Store a model with its class means (Eq. 2 on the validation images) and its owner's name and guess."""
        with self._lock:
            owner, guess = job.owner, job.guess
        means = class_means(encode(result.model, splits.val_images), splits.val_labels)
        return self.store.save(result, means, owner=owner, guess=guess)

    def _note(self, job: Job, text: str) -> None:
        log.warning("%s: %s", job.id, text)
        with self._lock:
            job.notes = [*job.notes[-4:], text]
