"""`python -m convae train` run again after it was cut off: it resumes by default from the epoch kept in
its output folder (`--resume` insists, `--no-resume` starts over) and ends as a run never interrupted.
The slow tests kill a real training process with SIGKILL, once during an epoch and once in the middle
of writing a kept epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convae.__main__ import main
from convae.resume import ResumeError, load_state
from convae.store import RunStore
from tests.conftest import tiny_config
from tests.test_resume import interrupted

pytestmark = pytest.mark.usefixtures("isolated_dirs")

CONFIG = tiny_config(epochs=4)
ARGS = ["--epochs", "4", "--train-size", "200", "--q1", "4", "--q2", "4", "--k", "2", "--device", "cpu"]


def train_cli(data_root: Path, out: Path, *extra: str, args: list[str] = ARGS) -> int:
    return main(["train", "--data", str(data_root), *args, "--out", str(out), *extra])


def epochs_of(out: Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["epochs"]


def assert_same_epochs(got: list[dict], want: list[dict]) -> None:
    assert [e["epoch"] for e in got] == [e["epoch"] for e in want]
    for a, b in zip(got, want, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)


def test_the_same_command_again_resumes_by_default(data_root: Path, splits, tmp_path: Path, capsys) -> None:
    whole = tmp_path / "whole"
    assert train_cli(data_root, whole) == 0
    out = tmp_path / "out"
    RunStore(out, shipped=None).keep_epoch(interrupted(CONFIG, splits, 2, tmp_path))  # as a cut-off run leaves it
    capsys.readouterr()
    assert train_cli(data_root, out) == 0
    printed = capsys.readouterr().out
    assert "Resuming: interrupted after epoch 2 of 4 (seed 0)" in printed and "--no-resume starts over" in printed
    assert "epoch  1:" not in printed and "epoch  3:" in printed  # it went on from epoch 3
    assert "epoch checkpoints: 2 written beside the training" in printed
    assert json.loads((out / "metrics.json").read_text())["resumed_after_epoch"] == 2
    assert_same_epochs(epochs_of(out), epochs_of(whole))
    assert not (out / f"{CONFIG.key()}.resume").exists()  # complete: nothing left to resume


def test_no_resume_starts_over_and_resume_insists(data_root: Path, splits, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert train_cli(data_root, out, "--resume") == 2
    err = capsys.readouterr().err
    assert "--resume:" in err and "there is nothing to resume" in err
    RunStore(out, shipped=None).keep_epoch(interrupted(CONFIG, splits, 3, tmp_path))
    assert train_cli(data_root, out, "--no-resume") == 0
    assert "Resuming" not in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["resumed_after_epoch"] is None
    assert len(epochs_of(out)) == 4


def test_a_damaged_kept_epoch_is_reported_and_training_starts_over(data_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{CONFIG.key()}.resume").write_bytes(os.urandom(3000))
    assert train_cli(data_root, out, "--resume") == 2
    assert "could not be read safely" in capsys.readouterr().err
    assert train_cli(data_root, out) == 0
    assert "It is not resumed: training starts from the first epoch" in capsys.readouterr().out


# --------------------------------------------------------------------------- real kill -9

SLOW_ARGS = ["--epochs", "40", "--train-size", "300", "--q1", "8", "--q2", "8", "--k", "2", "--device", "cpu"]


def start_cli(data_root: Path, out: Path, prelude: str = "") -> subprocess.Popen:
    """`python -m convae train` in a process of its own (one thread, as in this test process, so that
    the two compute the same bits; and the fixed CPU kernels, which tests using it set here too: kernels
    chosen by timing may differ between processes in the last digits); `prelude` runs first."""
    code = f"{prelude}\nimport sys\nfrom convae.__main__ import main\nsys.exit(main(sys.argv[1:]))"
    argv = ["train", "--data", str(data_root), *SLOW_ARGS, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CONVAE_KERNELS": "default"}  # kernels not chosen by timing
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def kept_epoch(path: Path) -> int:
    try:
        return load_state(path).epoch
    except ResumeError:
        return 0


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the training ended first: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.slow
def test_kill_9_during_an_epoch_then_the_same_command_resumes(
    data_root: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVAE_KERNELS", "default")  # as in the killed process (start_cli)
    out, key = tmp_path / "out", tiny_config(q1=8, q2=8, epochs=40, train_size=300).key()
    proc = start_cli(data_root, out)
    wait_for(lambda: kept_epoch(out / f"{key}.resume") >= 2, proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    after = kept_epoch(out / f"{key}.resume")
    assert after >= 2 and not (out / f"{key}.pt").exists()
    capsys.readouterr()
    assert train_cli(data_root, out, args=SLOW_ARGS) == 0
    assert f"Resuming: interrupted after epoch {after} of 40" in capsys.readouterr().out
    whole = tmp_path / "whole"
    assert train_cli(data_root, whole, args=SLOW_ARGS) == 0
    assert_same_epochs(epochs_of(out), epochs_of(whole))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".locks") == []


@pytest.mark.slow
def test_kill_9_while_an_epoch_is_written_keeps_the_one_before(
    data_root: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill lands between the write of a kept epoch's temporary file and its rename: the third write's
    fsync is made slow, and says so in a file first, so the kill comes while it waits. (The writer skips an
    epoch that a newer one replaced while it was still writing, so the third write is epoch 3 or later; the
    one before it is what stays.)"""
    monkeypatch.setenv("CONVAE_KERNELS", "default")  # as in the killed process (start_cli)
    out, key = tmp_path / "out", tiny_config(q1=8, q2=8, epochs=40, train_size=300).key()
    waiting = tmp_path / "in-fsync"
    slow_fsync = (
        f"import os, time\nreal = os.fsync\nWAITING = {str(waiting)!r}\n"
        "def fsync(fd, n=[0]):\n    n[0] += 1\n    if n[0] == 3:\n        open(WAITING, 'w').close()\n"
        "        time.sleep(60)\n    real(fd)\n"
        "os.fsync = fsync"
    )
    proc = start_cli(data_root, out, slow_fsync)
    wait_for(waiting.exists, proc)
    proc.kill()
    proc.wait()
    assert list(out.glob(f".{key}.resume.*.part"))  # the cut-off write: never read
    kept = kept_epoch(out / f"{key}.resume")
    assert kept >= 2  # the epoch before it, intact
    capsys.readouterr()
    assert train_cli(data_root, out, args=SLOW_ARGS) == 0
    assert f"Resuming: interrupted after epoch {kept} of 40" in capsys.readouterr().out
    assert not list(out.glob(".*.part"))  # the next claim of the configuration removed it
    assert len(epochs_of(out)) == 40
