"""What the pages show of a model: its analysis, computed once per model and cached, and the small
computations behind each page's controls (a clicked image, an α, a point of the plane, a drawing).

Everything here returns data; the pages draw it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from convae import analysis
from convae.data import Splits
from convae.figures import figure1_image, figure2_image, png_bytes
from convae.store import StoredRun
from convae.train import preview_indices
from ui.charts import shared
from ui.latent_charts import latent_figure


@dataclass
class Analysis:
    """Everything the analysis pages draw for one model, computed once per model."""

    latents: torch.Tensor  # (10000, K)
    labels: np.ndarray
    pca: analysis.PCA
    means: torch.Tensor  # (10, K)
    means_2d: np.ndarray
    originals: torch.Tensor  # (100, 28, 28) first validation batch
    recons: torch.Tensor
    errors: torch.Tensor  # (100,)
    mixtures: torch.Tensor  # (10, 10, 28, 28)
    classes: tuple[str, ...]

    def axis_titles(self) -> tuple[str, str]:
        k = self.latents.shape[1]
        ev = self.pca.explained.tolist()
        if k == 1:
            return ("z (the 1-D latent code)", "class")
        if k == 2:
            return (f"z1 ({ev[0]:.0%} of the variance)", f"z2 ({ev[1]:.0%} of the variance)")
        return (f"PC 1 ({ev[0]:.0%} of the variance)", f"PC 2 ({ev[1]:.0%} of the variance)")

    def plane(self) -> dict:
        """The latent plane as `ui.latent_charts`' class maps take it (keyword arguments)."""
        return {
            "coords": self.pca.coords.numpy(),
            "labels": self.labels,
            "class_names": self.classes,
            "means_2d": self.means_2d,
            "axis_titles": self.axis_titles(),
        }


def run_id(run: StoredRun) -> str:
    """What tells stored runs apart in the caches (a retrained config is a new run)."""
    return f"{run.config.key()}@{run.created}@{run.path}"


@st.cache_resource(max_entries=6, show_spinner="Analysing the model…", hash_funcs={StoredRun: run_id})
def _analysis(run: StoredRun, _splits: Splits) -> Analysis:
    model = run.model
    latents = analysis.encode(model, _splits.val_images)
    pca = analysis.pca_2d(latents)
    means = run.class_means
    originals, recons, errors = analysis.reconstruct(model, _splits.val_images[:100])
    return Analysis(
        latents=latents,
        labels=_splits.val_labels.numpy(),
        pca=pca,
        means=means,
        means_2d=pca.project(means).numpy(),
        originals=originals,
        recons=recons,
        errors=errors,
        mixtures=analysis.mixture_matrix(model, means),
        classes=_splits.classes,
    )


def model_analysis(run: StoredRun, splits: Splits) -> Analysis:
    return _analysis(run, splits)


@st.cache_resource(max_entries=4, show_spinner="Drawing 10,000 latent codes…", hash_funcs={StoredRun: run_id})
def _latent_figure(run: StoredRun, _splits: Splits) -> go.Figure:
    a = model_analysis(run, _splits)
    images = _splits.val_images.numpy().astype(np.float32) / 255
    return shared(latent_figure(a.pca.coords.numpy(), a.labels, images, a.classes, a.means_2d, a.axis_titles()))


def latent_figure_for(run: StoredRun, splits: Splits) -> go.Figure:
    """The latent scatter of a model (cached and shared by every tab: read only)."""
    return _latent_figure(run, splits)


# -------------------------------------------------------------------- Train, Compare runs


_PREVIEW: dict[int, tuple[torch.Tensor, list[int]]] = {}


def preview_digits(splits: Splits) -> list[int]:
    """The fixed "watch it learn" validation digits: the first of each class (found once per data set)."""
    labels = splits.val_labels
    kept = _PREVIEW.get(id(labels))
    if kept is None or kept[0] is not labels:
        kept = _PREVIEW[id(labels)] = (labels, preview_indices(labels).tolist())
    return list(kept[1])


