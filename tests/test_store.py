"""Checkpoints on disk: atomic writes, safe reads, clear errors, and the folder of runs."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pickle
import random
import shlex
import time
from pathlib import Path

import pytest
import torch

import convae.store as store_mod
from convae.data import to_float
from convae.store import (
    FORMAT,
    CheckpointError,
    RunStore,
    checkpoint_dict,
    load_checkpoint,
    run_root,
    save_checkpoint,
)
from tests.conftest import tiny_config

pytestmark = pytest.mark.usefixtures("isolated_dirs")


@pytest.fixture
def ckpt_path(tmp_path: Path, trained, means) -> Path:
    return save_checkpoint(tmp_path / "ckpts" / "model.pt", trained, means)


def _outputs(model: torch.nn.Module, splits) -> torch.Tensor:
    with torch.no_grad():
        return model(to_float(splits.val_images[:20]))


def _write(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


class Planted:
    """An object whose unpickling runs a shell command: what a hostile 'checkpoint' would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


# ------------------------------------------------------------------------------- round trip


def test_round_trip(ckpt_path: Path, trained, means, splits) -> None:
    run = load_checkpoint(ckpt_path)
    assert run.config == trained.config
    assert run.path == ckpt_path
    assert not run.shipped
    assert run.model.sizes == trained.model.sizes
    assert not run.model.training
    assert torch.equal(_outputs(run.model, splits), _outputs(trained.model, splits))
    assert torch.equal(run.class_means, means)
    assert run.history == trained.history
    assert run.val_loss == trained.history.epochs[-1]["val_loss"]
    assert run.train_loss == trained.history.epochs[-1]["train_loss"]
    assert run.device == "cpu"
    assert run.seconds == pytest.approx(trained.seconds)
    assert run.created  # an ISO time stamp


def test_round_trip_from_bytes(ckpt_path: Path, trained, splits) -> None:
    run = load_checkpoint(ckpt_path.read_bytes())
    assert run.path is None
    assert torch.equal(_outputs(run.model, splits), _outputs(trained.model, splits))


def test_checkpoint_holds_only_plain_data(trained, means) -> None:
    ckpt = checkpoint_dict(trained, means)
    assert ckpt["format"] == FORMAT
    assert ckpt["config"] == trained.config.to_dict()
    assert set(ckpt["state_dict"]) == set(trained.model.state_dict())


# ---------------------------------------------------------------------------------- atomic


