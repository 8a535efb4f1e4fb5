"""Inside the network: one validation digit through every layer, from the first filters to the output."""

from functools import partial

import streamlit as st

from ui import network
from ui.charts import clickable_image_grid
from ui.images import image_to_uint8
from ui.lesson_charts import code_figure
from ui.services import page_context

st.title("Inside the network")
ctx = page_context()
if ctx is not None:
    run, splits = ctx.run, ctx.splits
    c = ctx.config
    st.caption(
        f"What the auto-encoder (Q1 = {c.q1}, Q2 = {c.q2}, K = {c.k}) computes for one validation digit, "
        "layer by layer, in the order of Table 1. Pick a digit by its number or click one of the first 20."
    )
    pick, shown = st.columns([3, 2], gap="large")
    with pick:
        index = st.number_input(
            "Validation image #", min_value=0, max_value=len(splits.val_images) - 1, step=1, key=network.INDEX_KEY
        )
        grid_key = "inside-digits"
        st.plotly_chart(
            clickable_image_grid(*network.picker_grid(splits), selected=network.grid_cell(index), height=190),
            key=grid_key,
            on_select=partial(network.on_grid_click, grid_key),
            selection_mode="points",
            config={"displayModeBar": False},
        )
    pics = network.layer_pictures(run, splits, int(index))
    t, text = pics.trace, network.texts(run)
    with shown:
        a, b = st.columns(2)
        label = splits.classes[int(splits.val_labels[int(index)])]
        a.image(image_to_uint8(t.image, 6), caption=f"input: image #{index}, a {label}", width="stretch")
        b.image(image_to_uint8(t.output, 6), caption=f"output D(E(x)) · MSE {t.mse:.4f}", width="stretch")

    st.subheader(f"1 · The first convolution: {c.q1} filters and the maps they make")
    left, right = st.columns(2, gap="large")
    left.image(pics.filters, caption=f"{c.q1} filters, 5 × 5 each", width=min(560, pics.filters.shape[1]))
    left.caption(text["filters"])
    right.image(
        pics.conv1, caption=f"{c.q1} feature maps, 14 × 14 (after the ReLU)", width=min(560, pics.conv1.shape[1])
    )
    right.caption(text["conv1"])

    st.subheader(f"2 · The second convolution: {c.q2} maps of 7 × 7")
    left, right = st.columns(2, gap="large")
    left.image(pics.conv2, caption=f"{c.q2} feature maps, 7 × 7 (after the ReLU)", width=min(560, pics.conv2.shape[1]))
    right.caption(text["conv2"])

    st.subheader(f"3 · The code: K = {c.k} number{'s' if c.k > 1 else ''}")
    left, right = st.columns([3, 2], gap="large")
    mean = ctx.analysis.means[int(splits.val_labels[int(index)])].numpy()
    left.plotly_chart(code_figure(t.code.numpy(), mean, label), key="inside-code", config={"displayModeBar": False})
    right.caption(text["code"])

    st.subheader("4 · The decoder, back up: 7 × 7 → 14 × 14 → 28 × 28")
    c1, c2, c3 = st.columns([3, 3, 2], gap="large")
    c1.image(pics.dec_linear, caption=f"{c.q2} maps of 7 × 7 from the code", width=min(460, pics.dec_linear.shape[1]))
    c2.image(pics.dec_conv1, caption=f"{c.q1} maps of 14 × 14", width=min(460, pics.dec_conv1.shape[1]))
    c3.image(image_to_uint8(t.output, 6), caption="the output, 28 × 28", width="stretch")
    st.caption(text["decoder"])
