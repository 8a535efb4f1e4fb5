"""Background training jobs: FIFO queue, concurrency limit, dedup, cancel, failures, results in the store.

Most tests replace the training engine by a fake whose runs last until the test releases them, so
that the order of events is under the test's control; two tests run the real engine end to end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import convae.jobs as jobs
import convae.train as engine
from convae.analysis import class_means, encode
from convae.jobs import JobManager, JobState, default_concurrency
from convae.model import AutoEncoder
from convae.store import RunStore
from convae.train import History, NonFiniteLoss, Progress, TrainConfig, TrainingStopped, TrainResult
from tests.conftest import tiny_config

pytestmark = pytest.mark.usefixtures("isolated_dirs")

WAIT_S = 10.0  # generous upper bound for things that happen in another thread


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


class FakeTrain:
    """Stands in for convae.train.train: each run lasts until the test releases its config."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[TrainConfig] = []
        self.running = 0
        self.max_running = 0
        self.gates: dict[TrainConfig, threading.Event] = {}
        self.failures: dict[TrainConfig, BaseException] = {}
        self.ignore_stop: set[TrainConfig] = set()  # runs stuck in a long step, deaf to the flag
        self.all_open = threading.Event()

    def gate(self, config: TrainConfig) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(config, threading.Event())

    def release(self, config: TrainConfig) -> None:
        self.gate(config).set()

    def starts(self, config: TrainConfig) -> int:
        with self.lock:
            return self.started.count(config)

    def wait_started(self, config: TrainConfig, times: int = 1) -> None:
        assert wait_until(lambda: self.starts(config) >= times), f"{config.key()} never started"

    def __call__(
        self, config, _splits, on_event=None, stop=None, _device="auto", resume=None, on_epoch=None
    ) -> TrainResult:
        assert resume is None and on_epoch is not None  # the fake keeps no epoch: it never finishes one early
        emit = on_event or (lambda _p: None)
        with self.lock:
            self.started.append(config)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            emit(Progress("start", 1, config.epochs, 0, 4))
            emit(Progress("step", 1, config.epochs, 1, 4, train_loss=0.25))
            gate = self.gate(config)
            while not (gate.wait(0.005) or self.all_open.is_set()):
                if stop is not None and stop.is_set() and config not in self.ignore_stop:
                    raise TrainingStopped("stopped at epoch 1, step 1")
            if config in self.failures:
                raise self.failures[config]
            emit(Progress("epoch", 1, config.epochs, 4, 4, train_loss=0.2, val_loss=0.19))
            history = History([1], [0.25], [{"epoch": 1, "train_loss": 0.2, "val_loss": 0.19, "seconds": 0.01}])
            model = AutoEncoder(config.q1, config.q2, config.k).eval()
            return TrainResult(config, model, history, 0.01, "cpu")
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTrain:
    fake = FakeTrain()
    monkeypatch.setattr(jobs, "train", fake)
    return fake


@pytest.fixture
def make_manager(tmp_path: Path, data_root: Path, fake: FakeTrain):
    managers: list[JobManager] = []

    def make(**kwargs) -> JobManager:
        kwargs.setdefault("max_concurrent", 1)
        kwargs.setdefault("device", "cpu")
        mgr = JobManager(RunStore(tmp_path / "runs", shipped=None), data_dir=data_root, **kwargs)
        managers.append(mgr)
        return mgr

    yield make
    fake.all_open.set()  # let every fake run end, so that no thread outlives its test
    for mgr in managers:
        for view in mgr.views():
            mgr.wait(view.id, WAIT_S)


def cfg(seed: int) -> TrainConfig:
    return tiny_config(seed=seed)