def test_save_is_atomic_when_writing_fails(tmp_path: Path, trained, means, monkeypatch) -> None:
    folder = tmp_path / "ckpts"
    final = folder / "model.pt"

    def failing_save(_obj, f, *_args, **_kwargs):
        f.write(b"half a checkpoint" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_mod.torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(final, trained, means)
    assert not final.exists()
    assert list(folder.iterdir()) == []  # no leftover .part file


def test_failed_save_keeps_the_existing_checkpoint(ckpt_path: Path, trained, means, splits, monkeypatch) -> None:
    before = ckpt_path.read_bytes()

    def failing_save(_obj, f, *_args, **_kwargs):
        f.write(b"\x00" * 500)
        raise KeyboardInterrupt  # even an interrupt must not leave a half-written file

    monkeypatch.setattr(store_mod.torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt_path, trained, means)
    monkeypatch.undo()
    assert ckpt_path.read_bytes() == before
    assert [p.name for p in ckpt_path.parent.iterdir()] == [ckpt_path.name]
    assert torch.equal(_outputs(load_checkpoint(ckpt_path).model, splits), _outputs(trained.model, splits))


def test_save_replaces_an_existing_checkpoint(ckpt_path: Path, trained, means) -> None:
    other = dataclasses.replace(trained, seconds=123.0)
    save_checkpoint(ckpt_path, other, means)
    assert load_checkpoint(ckpt_path).seconds == 123.0
    assert [p.name for p in ckpt_path.parent.iterdir()] == [ckpt_path.name]


# ------------------------------------------------------------------------------ bad files


def test_wrong_architecture(tmp_path: Path, trained, means) -> None:
    ckpt = checkpoint_dict(trained, means)
    ckpt["config"] = tiny_config(q1=8).to_dict()  # the tensors are for Q1 = 4
    path = _write(tmp_path / "wrong.pt", ckpt)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "does not fit the architecture" in message
    assert "Q1=8" in message
    assert "encoder.net.0.weight" in message


def test_missing_and_extra_tensors(tmp_path: Path, trained, means) -> None:
    ckpt = checkpoint_dict(trained, means)
    del ckpt["state_dict"]["decoder.net.0.bias"]
    with pytest.raises(CheckpointError, match=r"decoder\.net\.0\.bias: missing"):
        load_checkpoint(_write(tmp_path / "missing.pt", ckpt))
    ckpt = checkpoint_dict(trained, means)
    ckpt["state_dict"]["extra.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match="unexpected tensors"):
        load_checkpoint(_write(tmp_path / "extra.pt", ckpt))


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda c: c.pop("config"), "damaged or incomplete"),
        (lambda c: c.pop("state_dict"), "damaged or incomplete"),
        (lambda c: c.update(class_means=torch.zeros(10, 5)), r"class means have shape \(10, 5\)"),
        (lambda c: c.update(history={"steps": [], "step_losses": [], "epochs": []}), "no finished epoch"),
        (lambda c: c["config"].update(k=0), r"was refused: K must be from 1 to 64, got 0\."),
        (lambda c: c.update(format="something-else"), "not a convae checkpoint"),
    ],
    ids=["no config", "no state dict", "class means", "no epoch", "bad config", "other format"],
)
def test_incomplete_checkpoints(tmp_path: Path, trained, means, change, pattern: str) -> None:
    ckpt = checkpoint_dict(trained, means)
    change(ckpt)
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(_write(tmp_path / "bad.pt", ckpt))


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything builds a torch module (a model's memory is spent in its constructor)."""

    def refuse(*_args, **_kwargs) -> None:
        raise AssertionError("a module was built while reading a checkpoint that should be refused first")

    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)


def _huge_config(c: dict) -> None:
    c["config"].update(q1=6000, q2=6000)  # a model of about 7 GB; the tensors stay the tiny model's


def _huge_k(c: dict) -> None:
    c["config"].update(k=10**6)


def _sizes_as_text(c: dict) -> None:
    c["config"].update(q1="6000")


def _wrong_shape(c: dict) -> None:  # a normal config, one tensor of another architecture
    c["state_dict"]["decoder.net.3.weight"] = torch.zeros(4, 8, 5, 5)


def _huge_tensor(c: dict) -> None:  # the config's sizes, but a tensor far larger than they allow
    c["state_dict"]["encoder.net.0.bias"] = torch.zeros(300_000)


@pytest.mark.usefixtures("no_models")
@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (_huge_config, r"was refused: Q1 must be from 1 to 128, got 6000\."),
        (_huge_k, r"was refused: K must be from 1 to 64, got 1000000\."),
        (_sizes_as_text, r"was refused: Q1 must be a whole number from 1 to 128.*'6000'"),
        (
            _wrong_shape,
            r"does not fit the architecture .*decoder\.net\.3\.weight: \(4, 8, 5, 5\) \(expected \(4, 4, 5, 5\)\)",
        ),
        (_huge_tensor, r"does not fit the architecture .*encoder\.net\.0\.bias: \(300000,\) \(expected \(4,\)\)"),
    ],
    ids=["Q1 = Q2 = 6000", "K = 1e6", "sizes as text", "wrong shape", "huge tensor"],
)
def test_bad_sizes_are_refused_before_a_model_is_built(tmp_path: Path, trained, means, change, pattern: str) -> None:
    ckpt = checkpoint_dict(trained, means)
    change(ckpt)
    path = _write(tmp_path / "bad.pt", ckpt)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(path)
    assert len(str(info.value).splitlines()) == 1  # one plain line, no traceback text
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(path.read_bytes())


