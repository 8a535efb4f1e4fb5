"""PCA, the linear baseline, as the pages show it: fitted once per data set and server, then read.

`convae.pca.cached_pca` reads the fit from its file beside the data (fitting it, a few seconds, only when the
files are new); `st.cache_resource` keeps it for every tab. A data set that is not provisioned yet gives None
(not cached, so the baseline appears once the data is there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from convae import analysis
from convae.data import Splits, check_files, data_root
from convae.pca import MAX_K, ImagePCA, cached_pca
from convae.store import StoredRun
from convae.train import TrainConfig

GAP_NOTE = (
    "The grey dashed line is PCA with K components: the best any *linear* encoder and decoder with the "
    "same K numbers per image can do on these validation images. The gap between it and the validation "
    "loss is what the convolutions and the ReLUs buy; a model that ends above the line has not yet beaten "
    "linear algebra."
)


@st.cache_resource(show_spinner="Computing PCA of the training images (once per data set)…", max_entries=2)
def _fit(dataset: str) -> ImagePCA:
    return cached_pca(data_root(), dataset)


def image_pca(dataset: str) -> ImagePCA | None:
    """The data set's PCA (all K from 1 to 64), or None while its data is not provisioned."""
    if check_files(data_root(), dataset):
        return None
    return _fit(dataset)


def pca_mse(dataset: str, k: int) -> float | None:
    """PCA's validation MSE with k components, or None without data (or for a K beyond PCA's)."""
    pca = image_pca(dataset)
    return pca.mse(k) if pca is not None and 1 <= k <= MAX_K else None


def pca_mse_for(config: TrainConfig) -> float | None:
    """The baseline for the Train page's loss chart: PCA with the config's K, on its data set."""
    return pca_mse(config.dataset, config.k)


def components_to_match(pca: ImagePCA, loss: float) -> int | None:
    """The fewest PCA components whose validation MSE is at most `loss` (None: more than 64)."""
    below = (pca.val_mse <= loss).nonzero()
    return int(below[0]) + 1 if len(below) else None


def pca_reconstructions(pca: ImagePCA, images: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA's reconstructions of uint8 images with k components (not clipped) and each one's MSE."""
    recon = pca.reconstruct(images, k)
    err = ((recon - images.float() / 255) ** 2).mean(dim=(1, 2))
    return recon, err


def comparison_rows(
    run: StoredRun, pca: ImagePCA, splits: Splits, idx: list[int]
) -> tuple[np.ndarray, list[str], list[str], list[list[str]]]:
    """Validation digits `idx` in three rows: the originals, the auto-encoder's and PCA's reconstructions
    with the model's K; with the row labels, column labels and hover text of `charts.clickable_image_grid`."""
    k = run.config.k
    originals, recons, ae_err = analysis.reconstruct(run.model, splits.val_images[idx])
    pca_recons, pca_err = pca_reconstructions(pca, splits.val_images[idx], k)
    images = torch.stack([originals, recons, pca_recons.clamp(0, 1)]).numpy()
    names = [splits.classes[int(splits.val_labels[i])] for i in idx]
    rows = ["original", "auto-encoder", f"PCA, {k} comp."]
    hover = [
        [f"{n} · image #{i}" for n, i in zip(names, idx, strict=True)],
        [f"auto-encoder · MSE {e:.4f}" for e in ae_err.tolist()],
        [f"PCA with {k} components · MSE {e:.4f}" for e in pca_err.tolist()],
    ]
    return images, rows, names, hover


@dataclass(frozen=True)
class PcaPlane:
    """The validation images on the plane of the first two principal components of the training images."""

    coords: np.ndarray  # (N, 2)
    means_2d: np.ndarray  # (10, 2): each class's mean image, projected
    axis_titles: tuple[str, str]


@st.cache_resource(max_entries=2, show_spinner=False)
def _plane(dataset: str, _splits: Splits) -> PcaPlane:
    pca = _fit(dataset)
    coords = pca.encode(_splits.val_images, 2)
    labels = _splits.val_labels
    means = torch.stack([coords[labels == c].mean(dim=0) for c in range(len(_splits.classes))])
    ev = pca.explained[:2].tolist()
    titles = (f"PC 1 of the images ({ev[0]:.0%} of the variance)", f"PC 2 of the images ({ev[1]:.0%})")
    return PcaPlane(coords.numpy(), means.numpy(), titles)


def pca_plane(splits: Splits) -> PcaPlane | None:
    """The validation images projected on PCA's plane (what a linear K = 2 code looks like)."""
    if image_pca(splits.info.name) is None:
        return None
    return _plane(splits.info.name, splits)
