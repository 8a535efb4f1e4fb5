"""The "Inside the network" page's data: one validation digit traced through the model's layers, as
pictures, and the small grid of digits to pick from. Nothing here draws."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from convae.data import Splits
from convae.inside import Trace, trace
from convae.store import StoredRun
from ui.images import tiled_maps
from ui.results import run_id

INDEX_KEY = "inside_index"
GRID_ROWS, GRID_COLS = 2, 10  # the first 20 validation digits, to click

TEXT = {
    "filters": (
        "Each square is one of the Q1 = {q1} filters the first convolution learned: 5 × 5 weights, red "
        "positive, blue negative, white 0 (each on its own scale). A filter slides over the image two pixels "
        "at a time and answers strongly where the image looks like it; trained only to reconstruct, many "
        "look noisy, and the maps beside them show what each one picks out of the digit."
    ),
    "conv1": (
        "Map i is filter i (same place in its grid) slid over this digit, with the ReLU keeping only the "
        "positive answers: {q1} pictures of 14 × 14, half the image's size. Bright where the digit has the "
        "filter's stroke; all maps share one brightness scale, so a dark map did not respond to this digit."
    ),
    "conv2": (
        "Each of the Q2 = {q2} maps combines all {q1} maps before it through a 5 × 5 × {q1} filter of its own, "
        "again at half the size: 7 × 7. They answer to larger parts of the digit (a loop, a bar, an end) and "
        "are harder to read: nothing asks the network to make them readable."
    ),
    "code": (
        "One linear layer squeezes the {flat:,} numbers of the maps above into K = {k} numbers: the code "
        "E(x), all the decoder will get. The diamonds mark the mean code of this digit's class (Eq. 2): a "
        "digit typical of its class lies close to them."
    ),
    "decoder": (
        "The decoder goes the same way back: a linear layer spreads the K numbers over {q2} maps of 7 × 7, a "
        "transposed convolution grows them into {q1} maps of 14 × 14, and a last one draws the 28 × 28 image. "
        "Compare the output with the input: whatever the K numbers could not hold is lost."
    ),
}


@dataclass(frozen=True)
class LayerPictures:
    """The traced layers as RGB pictures for st.image (tiles of maps), and the trace itself."""

    trace: Trace
    filters: np.ndarray
    conv1: np.ndarray
    conv2: np.ndarray
    dec_linear: np.ndarray
    dec_conv1: np.ndarray


@st.cache_resource(max_entries=16, show_spinner=False, hash_funcs={StoredRun: run_id})
def _pictures(run: StoredRun, _splits: Splits, index: int) -> LayerPictures:
    t = trace(run.model, _splits.val_images[index])
    return LayerPictures(
        trace=t,
        filters=tiled_maps(t.filters, tile=48, diverging=True, per_map=True),
        conv1=tiled_maps(t.conv1, tile=48),
        conv2=tiled_maps(t.conv2, tile=48),
        dec_linear=tiled_maps(t.dec_linear, tile=42),
        dec_conv1=tiled_maps(t.dec_conv1, tile=42),
    )


def layer_pictures(run: StoredRun, splits: Splits, index: int) -> LayerPictures:
    """Validation image `index` through the model (cached per model and image)."""
    return _pictures(run, splits, index)


def texts(run: StoredRun) -> dict[str, str]:
    """The two sentences of each block, with the model's sizes filled in."""
    c = run.config
    sizes = {"q1": c.q1, "q2": c.q2, "k": c.k, "flat": c.q2 * 49}
    return {name: text.format(**sizes) for name, text in TEXT.items()}


def picker_grid(splits: Splits) -> tuple[np.ndarray, list[str], list[str], list[list[str]]]:
    """The first 20 validation digits as `charts.clickable_image_grid` takes them."""
    n = GRID_ROWS * GRID_COLS
    images = (splits.val_images[:n].float() / 255).reshape(GRID_ROWS, GRID_COLS, 28, 28).numpy()
    labels = splits.val_labels[:n].tolist()
    hover = [
        [f"image #{r * GRID_COLS + c}: {splits.classes[labels[r * GRID_COLS + c]]}" for c in range(GRID_COLS)]
        for r in range(GRID_ROWS)
    ]
    return images, [f"#{r * GRID_COLS}" for r in range(GRID_ROWS)], [str(c) for c in range(GRID_COLS)], hover


def on_grid_click(chart_key: str) -> None:
    """The digit grid's selection callback: pick the clicked digit (before the number input is drawn)."""
    event = st.session_state.get(chart_key) or {}
    points = event.get("selection", {}).get("points", [])
    cell = next((p.get("customdata") for p in points if p.get("customdata") is not None), None)
    if cell is not None:
        st.session_state[INDEX_KEY] = int(cell[0]) * GRID_COLS + int(cell[1])


def grid_cell(index: int) -> tuple[int, int] | None:
    """Where image `index` is in the grid, if it is there (the grid marks it)."""
    return divmod(index, GRID_COLS) if index < GRID_ROWS * GRID_COLS else None
