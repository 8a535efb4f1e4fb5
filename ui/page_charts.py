"""The heavier figures of the Train, Reconstructions, Mixtures, Latent walk and Compare runs pages, built
once per model (and selection) and shared by every tab: when a class follows the teacher to one of these
pages, thirty sessions ask for the same figure within a second, and each would otherwise build it (a
second or more each on two cores).

The figures are read, never changed, by the pages that draw them: each is a `ui.charts.SharedFigure`,
whose dict for the browser is made once for every tab.
"""

from __future__ import annotations

import functools

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from convae.data import Splits
from convae.pca import ImagePCA
from convae.store import StoredRun
from ui import results
from ui.baseline import comparison_rows, pca_reconstructions
from ui.charts import (
    clickable_image_grid,
    collapse_attempts,
    collapse_figure,
    loss_figure,
    pairs_grid_figure,
    restarts_title,
    runs_loss_figure,
    shared,
)
from ui.images import image_grid
from ui.latent_charts import walk_figure
from ui.results import Analysis, run_id

_CACHE = {"max_entries": 16, "show_spinner": False, "hash_funcs": {StoredRun: run_id}}


def shared_chart(max_entries: int = 16):
    """st.cache_resource for a builder of a figure that every tab draws as it is: built once per key, and
    made a SharedFigure (its dict for the browser made once too)."""

    def wrap(build):
        @functools.wraps(build)
        def built(*args, **kwargs):
            return shared(build(*args, **kwargs))

        return st.cache_resource(**{**_CACHE, "max_entries": max_entries})(built)

    return wrap


@shared_chart()
def figure1_chart(run: StoredRun, _splits: Splits, _pca: ImagePCA | None, with_pca: bool) -> go.Figure:
    """Figure 1 as the interactive grid of pairs (triples with PCA's reconstruction when `with_pca`)."""
    a = results.model_analysis(run, _splits)
    hover = results.batch_hover(a, _splits)
    pca_batch = pca_reconstructions(_pca, _splits.val_images[:100], run.config.k) if with_pca and _pca else None
    if pca_batch is not None:
        hover = [f"{h} · PCA {e:.4f}" for h, e in zip(hover, pca_batch[1].tolist(), strict=True)]
    pca = pca_batch[0].numpy() if pca_batch is not None else None
    return pairs_grid_figure(a.originals.numpy(), a.recons.numpy(), hover, pca=pca)


@shared_chart()
def pca_rows_chart(run: StoredRun, _splits: Splits, _pca: ImagePCA) -> go.Figure:
    """The fixed digits in three rows: originals, the auto-encoder's and PCA's reconstructions."""
    idx = results.preview_digits(_splits)
    return clickable_image_grid(*comparison_rows(run, _pca, _splits, idx), height=300)


@shared_chart()
def mixtures_chart(run: StoredRun, _splits: Splits, pair: tuple[int, int]) -> go.Figure:
    """Figure 2 as a clickable grid, the cell `pair` marked."""
    a = results.model_analysis(run, _splits)
    names = list(a.classes)
    return clickable_image_grid(a.mixtures.numpy(), names, names, results.mixture_hover(a), selected=pair)


@shared_chart()
def walk_chart(run: StoredRun, _a: Analysis, picked: tuple[float, float] | None) -> go.Figure:  # noqa: ARG001 (run: the key)
    """The latent plane to click on (`_a`: the model's analysis), the point `picked` marked."""
    return walk_figure(**_a.plane(), lattice=results.click_lattice(_a), picked=picked)


@st.cache_resource(**_CACHE)
def decoded_plane_image(run: StoredRun, _a: Analysis, n: int) -> np.ndarray:
    """The n x n lattice of the plane, decoded, as one image (tiles at twice their size)."""
    return image_grid(results.decoded_plane(run, _a, n), 2)


@shared_chart()
def history_chart(run: StoredRun, log_y: bool, baseline: float | None) -> go.Figure:
    """The Train page's loss chart of a stored run (`baseline`: PCA's MSE with the run's K, or None)."""
    h = run.history
    spe = h.steps[-1] // len(h.epochs) if h.steps else 1
    return loss_figure(
        h.steps, h.step_losses, h.epochs, spe, log_y=log_y, title=restarts_title(len(h.restarts)),
        baseline=baseline, k=run.config.k,
    )  # fmt: skip


@shared_chart()
def collapse_chart(run: StoredRun, blank: bool) -> go.Figure | None:
    """The first steps' readings of a stored run's attempts, for "Why did it collapse?"; None when the
    run learned from its first start."""
    attempts = collapse_attempts(run.history, blank)
    return collapse_figure(attempts) if attempts else None


@shared_chart(max_entries=32)
def compare_chart(runs: tuple[StoredRun, ...]) -> go.Figure:
    """Compare runs' loss curves of these runs, in this order."""
    return runs_loss_figure(list(runs))
