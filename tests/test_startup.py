"""What every process pays before its first step: no torchvision import on the way to training or to a
page, and the replacements for what torchvision did (reading IDX files, tiling images) agree with it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torchvision import datasets
from torchvision.utils import make_grid

from convae.data import DataError, load_splits
from convae.figures import tile
from convae.synthetic import make_synthetic


@pytest.mark.parametrize(("n", "nrow", "padding", "pad"), [(100, 10, 4, 1.0), (7, 3, 2, 0.0), (1, 10, 0, 0.5)])
def test_tile_is_make_grid(n: int, nrow: int, padding: int, pad: float) -> None:
    images = torch.rand(n, 1, 28, 29)
    assert torch.equal(tile(images, nrow, padding, pad), make_grid(images, nrow=nrow, padding=padding, pad_value=pad))


def test_splits_equal_torchvisions(data_root) -> None:
    splits = load_splits(data_root)
    for train, images, labels in (
        (True, splits.train_images, splits.train_labels),
        (False, splits.val_images, splits.val_labels),
    ):
        ref = datasets.MNIST(str(data_root), train=train, download=False)
        assert torch.equal(images, ref.data) and torch.equal(labels, ref.targets)
        assert labels.dtype == ref.targets.dtype == torch.int64  # uint8 labels would index as a mask


def test_damaged_file_says_which(tmp_path) -> None:
    root = make_synthetic(tmp_path, n_train=20, n_val=10)
    victim = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    victim.write_bytes(victim.read_bytes()[:-5])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is truncated"):
        load_splits(root)


def test_no_torchvision_on_the_way_to_training_or_a_page() -> None:
    code = (
        "import sys, convae.__main__, convae.train, convae.jobs, convae.figures, convae.analysis, ui.charts; "
        "print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_pca_is_fitted_once_then_read(tmp_path) -> None:
    from convae.pca import CACHE_NAME, cached_pca

    root = make_synthetic(tmp_path, n_train=120, n_val=40)
    cache = root / "MNIST" / CACHE_NAME
    first = cached_pca(root, "mnist")
    assert cache.is_file() and first.seconds > 0
    again = cached_pca(root, "mnist")
    assert again.seconds == 0.0  # read, not fitted
    for name in ("mean", "components", "explained", "val_mse"):
        assert torch.equal(getattr(first, name), getattr(again, name))

    cache.write_bytes(b"not a torch file")  # damaged: fitted again, and the file repaired
    assert cached_pca(root, "mnist").seconds > 0 and cached_pca(root, "mnist").seconds == 0.0

    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = bytearray(images.read_bytes())
    data[16:800] = bytes(784)  # other training images: the cache no longer belongs to them
    images.write_bytes(bytes(data))
    refit = cached_pca(root, "mnist")
    assert refit.seconds > 0 and not torch.equal(refit.mean, first.mean)


def test_pca_without_a_writable_folder(tmp_path, monkeypatch) -> None:
    from convae import pca as pca_module

    root = make_synthetic(tmp_path, n_train=120, n_val=40)

    def refuse(*_args, **_kwargs) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pca_module.torch, "save", refuse)
    assert pca_module.cached_pca(root, "mnist").seconds > 0  # fitted, not kept, no error
    assert not (root / "MNIST" / pca_module.CACHE_NAME).exists()


@pytest.mark.slow
def test_make_runs_launcher_imports_ahead_and_then_serves_the_first_page(tmp_path) -> None:
    """`python -m ui.serve` (what `make run` starts): once the server listens, torch and the dashboard's
    modules are imported on a thread (the log says so), and the page then opens as with `streamlit run`."""
    import asyncio
    import time

    from tests.support.server import Server
    from tests.support.st_client import Session

    root = make_synthetic(tmp_path / "data", n_train=64, n_val=32)
    with Server(root, tmp_path / "runs", tmp_path / "server.log", launcher=("-m", "ui.serve")) as server:
        deadline = time.monotonic() + 90
        while "ahead of the first page" not in server.log_text():
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.2)
        line = next(x for x in server.log_text().splitlines() if "ahead of the first page" in x)
        assert "Imported torch, pandas, plotly.graph_objects, 8 of the dashboard's modules ahead" in line

        async def first_page() -> Session:
            async with Session(server.url) as session:
                await session.wait_for(lambda s: s.has_text("Train the auto-encoder"), what="the Train page")
                return session

        asyncio.run(first_page())
        assert "Traceback" not in server.log_text()
