"""PCA of the images: the linear baseline for every bottleneck size K.

A linear auto-encoder with K units learns the same subspace as PCA with K components, so PCA's
reconstruction error is what K numbers per image buy *without* non-linearity. It is fitted in closed
form on the mean-centred training images (the eigenvectors of their 784 x 784 covariance) and measured
on the validation images, in the loss's units: the mean squared error per pixel, pixels in [0, 1].
Reconstructions are not clipped to [0, 1]: the baseline is the plain linear map.

`cached_pca` keeps the fit in a file beside the data set's raw files, so that a new process (a server's
first page, the sweep script) reads it in milliseconds instead of fitting it again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from convae.data import Splits, dataset_info, load_splits, to_float
from convae.model import SIZE_RANGES

MAX_K = SIZE_RANGES["K"][1]  # every K the sliders allow
PIXELS = 28 * 28


@dataclass(frozen=True)
class ImagePCA:
    """The principal components of a data set's training images and the validation MSE for each K."""

    mean: torch.Tensor  # (784,) the mean training image
    components: torch.Tensor  # (MAX_K, 784) unit directions, largest variance first
    explained: torch.Tensor  # (MAX_K,) fraction of the training images' variance along each direction
    val_mse: torch.Tensor  # (MAX_K,) validation MSE with the first K components, at index K - 1
    seconds: float  # how long the fit and the measurement took

    def mse(self, k: int) -> float:
        """The validation MSE of PCA with k components."""
        _check_k(k, len(self.val_mse))
        return float(self.val_mse[k - 1])

    def encode(self, images: torch.Tensor, k: int) -> torch.Tensor:
        """The first k principal coordinates of uint8 images (N, 28, 28) -> (N, k)."""
        _check_k(k, len(self.components))
        return (_flat(images) - self.mean) @ self.components[:k].T

    def decode(self, coords: torch.Tensor) -> torch.Tensor:
        """Images (N, 28, 28) from principal coordinates (N, k): mean + coords @ components[:k]."""
        k = coords.shape[1]
        return (self.mean + coords.to(self.mean.dtype) @ self.components[:k]).reshape(-1, 28, 28)

    def reconstruct(self, images: torch.Tensor, k: int) -> torch.Tensor:
        """PCA's reconstruction of uint8 images with k components, (N, 28, 28) (not clipped)."""
        return self.decode(self.encode(images, k))


def _check_k(k: int, available: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise ValueError(f"PCA has components 1 to {available}; K must be a whole number in that range, got {k!r}.")


def _flat(images: torch.Tensor) -> torch.Tensor:
    return to_float(images).reshape(len(images), PIXELS)


@torch.no_grad()
def fit_pca(splits: Splits, max_k: int = MAX_K) -> ImagePCA:
    """PCA of the training images (closed form) and its validation MSE for every K from 1 to max_k.

    The covariance is accumulated in float32 (one matrix product over 60,000 images, about a second on
    two cores) and diagonalised with `eigh` in float32 (0.2-0.6 s; float64 took twice as long here for
    the same errors to 7 digits); the errors are summed in float64. With orthonormal components the
    error for every K comes from one projection: the squared norm of a centred image minus the squares
    of its first K coordinates.
    """
    t0 = time.perf_counter()
    x = _flat(splits.train_images)
    mean = x.mean(dim=0)
    x -= mean
    cov = x.T @ x / len(x)
    del x
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
    order = torch.argsort(eigenvalues, descending=True)[:max_k]
    components = eigenvectors[:, order].T.contiguous()  # (max_k, 784)
    # A stable sign: the largest entry of each direction is positive (the pictures do not flip).
    signs = torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True)))
    components = components * signs
    explained = eigenvalues[order].clamp_min(0) / eigenvalues.clamp_min(0).sum()

    v = _flat(splits.val_images) - mean
    coords = (v @ components.T).double()  # (N, max_k)
    captured = coords.pow(2).sum(dim=0).cumsum(dim=0)
    val_mse = ((v.double().pow(2).sum() - captured) / v.numel()).clamp_min(0).float()
    return ImagePCA(mean, components, explained, val_mse, time.perf_counter() - t0)


def pca_parameters(k: int) -> int:
    """The numbers PCA with k components keeps: the mean image and k directions of 784 pixels."""
    return PIXELS * (k + 1)


CACHE_NAME = "convae-pca-v1.pt"  # beside the data set's raw/ folder


def _stamp(raw: Path) -> list[list]:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(raw.iterdir()) if p.is_file()]


def _read_cache(path: Path, stamp: list[list]) -> ImagePCA | None:
    """The cached PCA if the file holds one made from these raw files, with the expected shapes; else None."""
    try:
        d = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 (whatever is wrong with the file, the fit is made again)
        return None
    if not isinstance(d, dict) or d.get("stamp") != stamp:
        return None
    shapes = {"mean": (PIXELS,), "components": (MAX_K, PIXELS), "explained": (MAX_K,), "val_mse": (MAX_K,)}
    parts = {name: d.get(name) for name in shapes}
    for name, shape in shapes.items():
        t = parts[name]
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or tuple(t.shape) != shape:
            return None
        if not torch.isfinite(t).all():
            return None
    return ImagePCA(**parts, seconds=0.0)


def cached_pca(root: Path, dataset: str) -> ImagePCA:
    """PCA (all K) of a provisioned data set: read from its cache file when that was made from the same raw
    files, else fitted (a few seconds) and written there for the next process (silently not, where the
    folder is read-only). `seconds` is 0 for a fit read from the cache."""
    raw = dataset_info(dataset).raw_dir(Path(root))
    path = raw.parent / CACHE_NAME
    stamp = _stamp(raw)
    cached = _read_cache(path, stamp)
    if cached is not None:
        return cached
    pca = fit_pca(load_splits(Path(root), dataset))
    tmp = path.with_name(f".{CACHE_NAME}.{os.getpid()}.tmp")
    try:
        keep = {"mean": pca.mean, "components": pca.components, "explained": pca.explained, "val_mse": pca.val_mse}
        torch.save({"stamp": stamp, **keep}, tmp)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
    return pca
