"""Latent walk page: click anywhere on the PCA plane and see what the decoder draws there."""

import numpy as np
import streamlit as st

from ui import results, share
from ui.charts import clicked_point
from ui.images import image_to_uint8
from ui.page_charts import decoded_plane_image, walk_chart
from ui.services import page_context

st.title("Walk the latent space")
ctx = page_context()
if ctx is not None:
    a = ctx.analysis
    st.caption(
        "The decoder can turn *any* latent code into an image, not only codes of real digits. Here a "
        "point (x, y) of the plane is the code mean + x·PC1 + y·PC2 (for K ≤ 2, the code itself). "
        "**Click anywhere on the plane** to decode that point; the grid below decodes a whole lattice."
    )
    left, right = st.columns([3, 2], gap="large")
    if a.pca.coords.shape[1] == 1:
        lo, hi = results.plane_bounds(a)
        with left:
            z = st.slider("z (the 1-D latent code)", float(lo[0]), float(hi[0]), float(a.means_2d[:, 0].mean()))
        point = np.array([z])
    else:
        with left:
            picked = share.walk_point(*results.plane_bounds(a))  # from a click, a shared link or the teacher
            fig = walk_chart(ctx.run, a, picked)  # shared by every tab that shows this model and point
            event = st.plotly_chart(
                fig, key=f"walk-{picked}", on_select="rerun", selection_mode="points", config={"displayModeBar": False}
            )
            clicked = clicked_point(event)
            if clicked is not None and "x" in clicked and "y" in clicked:
                new = (round(float(clicked["x"]), 4), round(float(clicked["y"]), 4))
                if new != picked:
                    st.session_state["walk_point"] = new
                    st.rerun()
        point = np.array(picked if picked is not None else a.means_2d.mean(axis=0))
    with right:
        img, nearest = results.decode_point(ctx.run, a, point)
        where = ", ".join(f"{v:.2f}" for v in point)
        st.image(image_to_uint8(img, 8), caption=f"D(code at ({where}))", width=300)
        st.write(f"Nearest class mean: **{nearest}**")

    st.subheader('The decoded plane (a "manifold" grid)')
    st.session_state.setdefault("grid_n", 12)
    n = st.slider("Points per side", 5, 20, key="grid_n")
    st.image(
        decoded_plane_image(ctx.run, a, n),
        width="stretch",
        caption="Left to right: x from the 1st to the 99th percentile of the validation codes; top to bottom: "
        "y from high to low. Every tile is decoded from a point of the plane, not a real image.",
    )