def test_fifo_order_and_one_at_a_time(make_manager, fake: FakeTrain) -> None:
    mgr = make_manager()
    a, b, c = cfg(1), cfg(2), cfg(3)
    ids = [mgr.submit(x) for x in (a, b, c)]
    assert len(set(ids)) == 3
    fake.wait_started(a)
    views = [mgr.snapshot(i) for i in ids]
    assert [v.state for v in views] == [JobState.RUNNING, JobState.QUEUED, JobState.QUEUED]
    assert [v.position for v in views] == [None, 1, 2]
    assert fake.started == [a]

    fake.release(a)
    fake.wait_started(b)
    assert mgr.wait(ids[0], WAIT_S).state is JobState.DONE
    assert mgr.snapshot(ids[2]).position == 1
    fake.release(b)
    fake.release(c)
    assert [mgr.wait(i, WAIT_S).state for i in ids] == [JobState.DONE] * 3
    assert fake.started == [a, b, c]  # first in, first out
    assert fake.max_running == 1


def test_concurrency_limit_of_two_on_a_gpu(make_manager, fake: FakeTrain) -> None:
    mgr = make_manager(max_concurrent=2, device="cuda")  # the fake trains nowhere: no GPU needed
    assert mgr.max_concurrent == 2
    a, b, c = cfg(1), cfg(2), cfg(3)
    ids = [mgr.submit(x) for x in (a, b, c)]
    fake.wait_started(a)
    fake.wait_started(b)
    assert mgr.snapshot(ids[2]).state is JobState.QUEUED
    assert mgr.snapshot(ids[2]).position == 1
    fake.release(a)
    fake.wait_started(c)
    fake.release(b)
    fake.release(c)
    assert [mgr.wait(i, WAIT_S).state for i in ids] == [JobState.DONE] * 3
    assert fake.max_running == 2


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cpu_jobs_run_one_at_a_time_whatever_is_asked(
    make_manager, fake: FakeTrain, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    """A CPU run sets torch's intra-op thread count; two at once would change each other's results."""
    monkeypatch.setattr(jobs, "pick_device", lambda _requested: torch.device("cpu"))  # "auto" finds no GPU
    monkeypatch.setenv("CONVAE_MAX_JOBS", "3")
    with caplog.at_level(logging.WARNING, logger="convae.jobs"):
        mgr = make_manager(max_concurrent=None, device=device)
    assert mgr.max_concurrent == 1
    (line,) = [r.getMessage() for r in caplog.records if r.name == "convae.jobs"]
    assert "CPU training jobs run one at a time, not 3 as asked" in line and "thread count" in line
    a, b = cfg(1), cfg(2)
    ids = [mgr.submit(a), mgr.submit(b)]
    fake.wait_started(a)
    assert mgr.snapshot(ids[1]).state is JobState.QUEUED
    fake.release(a)
    fake.release(b)
    assert [mgr.wait(i, WAIT_S).state for i in ids] == [JobState.DONE] * 2
    assert fake.max_running == 1


def test_same_config_twice_is_one_job(make_manager, fake: FakeTrain) -> None:
    mgr = make_manager()
    a = cfg(1)
    first = mgr.submit(a)
    second = mgr.submit(tiny_config(seed=1))  # an equal config, built anew
    assert second == first
    assert mgr.snapshot(first).requests == 2
    assert mgr.active_for(a) == first
    assert len(mgr.views()) == 1
    fake.release(a)
    assert mgr.wait(first, WAIT_S).state is JobState.DONE
    assert fake.starts(a) == 1
    assert mgr.active_for(a) is None
    third = mgr.submit(a)  # a finished job is not re-used: asking again retrains
    assert third != first
    assert mgr.latest_for(a) == third
    mgr.wait(third, WAIT_S)
    assert fake.starts(a) == 2


def test_cancel_a_running_job(make_manager, fake: FakeTrain) -> None:
    mgr = make_manager()
    a = cfg(1)
    job = mgr.submit(a)
    fake.wait_started(a)
    assert mgr.cancel(job) is True
    view = mgr.wait(job, WAIT_S)
    assert view.state is JobState.CANCELLED
    assert view.run is None
    assert view.finished is not None
    assert mgr.store.get(a) is None  # nothing saved
    assert mgr.cancel(job) is False  # no longer active


def test_cancel_a_queued_job(make_manager, fake: FakeTrain) -> None:
    mgr = make_manager()
    a, b, c = cfg(1), cfg(2), cfg(3)
    ja, jb = mgr.submit(a), mgr.submit(b)
    fake.wait_started(a)
    assert mgr.cancel(jb) is True
    view = mgr.snapshot(jb)  # at once, without waiting
    assert view.state is JobState.CANCELLED
    assert view.position is None
    jc = mgr.submit(c)
    assert mgr.snapshot(jc).position == 1  # the cancelled job left the queue
    fake.release(a)
    fake.release(c)
    assert mgr.wait(ja, WAIT_S).state is JobState.DONE
    assert mgr.wait(jc, WAIT_S).state is JobState.DONE
    assert fake.started == [a, c]
    assert mgr.store.get(b) is None


def test_cancel_unknown_or_finished(make_manager, fake: FakeTrain) -> None:
    mgr = make_manager()
    assert mgr.cancel("job-404") is False
    assert mgr.snapshot("job-404") is None
    assert mgr.wait("job-404", 0.01) is None
    a = cfg(1)
    job = mgr.submit(a)
    fake.release(a)
    assert mgr.wait(job, WAIT_S).state is JobState.DONE
    assert mgr.cancel(job) is False
    assert mgr.snapshot(job).state is JobState.DONE


def test_asking_again_while_a_cancel_is_pending_trains_anew(make_manager, fake: FakeTrain) -> None:
    """Stop, then Train again at once: the new request must not be attached to the dying job."""
    mgr = make_manager()
    a = cfg(1)
    fake.ignore_stop.add(a)  # the running step has not reached the stop check yet
    first = mgr.submit(a)
    fake.wait_started(a)
    assert mgr.cancel(first)
    assert mgr.snapshot(first).state is JobState.RUNNING  # still finishing its step
    second = mgr.submit(a)
    assert second != first
    assert mgr.active_for(a) == second
    fake.release(a)
    # The stop came too late for the first run: it ended, and what it learned is kept, not thrown away.
    assert mgr.wait(first, WAIT_S).state is JobState.DONE
    assert mgr.wait(second, WAIT_S).state is JobState.DONE
    assert mgr.store.get(a) is not None


def test_an_exception_fails_the_job_and_the_manager_goes_on(make_manager, fake: FakeTrain) -> None:
    mgr = make_manager()
    bad, good = cfg(1), cfg(2)
    fake.failures[bad] = RuntimeError("CUDA out of memory while allocating 2 GiB")
    j_bad, j_good = mgr.submit(bad), mgr.submit(good)
    fake.release(bad)
    view = mgr.wait(j_bad, WAIT_S)
    assert view.state is JobState.FAILED
    assert view.error == "RuntimeError: CUDA out of memory while allocating 2 GiB"
    assert view.run is None
    fake.release(good)
    assert mgr.wait(j_good, WAIT_S).state is JobState.DONE
    assert mgr.store.get(bad) is None and mgr.store.get(good) is not None


def test_an_exception_without_message_still_gives_a_reason(make_manager, fake: FakeTrain) -> None:
    mgr = make_manager()
    a = cfg(1)
    fake.failures[a] = KeyError()
    job = mgr.submit(a)
    fake.release(a)
    view = mgr.wait(job, WAIT_S)
    assert view.state is JobState.FAILED
    assert view.error and "KeyError" in view.error


def test_non_finite_loss_fails_with_its_message(make_manager, fake: FakeTrain) -> None:
    mgr = make_manager()
    a = cfg(1)
    message = "The training loss became nan at epoch 1, step 3: the run diverged. Lower the learning rate."
    fake.failures[a] = NonFiniteLoss(message)
    job = mgr.submit(a)
    fake.release(a)
    view = mgr.wait(job, WAIT_S)
    assert view.state is JobState.FAILED
    assert view.error == message


def test_missing_data_fails_with_a_readable_reason(tmp_path: Path, fake: FakeTrain) -> None:
    mgr = JobManager(RunStore(tmp_path / "runs", shipped=None), data_dir=tmp_path / "no-data", max_concurrent=1)
    job = mgr.submit(cfg(1))
    view = mgr.wait(job, WAIT_S)
    assert view.state is JobState.FAILED
    assert view.error.startswith("DataError: ")
    assert "fetch-data" in view.error
    assert fake.started == []


def test_progress_is_kept_for_pages(make_manager, fake: FakeTrain) -> None:
    mgr = make_manager()
    a = cfg(1)
    job = mgr.submit(a)
    fake.wait_started(a)
    assert wait_until(lambda: mgr.snapshot(job).latest is not None and mgr.snapshot(job).latest.kind == "step")
    view = mgr.snapshot(job)
    assert view.steps == [1] and view.step_losses == [0.25]
    assert view.started is not None and view.finished is None
    view.steps.append(99)  # a snapshot is a copy: changing it changes nothing in the manager
    assert mgr.snapshot(job).steps == [1]
    fake.release(a)
    done = mgr.wait(job, WAIT_S)
    assert done.epochs == [{"epoch": 1, "train_loss": 0.2, "val_loss": 0.19}]
    assert done.run is not None and done.run.config == a


def test_finished_jobs_are_pruned(make_manager, fake: FakeTrain) -> None:
    mgr = make_manager(keep_finished=1)
    ids = []
    for seed in (1, 2, 3):
        fake.release(cfg(seed))
        ids.append(mgr.submit(cfg(seed)))
        assert mgr.wait(ids[-1], WAIT_S).state is JobState.DONE
    assert mgr.snapshot(ids[0]) is None
    assert mgr.snapshot(ids[2]) is not None


def test_default_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVAE_MAX_JOBS", raising=False)
    assert default_concurrency() == 1
    monkeypatch.setenv("CONVAE_MAX_JOBS", "3")
    assert default_concurrency() == 3
    for bad in ("0", "-2", "many"):
        monkeypatch.setenv("CONVAE_MAX_JOBS", bad)
        with pytest.raises(ValueError, match="CONVAE_MAX_JOBS"):
            default_concurrency()


# ----------------------------------------------------------------------- the real engine


@pytest.fixture
def real_manager(tmp_path: Path, data_root: Path):
    mgr = JobManager(RunStore(tmp_path / "runs", shipped=None), data_dir=data_root, max_concurrent=1, device="cpu")
    yield mgr
    for view in mgr.views():
        mgr.cancel(view.id)
        mgr.wait(view.id, WAIT_S)


def test_real_job_ends_with_its_run_in_the_store(real_manager: JobManager, tmp_path: Path, splits) -> None:
    config = tiny_config(seed=11)
    job = real_manager.submit(config)
    view = real_manager.wait(job, 60)
    assert view.state is JobState.DONE, view.error
    assert view.error is None
    assert view.run is not None and view.run.config == config
    assert view.run.path == tmp_path / "runs" / f"{config.key()}.pt"
    assert len(view.epochs) == 1 and view.epochs[0]["val_loss"] > 0
    assert view.latest.kind == "done"
    assert view.preview is not None and view.preview.shape == (10, 28, 28)
    # the class means saved with the run are Eq. 2 of the saved model on the validation set
    recomputed = class_means(encode(view.run.model, splits.val_images), splits.val_labels)
    torch.testing.assert_close(view.run.class_means, recomputed, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(recomputed[0], recomputed[1])  # distinct classes, not one repeated row
    runs, problems = RunStore(tmp_path / "runs", shipped=None).scan()  # visible after a restart too
    assert problems == [] and [r.config for r in runs] == [config]


def test_real_job_cancel_stops_the_engine(real_manager: JobManager, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(engine, "REPORT_EVERY_S", 0.0)  # an event after every step, to count them
    config = tiny_config(epochs=500, train_size=300, seed=12)  # minutes of work if not stopped
    job = real_manager.submit(config)
    assert wait_until(lambda: (v := real_manager.snapshot(job).latest) is not None and v.global_step >= 3)
    assert real_manager.cancel(job)
    seen = real_manager.snapshot(job).latest.global_step
    view = real_manager.wait(job, WAIT_S)
    assert view.state is JobState.CANCELLED
    assert view.latest.global_step <= seen + 1  # the step under way may finish; no further step starts
    assert len(view.epochs) < config.epochs
    assert not (tmp_path / "runs" / f"{config.key()}.pt").exists()
