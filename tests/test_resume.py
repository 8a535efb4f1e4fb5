"""Runs that go on after a Stop or a crash (convae.resume): the state kept at each epoch end, on disk,
resumed to the same end as a run never interrupted; the checks on a kept file read from disk.

Interrupting here means the stop flag set at an epoch end (what Stop does) or a kept file left behind
(what a killed server leaves); tests/test_cli.py kills a real process with SIGKILL.
"""

from __future__ import annotations

import io
import os
import pickle
import threading
from pathlib import Path

import pytest
import torch

import convae.train as engine
from convae.collapse import CollapseWatch
from convae.resume import MAX_RESUME_BYTES, EpochState, ResumeError, load_state, save_state
from convae.store import RunStore
from convae.train import TrainingStopped, TrainResult, train
from tests.conftest import tiny_config
from tests.test_collapse import Collapses


@pytest.fixture(autouse=True)
def every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loss-curve point after every step, so that the curves are compared point by point too."""
    monkeypatch.setattr(engine, "REPORT_EVERY_S", 0.0)


def interrupted(config, splits, after: int, tmp_path: Path, **kw) -> EpochState:
    """Run `config` and stop it at the end of epoch `after` (as Stop does); the kept state as it comes
    back from disk."""
    stop = threading.Event()

    def on_epoch(state: EpochState) -> None:
        if state.epoch == after:
            stop.set()

    with pytest.raises(TrainingStopped) as info:
        train(config, splits, stop=stop, device="cpu", on_epoch=on_epoch, **kw)
    kept = info.value.kept
    assert kept is not None and kept.epoch == after
    path = tmp_path / f"{config.key()}.resume"
    save_state(path, kept)
    return load_state(path, config)


def assert_same_run(a: TrainResult, b: TrainResult) -> None:
    """Same history (losses per epoch, loss curve, seed, restarts) and same weights, to float rounding."""
    for row_a, row_b in zip(a.history.epochs, b.history.epochs, strict=True):
        assert row_a["epoch"] == row_b["epoch"]
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-6)
        assert row_a["val_loss"] == pytest.approx(row_b["val_loss"], rel=1e-6)
    assert a.history.steps == b.history.steps
    torch.testing.assert_close(torch.tensor(a.history.step_losses), torch.tensor(b.history.step_losses))
    assert (a.history.seed, a.history.mean_init) == (b.history.seed, b.history.mean_init)
    assert [r["note"] for r in a.history.restarts] == [r["note"] for r in b.history.restarts]
    assert a.history.vitals == b.history.vitals
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


@pytest.mark.parametrize("after", [1, 2, 3])
def test_a_resumed_run_ends_as_the_run_never_interrupted(splits, tmp_path: Path, after: int) -> None:
    config = tiny_config(epochs=4)
    whole = train(config, splits, device="cpu")
    kept = interrupted(config, splits, after, tmp_path)
    events = []
    resumed = train(config, splits, on_event=events.append, device="cpu", resume=kept)
    assert_same_run(resumed, whole)
    assert events[0].kind == "start" and events[0].epoch == after + 1  # it went on from the next epoch
    assert [e.epoch for e in events if e.kind == "epoch"] == list(range(after + 1, 5))
    assert resumed.seconds >= kept.seconds  # the time before the interruption counts


def test_resume_goes_on_with_the_seed_in_use_after_a_collapse(splits, tmp_path: Path, monkeypatch) -> None:
    """Seed 0 collapses and the run restarts with seed 1; resumed after epoch 1, it must go on with seed 1,
    its restart notes and its health readings, not start the asked seed 0 again."""
    config = tiny_config(train_size=240, batch_size=4, epochs=3)  # 60 steps an epoch: readings in all three
    monkeypatch.setattr(engine, "CollapseWatch", Collapses(1))
    whole = train(config, splits, device="cpu")
    assert whole.history.seed == 1 and len(whole.history.restarts) == 1
    monkeypatch.setattr(engine, "CollapseWatch", Collapses(1))
    kept = interrupted(config, splits, 1, tmp_path)
    assert (kept.seed, kept.config.seed, len(kept.history.restarts)) == (1, 0, 1)
    monkeypatch.setattr(engine, "CollapseWatch", CollapseWatch)  # the watch of seed 1 never called a collapse
    later: list[EpochState] = []
    resumed = train(config, splits, device="cpu", resume=kept, on_epoch=later.append)
    assert_same_run(resumed, whole)
    assert resumed.config == config  # stored under the configuration asked for
    assert [(s.epoch, s.seed, len(s.history.restarts)) for s in later] == [(2, 1, 1), (3, 1, 1)]


def test_stop_in_the_first_epoch_keeps_nothing(splits) -> None:
    stop = threading.Event()
    stop.set()
    kept: list[EpochState] = []
    with pytest.raises(TrainingStopped) as info:
        train(tiny_config(epochs=3), splits, stop=stop, device="cpu", on_epoch=kept.append)
    assert info.value.kept is None and kept == []


def test_a_resumed_run_stopped_again_keeps_the_epoch_it_went_on_from(splits, tmp_path: Path) -> None:
    config = tiny_config(epochs=3)
    kept = interrupted(config, splits, 1, tmp_path)
    stop = threading.Event()
    stop.set()
    with pytest.raises(TrainingStopped) as info:
        train(config, splits, stop=stop, device="cpu", resume=kept)
    assert info.value.kept is kept


def test_a_kept_epoch_of_another_configuration_is_refused(splits, tmp_path: Path) -> None:
    kept = interrupted(tiny_config(epochs=3), splits, 1, tmp_path)
    with pytest.raises(ValueError, match="Cannot resume"):
        train(tiny_config(epochs=3, seed=5), splits, device="cpu", resume=kept)
    with pytest.raises(ResumeError, match="belongs to"):
        load_state(tmp_path / f"{kept.config.key()}.resume", tiny_config(epochs=3, seed=5))


# ----------------------------------------------------------------------- files read from disk


@pytest.fixture
def kept_dict(splits, tmp_path: Path) -> dict:
    """The plain dict a kept-epoch file holds (change it, write it, read it back)."""
    return interrupted(tiny_config(epochs=3), splits, 1, tmp_path).to_dict()


def write(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def _set(key: str, value: object):
    return lambda d: d.update({key: value})


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (_set("format", "convae-checkpoint"), "not a kept epoch"),
        (_set("epoch", 7), "epoch 7 is not one of the run's 1 to 3 epochs"),
        (_set("epoch", 0), "epoch 0 is not one"),
        (_set("seed", -1), "seed, start or stop mark malformed"),
        (lambda d: d["config"].update(q1=6000), "Q1 must be from 1 to 128, got 6000"),
        (lambda d: d["weights"].update({"encoder.net.0.bias": torch.zeros(300_000)}), r"encoder\.net\.0\.bias"),
        (lambda d: d["weights"].pop("decoder.net.5.bias"), "not those of the architecture"),
        (lambda d: d["adam"].pop(3), "does not cover every parameter"),
        (lambda d: d["adam"][0].update(exp_avg=torch.zeros(9)), "exp_avg of encoder"),
        (lambda d: d["adam"][0].update(evil="x"), "state of encoder.net.0.weight is malformed"),
        (_set("shuffle", torch.zeros(10, dtype=torch.uint8)), "generator state is malformed"),
        (lambda d: d["history"]["epochs"].pop(), "does not hold the 1 epochs of seed 0"),
        (lambda d: d["history"].update(seed=9), "does not hold the 1 epochs of seed 0"),
        (_set("seconds", "soon"), "training time is not a number"),
        (lambda d: d.pop("weights"), "KeyError"),
    ],
)
def test_a_damaged_kept_epoch_is_refused_before_use(kept_dict: dict, tmp_path: Path, change, pattern: str) -> None:
    change(kept_dict)
    with pytest.raises(ResumeError, match=pattern):
        load_state(write(tmp_path / "bad.resume", kept_dict))


def test_unreadable_files_are_refused(kept_dict: dict, tmp_path: Path) -> None:
    good = write(tmp_path / "good.resume", kept_dict)
    cut = tmp_path / "cut.resume"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a kill in the middle of a plain write
    noise = tmp_path / "noise.resume"
    noise.write_bytes(os.urandom(5000))
    for path in (cut, noise):
        with pytest.raises(ResumeError, match="could not be read safely"):
            load_state(path)
    with pytest.raises(ResumeError, match="does not exist"):
        load_state(tmp_path / "missing.resume")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_planted_pickle_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "planted.resume"
    path.write_bytes(pickle.dumps({"format": "convae-resume", "weights": Planted()}))
    with pytest.raises(ResumeError):
        load_state(path)
    buffer = io.BytesIO()
    torch.save({"format": "convae-resume", "weights": Planted()}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ResumeError):
        load_state(path)
    assert not marker.exists()


def test_an_oversized_file_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.resume"
    with open(path, "wb") as f:
        f.truncate(MAX_RESUME_BYTES + 1)  # sparse: no disk space used

    def never(*_a, **_k):
        raise AssertionError("an oversized file was read")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(ResumeError, match="refused unread"):
        load_state(path)


def test_a_full_disk_keeps_the_previous_epoch(splits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while epoch 2 is written: an OSError, the file of epoch 1 intact, no temporary file left."""
    store = RunStore(tmp_path / "runs", shipped=None)
    config = tiny_config(epochs=3)
    store.keep_epoch(interrupted(config, splits, 1, tmp_path))
    second = interrupted(config, splits, 2, tmp_path)

    def no_space(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        store.keep_epoch(second)
    monkeypatch.undo()
    assert store.load_epoch(config).epoch == 1
    assert sorted(p.name for p in store.root.iterdir()) == [f"{config.key()}.resume"]
