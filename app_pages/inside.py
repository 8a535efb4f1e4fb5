"""Inside the network: one validation digit through every layer, from the first filters to the output; while
the selected configuration trains, the same view can follow the training."""

from functools import partial

import streamlit as st

from ui import network, share
from ui.charts import clickable_image_grid
from ui.services import page_context, splits_or_notice
from ui.state import selected_config

st.title("Inside the network")
c = selected_config()
following = network.follow_toggle(c)  # offered while this configuration trains
ctx = None if following else page_context()
splits = ctx.splits if ctx is not None else splits_or_notice(c.dataset) if following else None
if splits is not None:
    st.caption(
        f"What the auto-encoder (Q1 = {c.q1}, Q2 = {c.q2}, K = {c.k}) computes for one validation digit, "
        "layer by layer, in the order of Table 1. Pick a digit by its number or click one of the first 20."
    )
    pick, shown = st.columns([3, 2], gap="large")
    with pick:
        share.index_in(network.INDEX_KEY, len(splits.val_images))  # a shared link's digit, if this data has it
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
    index, cls = int(index), int(splits.val_labels[int(index)])
    if following:
        shown.caption("Following the training: below, this digit through the layers with its latest weights.")
        network.follow(c, splits, index, splits.classes[cls])
    else:
        pics = network.layer_pictures(ctx.run, splits, index)
        with shown:
            network.input_output(pics.trace, index, splits.classes[cls])
        network.layers(pics, c, ctx.analysis.means[cls].numpy(), splits.classes[cls])
