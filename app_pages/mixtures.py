"""Mixtures page (Tasks 7-8, Figure 2): decoded mixtures of class means; click a cell to explore the pair."""

import numpy as np
import streamlit as st
import torch

import ui
from convae.analysis import interpolate
from convae.figures import clickable_image_grid, figure2_image, png_bytes

st.title("Mixtures of classes (Figure 2)")
ctx = ui.page_context()
if ctx is not None:
    config, splits, run, a = ctx
    names = list(a.classes)
    st.caption(
        "Each class o has a mean latent code μ_o (Eq. 2, over its validation images). Cell (row a, "
        "column b) shows the decoder's image of the midpoint (μ_a + μ_b) / 2 (Eq. 3); the diagonal shows "
        "the decoded class means themselves. **Click a cell** to study that pair below."
    )
    left, right = st.columns([3, 2], gap="large")
    with left:
        pair = st.session_state.get("pair", (3, 8))
        hover = [
            [f"row {names[i]} × column {names[j]}" + (" (class mean)" if i == j else "") for j in range(10)]
            for i in range(10)
        ]
        fig = clickable_image_grid(a.mixtures.numpy(), names, names, hover, selected=pair)
        event = st.plotly_chart(
            fig, key=f"mix-{pair}", on_select="rerun", selection_mode="points", config={"displayModeBar": False}
        )
        point = ui.clicked_point(event)
        if point is not None and point.get("customdata") is not None:
            clicked = tuple(int(v) for v in point["customdata"])
            if clicked != pair:
                st.session_state["pair"] = clicked
                st.rerun()
        st.download_button(
            "Download Figure 2 (PNG)",
            png_bytes(figure2_image(a.mixtures, a.classes)),
            file_name=f"figure2-{config.key()}.png",
            mime="image/png",
        )
    with right:
        o1, o2 = pair
        st.subheader(f"From {names[o1]} to {names[o2]}")
        alpha = st.slider(
            f"α: how much of {names[o2]}",
            0.0,
            1.0,
            0.5,
            0.05,
            key="alpha",
            help="The decoder draws D((1 - α)·μ_a + α·μ_b). α = 0.5 is the cell of Figure 2.",
        )
        mid = interpolate(run.model, a.means[o1], a.means[o2], alpha)
        c1, c2, c3 = st.columns(3)
        c1.image(
            ui.image_to_uint8(interpolate(run.model, a.means[o1], a.means[o2], 0.0), 5),
            caption=f"D(μ {names[o1]})",
            width="stretch",
        )
        c2.image(ui.image_to_uint8(mid, 5), caption=f"α = {alpha:.2f}", width="stretch")
        c3.image(
            ui.image_to_uint8(interpolate(run.model, a.means[o1], a.means[o2], 1.0), 5),
            caption=f"D(μ {names[o2]})",
            width="stretch",
        )
        steps = torch.linspace(0, 1, 11).tolist()
        frames = [ui.image_to_uint8(interpolate(run.model, a.means[o1], a.means[o2], t), 2) for t in steps]
        st.image(
            np.concatenate(frames, axis=1),
            caption="α = 0, 0.1, …, 1: one class turning into the other",
            width="stretch",
        )
        if o1 == o2:
            st.info("A diagonal cell: both ends are the same class mean, so every α gives the same image.")
