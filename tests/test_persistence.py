"""Nothing lost when the server stops, at the job manager's level: the queue file (restored in order
after a restart, a running job back as interrupted, a damaged file ignored with a warning), Stop that
keeps the last finished epoch, resuming through a job, and two servers (stores, managers) on one
runs folder. A server "dies" here by closing its manager's queue file, which is what the kernel does
for a killed process; tests/test_browser_resume.py kills a real server with SIGKILL.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import convae.jobs as jobs
import convae.train as engine
from convae.analysis import class_means, encode
from convae.files import remove_parts
from convae.jobs import JobManager, JobState
from convae.queue_file import NAME, Entry
from convae.resume import EpochWriter
from convae.store import RunBusyError, RunStore
from convae.train import train
from tests.conftest import tiny_config
from tests.test_jobs import WAIT_S, FakeTrain, wait_until
from tests.test_resume import interrupted

pytestmark = pytest.mark.usefixtures("isolated_dirs")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTrain:
    """convae.jobs trains with tests.test_jobs.FakeTrain: runs that last until the test releases them."""
    fake = FakeTrain()
    monkeypatch.setattr(jobs, "train", fake)
    return fake


def manager(root: Path, data_root: Path, **kw) -> JobManager:
    kw.setdefault("max_concurrent", 1)
    return JobManager(RunStore(root, shipped=None), data_dir=data_root, device="cpu", **kw)


@pytest.fixture
def managers(tmp_path: Path, data_root: Path):
    """Make managers on tmp_path/runs; each is closed, and its jobs ended, after the test."""
    made: list[JobManager] = []

    def make(**kw) -> JobManager:
        made.append(manager(tmp_path / "runs", data_root, **kw))
        return made[-1]

    yield make
    for mgr in made:
        for view in mgr.views():
            mgr.cancel(view.id)
    for mgr in made:
        for view in mgr.views():
            mgr.wait(view.id, WAIT_S)
        mgr.close()


def queue_entries(root: Path) -> list[tuple[str, str]]:
    data = json.loads((root / NAME).read_text())
    return [(e["config"]["seed"], e["state"]) for e in data["jobs"]]


# ------------------------------------------------------------------------------ the queue file


def test_the_queue_comes_back_after_a_restart_in_order(managers, fake: FakeTrain, tmp_path: Path) -> None:
    a, b, c = (tiny_config(seed=s) for s in (1, 2, 3))
    first = managers()
    ids = [first.submit(x) for x in (a, b, c)]
    fake.wait_started(a)
    assert queue_entries(tmp_path / "runs") == [(1, "running"), (2, "queued"), (3, "queued")]

    first.close()  # the server dies with a running job and two queued ones
    second = managers()
    views = {v.config.seed: v for v in second.views()}
    assert views[1].state is JobState.INTERRUPTED  # not silently restarted
    assert "server stopped" in views[1].error
    fake.wait_started(b)  # the queue goes on, in its order
    assert views[3].state is JobState.QUEUED and views[3].position == 1
    fake.all_open.set()
    assert [second.wait(v.id, WAIT_S).state for v in (views[2], views[3])] == [JobState.DONE] * 2
    assert fake.started == [a, b, c]  # a (in the first server), then b and c after the restart
    assert first.wait(ids[0], WAIT_S).state is JobState.DONE  # the "dead" server's thread, in this test only
    assert wait_until(lambda: queue_entries(tmp_path / "runs") == [])


def test_a_live_server_keeps_its_queue_and_a_dead_ones_is_adopted_once(managers, fake: FakeTrain) -> None:
    a, b = tiny_config(seed=1), tiny_config(seed=2)
    one = managers()
    one.submit(a)
    one.submit(b)
    fake.wait_started(a)
    two = managers()  # a second server on the same folder while the first lives: it takes nothing
    assert two.views() == []
    one.close()
    three, four = managers(), managers()  # two servers start after the first one died
    adopted = [len(three.views()), len(four.views())]
    assert adopted == [2, 0]  # one of them adopts its queue, the other nothing: no job counted twice
    assert two.views() == []


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not JSON"),
        (b'{"format": "something", "jobs": []}', "not a queue file"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),  # nesting deep enough for a RecursionError
        (b" " * 300_000, "more than a queue file holds"),
        (b"\xff\xfe garbage", "not JSON"),
    ],
    ids=["bad json", "other format", "deep nesting", "too big", "bad utf-8"],
)
def test_a_damaged_queue_file_is_ignored_with_a_warning(
    managers, fake: FakeTrain, tmp_path: Path, splits, caplog, content: bytes, why: str
) -> None:
    root = tmp_path / "runs"
    store = RunStore(root, shipped=None)
    done = train(tiny_config(seed=8), splits, device="cpu")
    store.save(done, class_means(encode(done.model, splits.val_images), splits.val_labels))
    root.joinpath(NAME).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="convae.jobs"):
        mgr = managers()
    (notice,) = mgr.notices()
    assert f"The queue file {root / NAME} was damaged (" in notice and why in notice and "not restored" in notice
    assert notice in caplog.text
    assert (root / (NAME + ".damaged")).read_bytes() == content  # kept aside, for a person to look at
    assert [r.config for r in store.scan()[0]] == [done.config]  # nothing else lost
    job = mgr.submit(tiny_config(seed=9))  # and the queue works again, in a good file
    assert queue_entries(root)[0][0] == 9
    fake.release(tiny_config(seed=9))
    assert mgr.wait(job, WAIT_S).state is JobState.DONE


def test_bad_entries_are_skipped_and_the_others_restored(managers, fake: FakeTrain, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    good = {"owner": "0123456789abcdef", "state": "queued", "fresh": False, "queued_at": 2.0}
    jobs = [
        {**good, "config": tiny_config(seed=4).to_dict(), "queued_at": 3.0},
        {**good, "config": {**tiny_config().to_dict(), "q1": 100_000}},  # refused by TrainConfig
        {**good, "config": tiny_config(seed=5).to_dict(), "owner": "../../etc/passwd"},
        {**good, "config": tiny_config(seed=6).to_dict(), "state": "exploded"},
        "junk",
        {**good, "config": tiny_config(seed=7).to_dict(), "queued_at": 1.0},
    ]
    (root / NAME).write_text(json.dumps({"format": "convae-queue", "version": 1, "jobs": jobs}))
    fake.all_open.set()
    mgr = managers()
    assert len(mgr.notices()) == 4 and all("was skipped" in n for n in mgr.notices())
    assert [v.config.seed for v in mgr.views()] == [7, 4]  # the good ones, oldest first


# ---------------------------------------------------------------------- Stop, resume, real engine


def stop_after(monkeypatch: pytest.MonkeyPatch, mgr: JobManager, job_holder: list[str], epoch: int) -> None:
    """Press Stop as soon as `epoch` has ended (the next step sees the flag)."""

    class StopAfter(EpochWriter):
        def keep(self, state) -> None:
            super().keep(state)
            if state.epoch == epoch:
                mgr.cancel(job_holder[0])

    monkeypatch.setattr(jobs, "EpochWriter", StopAfter)


def test_stop_keeps_the_last_finished_epoch_and_resume_ends_the_run(managers, splits, monkeypatch) -> None:
    monkeypatch.setattr(engine, "REPORT_EVERY_S", 0.0)
    config = tiny_config(epochs=4, seed=21)
    mgr = managers()
    holder: list[str] = []
    stop_after(monkeypatch, mgr, holder, 2)
    holder.append(mgr.submit(config))
    view = mgr.wait(holder[0], 60)
    assert view.state is JobState.CANCELLED and view.stopped_after == 2
    assert view.run is not None and not view.run.complete and view.run.label == "stopped after epoch 2 of 4"
    stored = mgr.store.get(config)  # a stored run, which every page can show
    assert stored.label == "stopped after epoch 2 of 4" and len(stored.history.epochs) == 2
    kept = mgr.store.kept_epoch(config)
    assert kept.stopped and kept.epoch == 2 and kept.label == "stopped after epoch 2 of 4"

    again = mgr.wait(mgr.submit(config), 60)  # Resume
    assert again.state is JobState.DONE and again.resumed_from == 2
    assert [e["epoch"] for e in again.epochs] == [1, 2, 3, 4]  # the live chart holds every epoch
    assert again.run.complete and mgr.store.kept_epoch(config) is None
    assert not mgr.store.kept_path(config).exists()
    whole = train(config, splits, device="cpu")
    for got, want in zip(again.run.history.epochs, whole.history.epochs, strict=True):
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-6)
    assert again.run.history.steps == whole.history.steps


def test_stop_does_not_replace_a_complete_model(managers, monkeypatch) -> None:
    config = tiny_config(epochs=3, seed=22)
    mgr = managers()
    complete = mgr.wait(mgr.submit(config), 60).run
    holder: list[str] = []
    stop_after(monkeypatch, mgr, holder, 1)
    holder.append(mgr.submit(config))  # Retrain, then Stop after epoch 1
    view = mgr.wait(holder[0], 60)
    assert view.state is JobState.CANCELLED and view.stopped_after == 1 and view.run is None
    assert mgr.store.get(config).created == complete.created and mgr.store.get(config).complete
    assert mgr.store.kept_epoch(config) is None


def test_start_over_ignores_the_kept_epoch(managers, monkeypatch) -> None:
    config = tiny_config(epochs=3, seed=23)
    mgr = managers()
    holder: list[str] = []
    stop_after(monkeypatch, mgr, holder, 2)
    holder.append(mgr.submit(config))
    assert mgr.wait(holder[0], 60).stopped_after == 2
    monkeypatch.setattr(jobs, "EpochWriter", EpochWriter)
    view = mgr.wait(mgr.submit(config, fresh=True), 60)
    assert view.state is JobState.DONE and view.resumed_from is None and len(view.epochs) == 3


def test_a_failed_epoch_write_does_not_stop_the_run(managers, monkeypatch) -> None:
    mgr = managers()

    def full(_state) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mgr.store, "keep_epoch", full)
    view = mgr.wait(mgr.submit(tiny_config(epochs=2, seed=24)), 60)
    assert view.state is JobState.DONE
    assert view.notes and "could not be kept on disk (No space left on device)" in view.notes[-1]


def test_an_interrupted_run_comes_back_resumable(managers, splits, tmp_path: Path) -> None:
    """What a killed server leaves (a kept epoch and a 'running' entry): after the restart the job is
    interrupted, the store lists the run as interrupted after epoch 2, and a Train of it resumes."""
    config = tiny_config(epochs=3, seed=25)
    root = tmp_path / "runs"
    dead = managers()
    store = dead.store
    store.keep_epoch(interrupted(config, splits, 2, tmp_path))
    dead._queue_file.write([Entry(config, "running", False, 1.0)])  # what the killed server had written
    dead.close()
    (root / f".{config.key()}.resume.abc123.part").write_bytes(b"half")  # a write cut by the kill
    mgr = managers()
    (view,) = mgr.views()
    assert view.state is JobState.INTERRUPTED
    kept = mgr.store.kept_epoch(config)
    assert kept.label == "interrupted after epoch 2 of 3" and [k.config for k in mgr.store.kept_epochs()] == [config]
    done = mgr.wait(mgr.submit(config), 60)
    assert done.state is JobState.DONE and done.resumed_from == 2 and len(done.epochs) == 3
    assert not list(root.glob(f".{config.key()}*.part"))  # the claim of the configuration cleared it


# --------------------------------------------------------------------- two servers, one folder


def test_two_stores_on_one_folder_never_train_one_run_twice(tmp_path: Path, splits) -> None:
    config = tiny_config(epochs=3, seed=26)
    a, b = RunStore(tmp_path / "runs", shipped=None), RunStore(tmp_path / "runs", shipped=None)
    a.keep_epoch(interrupted(config, splits, 1, tmp_path))
    assert b.kept_epoch(config).epoch == 1  # listed as interrupted by both while nobody trains it
    with a.claim(config):
        assert a.in_use(config) and b.in_use(config)
        assert b.kept_epoch(config) is None and b.kept_epochs() == []  # nobody offers to resume it now
        with pytest.raises(RunBusyError, match="another server or command"), b.claim(config, wait_s=0.1):
            pass
    assert not b.in_use(config)
    with b.claim(config):  # free again: the other can take it
        assert a.in_use(config)
    assert list((tmp_path / "runs" / ".locks").iterdir()) == []  # released claims leave no lock file


def test_two_managers_resume_an_interrupted_run_once(tmp_path: Path, splits, data_root: Path) -> None:
    """Two servers are asked to resume the same interrupted run at once: one trains it, the other says it
    trains elsewhere; the run is stored once, with all its epochs."""
    config = tiny_config(epochs=40, seed=27)  # long enough that the second asks while the first trains
    root = tmp_path / "runs"
    one, two = manager(root, data_root), manager(root, data_root)
    one.store.keep_epoch(interrupted(config, splits, 1, tmp_path))
    first = one.submit(config)
    assert wait_until(lambda: (v := one.snapshot(first)).latest is not None and v.latest.kind != "start")
    second = two.wait(two.submit(config), 60)
    assert second.latest is None  # it never trained: it found the run held by the other server, or done by it
    if second.state is JobState.FAILED:
        assert "being trained by another server" in second.error
    else:  # a fast machine: the other server finished within the claim's wait
        assert second.state is JobState.DONE and "finished this training meanwhile" in second.notes[-1]
    view = one.wait(first, 120)
    assert view.state is JobState.DONE and view.resumed_from == 1 and len(view.run.history.epochs) == 40
    assert [r.config for r in RunStore(root, shipped=None).scan()[0]] == [config]
    one.close()
    two.close()


def test_remove_parts_only_takes_old_temporary_files(tmp_path: Path) -> None:
    (tmp_path / ".x.pt.1.part").write_bytes(b"")
    (tmp_path / ".y.pt.1.part").write_bytes(b"")
    assert remove_parts(tmp_path, "x.pt", older_than_s=3600) == []  # too new: could be a write under way
    assert [p.name for p in remove_parts(tmp_path, "x.pt")] == [".x.pt.1.part"]
    assert [p.name for p in tmp_path.iterdir()] == [".y.pt.1.part"]


def test_a_runs_folder_that_cannot_be_written_does_not_stop_the_server(tmp_path: Path, data_root: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    mgr = manager(blocked / "runs", data_root)
    (notice,) = mgr.notices()
    assert notice.startswith(f"The queue cannot be kept in {blocked / 'runs'}") and "lost if the server stops" in notice
    assert mgr.views() == []  # the manager works; a training would fail only when it saves, saying why
    mgr.close()
