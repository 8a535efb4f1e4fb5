"""The "Inside the network" page: one validation digit traced through the model's layers, as pictures, the
small grid of digits to pick from, the blocks that show them, and the same blocks following a training
(from the job's latest copy of the weights, polled by a fragment; the job's thread never draws)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from convae.data import Splits
from convae.inside import Trace, trace
from convae.jobs import JobView
from convae.model import AutoEncoder
from convae.snapshots import Weights
from convae.store import StoredRun
from convae.train import TrainConfig
from ui.formation import live_job
from ui.images import image_to_uint8, tiled_maps
from ui.lesson_charts import code_figure
from ui.results import run_id
from ui.services import current_run

INDEX_KEY = "inside_index"
FOLLOW_KEY = "inside_follow"
FOLLOW_EVERY_S = 2.0  # how often a page that follows a training looks for newer weights
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
    return _as_pictures(trace(run.model, _splits.val_images[index]))


def _as_pictures(t: Trace) -> LayerPictures:
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


def texts(c: TrainConfig) -> dict[str, str]:
    """The two sentences of each block, with the model's sizes filled in."""
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


# --------------------------------------------------------------------------------- the blocks


def input_output(t: Trace, index: int, label: str) -> None:
    """The picked digit and what the model makes of it, side by side."""
    a, b = st.columns(2)
    a.image(image_to_uint8(t.image, 6), caption=f"input: image #{index}, a {label}", width="stretch")
    b.image(image_to_uint8(t.output, 6), caption=f"output D(E(x)) · MSE {t.mse:.4f}", width="stretch")


def layers(pics: LayerPictures, c: TrainConfig, mean: np.ndarray | None, label: str) -> None:
    """Blocks 1 to 4: the first convolution's filters and maps, the second's maps, the code, the decoder."""
    t, text = pics.trace, texts(c)
    st.subheader(f"1 · The first convolution: {c.q1} filters and the maps they make")
    left, right = st.columns(2, gap="large")
    left.image(pics.filters, caption=f"{c.q1} filters, 5 × 5 each", width=min(560, pics.filters.shape[1]))
    left.caption(text["filters"])
    conv1 = f"{c.q1} feature maps, 14 × 14 (after the ReLU)"
    right.image(pics.conv1, caption=conv1, width=min(560, pics.conv1.shape[1]))
    right.caption(text["conv1"])

    st.subheader(f"2 · The second convolution: {c.q2} maps of 7 × 7")
    left, right = st.columns(2, gap="large")
    left.image(pics.conv2, caption=f"{c.q2} feature maps, 7 × 7 (after the ReLU)", width=min(560, pics.conv2.shape[1]))
    right.caption(text["conv2"])

    st.subheader(f"3 · The code: K = {c.k} number{'s' if c.k > 1 else ''}")
    left, right = st.columns([3, 2], gap="large")
    left.plotly_chart(code_figure(t.code.numpy(), mean, label), key="inside-code", config={"displayModeBar": False})
    right.caption(text["code"])

    st.subheader("4 · The decoder, back up: 7 × 7 → 14 × 14 → 28 × 28")
    c1, c2, c3 = st.columns([3, 3, 2], gap="large")
    c1.image(pics.dec_linear, caption=f"{c.q2} maps of 7 × 7 from the code", width=min(460, pics.dec_linear.shape[1]))
    c2.image(pics.dec_conv1, caption=f"{c.q1} maps of 14 × 14", width=min(460, pics.dec_conv1.shape[1]))
    c3.image(image_to_uint8(t.output, 6), caption="the output, 28 × 28", width="stretch")
    st.caption(text["decoder"])


# ----------------------------------------------------------------------- following a training


def follow_toggle(config: TrainConfig) -> bool:
    """ "Follow the training", offered while the selected configuration trains (on at first when no model of
    it is stored yet: there is nothing else to show)."""
    if live_job(config) is None:
        return False
    return st.toggle(
        "Follow the training",
        key=FOLLOW_KEY,
        value=current_run(config) is None,
        help="Show the layers with the weights of the training that runs now, updated as it goes: before "
        "training, four times in the first epoch and at the end of every epoch.",
    )


@st.cache_resource(max_entries=16, show_spinner=False, hash_funcs={Weights: lambda w: w.serial})
def _live_pictures(weights: Weights, c: TrainConfig, _splits: Splits, index: int) -> LayerPictures:
    model = AutoEncoder(c.q1, c.q2, c.k)
    model.load_state_dict(weights.state)
    return _as_pictures(trace(model.eval(), _splits.val_images[index]))


def live_pictures(view: JobView, splits: Splits, index: int) -> LayerPictures:
    """Image `index` through the job's latest copy of the weights (cached per copy and image)."""
    return _live_pictures(view.weights, view.config, splits, index)


def live_class_mean(view: JobView, splits: Splits, index: int) -> np.ndarray | None:
    """The mean code of the digit's class over the newest snapshot's images, when that snapshot was taken with
    the weights shown (else None)."""
    s, w = view.snapshots, view.weights
    if not s or w is None or s.marks[-1].label != w.label:
        return None
    codes = s.codes[-1].float()
    members = codes[splits.val_labels[: len(codes)] == splits.val_labels[index]]
    return members.mean(0).numpy() if len(members) else None


def follow(config: TrainConfig, splits: Splits, index: int, label: str) -> None:
    """The blocks from the training job's latest weights, redrawn when newer ones come (a fragment)."""

    @st.fragment(run_every=FOLLOW_EVERY_S)
    def live() -> None:
        view = live_job(config)
        if view is None:
            st.rerun(scope="app")  # the training ended: the page shows the stored model
        if view.weights is None:
            st.info(
                "Waiting for the training to start: its first weights appear here.", icon=":material/hourglass_top:"
            )
            return
        pics = live_pictures(view, splits, index)
        note, right = st.columns([3, 2], gap="large")
        note.info(
            f"Following the training: the weights as they were **{view.weights.label}** "
            f"(of {config.epochs} epoch{'s' if config.epochs > 1 else ''}). Watch the filters take shape.",
            icon=":material/model_training:",
        )
        with right:
            input_output(pics.trace, index, label)
        layers(pics, config, live_class_mean(view, splits, index), label)

    live()