def reconstruct_digits(
    run: StoredRun, splits: Splits, idx: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(originals, reconstructions, per-image MSE) of some validation digits (once per model and digits:
    every tab that shows the model asks for the same)."""
    return _reconstructed(run, splits, tuple(idx))


@st.cache_resource(max_entries=64, show_spinner=False, hash_funcs={StoredRun: run_id})
def _reconstructed(run: StoredRun, _splits: Splits, idx: tuple[int, ...]):
    return analysis.reconstruct(run.model, _splits.val_images[list(idx)])


def history_csv(run: StoredRun) -> bytes:
    """A run's per-epoch losses as CSV."""
    return pd.DataFrame(run.history.epochs).to_csv(index=False).encode()


def checkpoint_bytes(run: StoredRun) -> bytes:
    """A stored run's checkpoint file, for download."""
    return run.path.read_bytes()


def runs_table(runs: list[StoredRun]) -> pd.DataFrame:
    """One row per stored run, as the Compare page lists them."""
    return pd.DataFrame(
        [
            {
                "data set": r.config.dataset,
                "Q1": r.config.q1,
                "Q2": r.config.q2,
                "K": r.config.k,
                "epochs": len(r.history.epochs),
                "state": r.label or "complete",
                "learning rate": r.config.lr,
                "batch": r.config.batch_size,
                "images": r.config.train_size or 60000,
                "seed": r.config.seed,
                "training loss": r.train_loss,
                "validation loss": r.val_loss,
                "minutes": r.seconds / 60,
                "when": "shipped" if r.shipped else r.created.replace("T", " ")[:16],
            }
            for r in runs
        ]
    )


# ------------------------------------------------------------------- Reconstructions, Latent


def batch_hover(a: Analysis, splits: Splits) -> list[str]:
    """The hover text of each pair of Figure 1: class, image number, error."""
    labels = splits.val_labels[:100].tolist()
    return [f"{a.classes[labels[i]]} · image #{i} · MSE {a.errors[i]:.4f}" for i in range(100)]


def extremes(a: Analysis, n: int = 8) -> tuple[list[int], list[int]]:
    """The first batch's n largest and n smallest errors (image numbers, worst and best first)."""
    order = torch.argsort(a.errors, descending=True).tolist()
    return order[:n], order[-n:][::-1]


def figure1_png(a: Analysis) -> bytes:
    """Figure 1 (the first batch's pairs) as the command line writes it, as PNG bytes."""
    return png_bytes(figure1_image(a.originals, a.recons))


def latent_code_text(a: Analysis, i: int) -> str:
    """Validation image i's latent code, printed in short."""
    return np.array2string(a.latents[i].numpy(), precision=2, max_line_width=30, suppress_small=True)


# ---------------------------------------------------------------------------------- Mixtures


def mixture_hover(a: Analysis) -> list[list[str]]:
    """The hover text of each cell of Figure 2."""
    names = a.classes
    return [
        [f"row {names[i]} × column {names[j]}" + (" (class mean)" if i == j else "") for j in range(10)]
        for i in range(10)
    ]


def figure2_png(a: Analysis) -> bytes:
    """Figure 2 (the decoded mixtures) as the command line writes it, as PNG bytes."""
    return png_bytes(figure2_image(a.mixtures, a.classes))


ALPHA_STEPS = torch.linspace(0, 1, 11).tolist()  # the strip of one class turning into the other


def between(run: StoredRun, a: Analysis, pair: tuple[int, int], alphas: list[float]) -> list[torch.Tensor]:
    """D((1 - α)·μ_o1 + α·μ_o2) for each α, for the class pair (o1, o2) (once per model, pair and α's)."""
    return _between(run, a, tuple(pair), tuple(alphas))


@st.cache_resource(max_entries=256, show_spinner=False, hash_funcs={StoredRun: run_id})
def _between(run: StoredRun, _a: Analysis, pair: tuple[int, int], alphas: tuple[float, ...]) -> list[torch.Tensor]:
    o1, o2 = pair
    return [analysis.interpolate(run.model, _a.means[o1], _a.means[o2], t) for t in alphas]


# --------------------------------------------------------------------------- Latent walk


def plane_bounds(a: Analysis) -> tuple[np.ndarray, np.ndarray]:
    """The 1st and 99th percentiles of the validation codes in the plane, per axis."""
    coords = a.pca.coords.numpy()
    return np.percentile(coords, 1, axis=0), np.percentile(coords, 99, axis=0)


def click_lattice(a: Analysis, n: int = 41) -> tuple[np.ndarray, np.ndarray]:
    """The x and y of an n x n lattice of click targets over the plane."""
    lo, hi = plane_bounds(a)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    return gx.ravel(), gy.ravel()


def decode_point(run: StoredRun, a: Analysis, point: np.ndarray) -> tuple[torch.Tensor, str]:
    """The image the decoder draws at a point of the plane, and the class whose mean is nearest."""
    z = a.pca.lift(torch.tensor(point, dtype=torch.float32)[None])
    dists = torch.linalg.vector_norm(a.means - z, dim=1)
    return analysis.decode(run.model, z)[0], a.classes[int(dists.argmin())]


def decoded_plane(run: StoredRun, a: Analysis, n: int) -> torch.Tensor:
    """An n x n lattice of the plane, decoded: (rows, n, 28, 28), top row the largest y (one row for 1-D)."""
    lo, hi = plane_bounds(a)
    xs = torch.linspace(float(lo[0]), float(hi[0]), n)
    if a.pca.coords.shape[1] == 1:
        return analysis.decode(run.model, a.pca.lift(xs[:, None]))[None]
    ys = torch.linspace(float(hi[1]), float(lo[1]), n)  # top row = largest y, as on the plot
    return analysis.decode_grid(run.model, a.pca, xs, ys)


# --------------------------------------------------------------------------- Draw a digit


@dataclass
class Drawing:
    """A drawing, as the model sees it."""

    image: torch.Tensor  # (28, 28) uint8, MNIST-like
    reconstruction: torch.Tensor  # (28, 28) in [0, 1]
    nearest: int  # the class whose mean is closest
    distances: torch.Tensor  # (10,) to each class mean
    point: tuple[float, float]  # where it lies on the plane (1-D codes: on its nearest class's row)


def read_drawing(run: StoredRun, a: Analysis, ink: torch.Tensor) -> Drawing:
    """Make a drawing's ink MNIST-like, encode it, decode it and place it among the class means."""
    x = analysis.mnist_like(ink)
    z = analysis.encode(run.model, x[None])
    y = analysis.decode(run.model, z)[0]
    cls, dists = analysis.nearest_class(z[0], a.means)
    xy = a.pca.project(z).numpy()[0]
    return Drawing(x, y, cls, dists, (xy[0], xy[1] if len(xy) > 1 else float(cls)))
