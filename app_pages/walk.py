"""Latent walk page: click anywhere on the PCA plane and see what the decoder draws there."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

import ui
from convae.analysis import decode, decode_grid
from convae.figures import class_map

st.title("Walk the latent space")
ctx = ui.page_context()
if ctx is not None:
    config, splits, run, a = ctx
    coords = a.pca.coords.numpy()
    d = coords.shape[1]
    lo, hi = np.percentile(coords, 1, axis=0), np.percentile(coords, 99, axis=0)
    st.caption(
        "The decoder can turn *any* latent code into an image, not only codes of real digits. Here a "
        "point (x, y) of the plane is the code mean + x·PC1 + y·PC2 (for K ≤ 2, the code itself). "
        "**Click anywhere on the plane** to decode that point; the grid below decodes a whole lattice."
    )
    left, right = st.columns([3, 2], gap="large")
    if d == 1:
        with left:
            z = st.slider("z (the 1-D latent code)", float(lo[0]), float(hi[0]), float(a.means_2d[:, 0].mean()))
        point = np.array([z])
    else:
        with left:
            n = 41
            gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
            fig = class_map(coords, a.labels, a.classes, a.means_2d, a.axis_titles(), height=560)
            # An invisible lattice of clickable points: plotly reports clicks on points, not on empty space.
            fig.add_trace(
                go.Scatter(
                    x=gx.ravel(),
                    y=gy.ravel(),
                    mode="markers",
                    name="click target",
                    showlegend=False,
                    marker={"size": 14, "color": "rgba(0,0,0,0.01)"},
                    hovertemplate="decode (%{x:.2f}, %{y:.2f})<extra></extra>",
                )
            )
            picked = st.session_state.get("walk_point")
            if picked is not None:
                fig.add_trace(
                    go.Scattergl(
                        x=[picked[0]],
                        y=[picked[1]],
                        mode="markers",
                        name="decoded point",
                        marker={"symbol": "x", "size": 18, "color": "red"},
                    )
                )
            fig.update_layout(dragmode=False)
            event = st.plotly_chart(
                fig, key=f"walk-{picked}", on_select="rerun", selection_mode="points", config={"displayModeBar": False}
            )
            clicked = ui.clicked_point(event)
            if clicked is not None and "x" in clicked and "y" in clicked:
                new = (round(float(clicked["x"]), 4), round(float(clicked["y"]), 4))
                if new != picked:
                    st.session_state["walk_point"] = new
                    st.rerun()
        point = np.array(picked if picked is not None else a.means_2d.mean(axis=0))
    with right:
        z = a.pca.lift(torch.tensor(point, dtype=torch.float32)[None])
        img = decode(run.model, z)[0]
        where = ", ".join(f"{v:.2f}" for v in point)
        st.image(ui.image_to_uint8(img, 8), caption=f"D(code at ({where}))", width=300)
        dists = torch.linalg.vector_norm(a.means - z, dim=1)
        st.write(f"Nearest class mean: **{a.classes[int(dists.argmin())]}**")

    st.subheader('The decoded plane (a "manifold" grid)')
    n = st.slider("Points per side", 5, 20, 12, key="grid_n")
    xs = torch.linspace(float(lo[0]), float(hi[0]), n)
    if d == 1:
        tiles = decode(run.model, a.pca.lift(xs[:, None]))[None]
    else:
        ys = torch.linspace(float(hi[1]), float(lo[1]), n)  # top row = largest y, as on the plot
        tiles = decode_grid(run.model, a.pca, xs, ys)
    rows = [np.concatenate([ui.image_to_uint8(t, 2) for t in row], axis=1) for row in tiles]
    st.image(
        np.concatenate(rows, axis=0),
        width="stretch",
        caption="Left to right: x from the 1st to the 99th percentile of the validation codes; top to bottom: "
        "y from high to low. Every tile is decoded from a point of the plane, not a real image.",
    )