def test_a_huge_config_in_the_runs_folder_is_listed_as_refused(
    tmp_path: Path, trained, means, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs"
    store = RunStore(root, shipped=None)
    store.save(trained, means)
    ckpt = checkpoint_dict(trained, means)
    _huge_config(ckpt)
    huge = _write(root / "huge.pt", ckpt)
    built: list[tuple] = []
    real = store_mod.AutoEncoder

    def recording(*sizes):
        built.append(sizes)
        return real(*sizes)

    monkeypatch.setattr(store_mod, "AutoEncoder", recording)
    runs, problems = RunStore(root, shipped=None).scan()
    assert [r.config for r in runs] == [trained.config]
    assert problems == [
        f"{huge} was refused: Q1 must be from 1 to 128, got 6000. Train the model again with allowed sizes."
    ]
    assert built == [(4, 4, 2)]  # only the good run's model was built


def test_an_oversized_file_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "runs" / "big.pt"
    path.parent.mkdir()
    with open(path, "wb") as f:
        f.truncate(store_mod.MAX_CHECKPOINT_BYTES + 10 * 2**20)  # sparse: no disk or memory spent here either

    def unexpected_load(*_args, **_kwargs):
        raise AssertionError("torch.load was called on a file over the size limit")

    monkeypatch.setattr(store_mod.torch, "load", unexpected_load)
    with pytest.raises(CheckpointError, match=r"was refused unread: it is 60\.0 MiB and the limit is 50\.0 MiB"):
        load_checkpoint(path)
    runs, problems = RunStore(tmp_path / "runs", shipped=None).scan()
    assert runs == [] and len(problems) == 1 and "big.pt was refused unread" in problems[0]


def test_truncated_file(ckpt_path: Path, tmp_path: Path) -> None:
    blob = ckpt_path.read_bytes()
    for cut in (len(blob) // 2, 10, 0):
        path = tmp_path / f"truncated-{cut}.pt"
        path.write_bytes(blob[:cut])
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)
        assert "damaged, truncated, or not a convae checkpoint" in str(info.value)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(5000))
    with pytest.raises(CheckpointError, match="could not be read safely"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="the uploaded file"):
        load_checkpoint(os.urandom(5000))


def test_foreign_torch_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "tensor.pt", torch.zeros(3, 3))
    with pytest.raises(CheckpointError, match="not a convae checkpoint"):
        load_checkpoint(path)
    path = _write(tmp_path / "state.pt", torch.nn.Linear(2, 2).state_dict())
    with pytest.raises(CheckpointError, match="not a convae checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_upload_size_limit(ckpt_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(store_mod, "MAX_CHECKPOINT_BYTES", 100)
    with pytest.raises(CheckpointError, match="limit"):
        load_checkpoint(ckpt_path.read_bytes(), name="upload.pt")


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_planted_pickle_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    payload = {"format": FORMAT, "version": 1, "config": Planted(marker)}
    path = tmp_path / "evil.pt"
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "refused" in str(info.value)
    with pytest.raises(CheckpointError):
        load_checkpoint(path.read_bytes())
    assert not marker.exists()
    # The control: an unsafe load of the same file does run the planted code.
    if writer == "torch":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


# -------------------------------------------------------------------------------- RunStore


def test_run_root(monkeypatch, tmp_path: Path) -> None:
    assert run_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("CONVAE_RUNS_DIR", str(tmp_path / "env"))
    assert run_root() == tmp_path / "env"
    assert RunStore(shipped=None).root == tmp_path / "env"


def test_store_save_get_and_restart(tmp_path: Path, trained, means, splits) -> None:
    root = tmp_path / "runs"
    store = RunStore(root, shipped=None)
    assert store.scan() == ([], [])
    assert store.get(trained.config) is None
    saved = store.save(trained, means)
    assert saved.path == root / f"{trained.config.key()}.pt"
    assert saved.path.is_file()
    found = store.get(trained.config)
    assert found is not None and found.config == trained.config
    assert store.get(tiny_config(seed=99)) is None

    restarted = RunStore(root, shipped=None)  # a new process on the same folder
    runs, problems = restarted.scan()
    assert problems == []
    assert [r.config for r in runs] == [trained.config]
    again = restarted.get(trained.config)
    assert again is not None
    assert torch.equal(_outputs(again.model, splits), _outputs(trained.model, splits))


def test_scan_skips_damaged_files_and_reports_them(tmp_path: Path, trained, means) -> None:
    root = tmp_path / "runs"
    store = RunStore(root, shipped=None)
    store.save(trained, means)
    second = dataclasses.replace(trained, config=tiny_config(seed=1))
    # the command line's layout: runs/<key>/<key>.pt
    save_checkpoint(root / second.config.key() / f"{second.config.key()}.pt", second, means)
    (root / "noise.pt").write_bytes(os.urandom(3000))
    good = store.path_for(trained.config).read_bytes()
    (root / "half.pt").write_bytes(good[: len(good) // 2])
    _write(root / "sub" / "tensor.pt", torch.ones(4))
    (root / "notes.txt").write_text("not a checkpoint, not looked at")

    runs, problems = store.scan()
    assert sorted(r.config.seed for r in runs) == [0, 1]
    assert len(problems) == 3
    for name in ("noise.pt", "half.pt", "tensor.pt"):
        assert sum(name in p for p in problems) == 1, (name, problems)

    runs2, problems2 = RunStore(root, shipped=None).scan()
    assert sorted(r.config.key() for r in runs2) == sorted(r.config.key() for r in runs)
    assert len(problems2) == 3


def test_scan_notices_a_file_damaged_after_it_was_read(tmp_path: Path, trained, means) -> None:
    store = RunStore(tmp_path / "runs", shipped=None)
    saved = store.save(trained, means)
    assert len(store.scan()[0]) == 1
    saved.path.write_bytes(b"garbage")
    runs, problems = store.scan()
    assert runs == []
    assert len(problems) == 1 and saved.path.name in problems[0]
    assert store.get(trained.config) is None


def _age(*folders: Path) -> None:
    """Set the folders' times a minute back, as if nothing had changed in them for a while."""
    old = time.time() - 60
    for folder in folders:
        os.utime(folder, (old, old))


def test_the_runs_folder_is_read_again_only_when_it_changes(tmp_path: Path, trained, means, monkeypatch) -> None:
    root = tmp_path / "runs"
    store = RunStore(root, shipped=None)
    first = store.save(trained, means)
    second = dataclasses.replace(trained, config=tiny_config(seed=1))
    save_checkpoint(root / "cli" / f"{second.config.key()}.pt", second, means)
    _age(root, root / "cli")
    assert sorted(r.config.seed for r in store.scan()[0]) == [0, 1]

    reads = []
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: reads.append(Path(path)) or real(path))
    assert sorted(r.config.seed for r in store.scan()[0]) == [0, 1]
    assert store.get(second.config).config.seed == 1
    assert reads == []  # nothing changed: one stat per folder, no listing

    third = dataclasses.replace(trained, config=tiny_config(seed=2))
    save_checkpoint(root / "cli" / f"{third.config.key()}.pt", third, means)  # a run added in a subfolder
    assert sorted(r.config.seed for r in store.scan()[0]) == [0, 1, 2]
    assert reads == [root / "cli"]
    first.path.unlink()  # and one removed
    assert sorted(r.config.seed for r in store.scan()[0]) == [1, 2]
    assert store.get(trained.config) is None


def test_tabs_that_ask_at_once_share_one_load(tmp_path: Path, trained, means, monkeypatch) -> None:
    """Thirty tabs opening Compare runs at once must not each load every checkpoint."""
    root = tmp_path / "runs"
    RunStore(root, shipped=None).save(trained, means)
    loads = []
    real = store_mod.load_checkpoint

    def slow_load(path: Path):
        loads.append(path)
        time.sleep(0.3)  # long enough for every thread to arrive while the first one loads
        return real(path)

    monkeypatch.setattr(store_mod, "load_checkpoint", slow_load)
    fresh = RunStore(root, shipped=None)  # a new server: nothing read yet
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: fresh.scan(), range(8)))
    assert [len(runs) for runs, _ in results] == [1] * 8
    assert len({id(runs[0]) for runs, _ in results}) == 1  # the same object for every tab
    assert loads == [root / f"{trained.config.key()}.pt"]


def test_a_change_within_the_same_clock_tick_is_not_missed(tmp_path: Path, trained, means) -> None:
    """A folder changed less than FolderListing.RECENT_S ago is listed afresh each time: a file system
    with coarse times may show the same time after a second change."""
    root = tmp_path / "runs"
    store = RunStore(root, shipped=None)
    store.save(trained, means)
    stamp = os.stat(root).st_mtime_ns
    assert len(store.scan()[0]) == 1
    second = dataclasses.replace(trained, config=tiny_config(seed=1))
    store.save(second, means)
    os.utime(root, ns=(stamp, stamp))  # the second write left the folder's time as it was
    assert sorted(r.config.seed for r in store.scan()[0]) == [0, 1]


def test_shipped_runs(tmp_path: Path, trained, means) -> None:
    shipped = tmp_path / "models"  # laid out as `make seed` writes it: models/<name>/<key>.pt
    mine = dataclasses.replace(trained, config=tiny_config(seed=3))
    save_checkpoint(shipped / "seed" / f"{trained.config.key()}.pt", trained, means)
    save_checkpoint(shipped / "seed" / f"{mine.config.key()}.pt", mine, means)
    store = RunStore(tmp_path / "runs", shipped=shipped)
    store.save(mine, means)  # the same config in the user's store and among the shipped models

    runs, problems = store.scan()
    assert problems == []
    assert [(r.config.seed, r.shipped) for r in runs] == [(3, False), (0, True)]  # own runs first
    assert store.get(trained.config).shipped
    assert not store.get(mine.config).shipped


def test_save_into_an_unwritable_folder_says_what_to_do(tmp_path: Path, trained, means) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = RunStore(blocker / "runs", shipped=None)
    with pytest.raises(OSError) as info:
        store.save(trained, means)
    assert "Could not save the trained model" in str(info.value)
    assert "CONVAE_RUNS_DIR" in str(info.value)


# ------------------------------------------------------------------ faults seen on a real server


def test_full_disk_fails_as_an_os_error_and_leaves_nothing(tmp_path: Path, trained, means, monkeypatch) -> None:
    """ENOSPC while the bytes go to disk: an OSError the store turns into advice, no file left behind
    (torch's zip writer, writing to the file itself, used to fail with an internal RuntimeError)."""
    store = RunStore(tmp_path / "runs", shipped=None)

    def no_space(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_mod.os, "fsync", no_space)
    with pytest.raises(OSError, match="Free disk space or set CONVAE_RUNS_DIR"):
        store.save(trained, means)
    assert list((tmp_path / "runs").iterdir()) == []


def test_refusal_messages_are_plain(tmp_path: Path, ckpt_path: Path) -> None:
    """Torch's own text for a refused file advises loading it with weights_only=False; ours says why."""
    planted = tmp_path / "planted.pt"
    planted.write_bytes(pickle.dumps({"format": FORMAT, "config": Planted(tmp_path / "pwned")}, protocol=2))
    noise = tmp_path / "noise.pt"
    noise.write_bytes(random.Random(0).randbytes(5000))  # the weights-only unpickler refuses these bytes
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ckpt_path.read_bytes()[:3000])
    reasons = {}
    for path in (planted, noise, cut):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        reasons[path.name] = str(info.value)
        assert "weights_only" not in reasons[path.name] and "Re-running" not in reasons[path.name]
    assert "would run code when loaded, so it was refused" in reasons["planted.pt"]
    assert "other than tensors and plain values" in reasons["noise.pt"]
    assert "cut short or damaged" in reasons["cut.pt"]
    assert not (tmp_path / "pwned").exists()


def test_any_random_file_gets_words_a_reader_understands(tmp_path: Path) -> None:
    """Some random bytes trip the unpickler itself ("pop from empty list", "0", a codec error), not its
    weights-only check; those say what the file is too, never the unpickler's own words."""
    seen = set()
    for seed in (2, 20, 61, 195):  # each of these made the unpickler fail in its own way
        path = tmp_path / f"noise-{seed}.pt"
        path.write_bytes(random.Random(seed).randbytes(5000))
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        reason = str(info.value).split("could not be read safely: ")[1]
        assert "random or foreign data" in reason, reason
        assert "damaged, truncated, or not a convae checkpoint" in reason
        seen.add(type(info.value.__cause__).__name__)
    assert len(seen) >= 2  # not one kind of failure only
