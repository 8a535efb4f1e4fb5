"""Latent space page: a 2-D PCA of all 10,000 validation codes E(x), coloured by class."""

import numpy as np
import streamlit as st

import ui

st.title("Latent space")
ctx = ui.page_context()
if ctx is not None:
    config, splits, run, a = ctx
    k = config.k
    if k > 2:
        ev = a.pca.explained.tolist()
        st.caption(
            f"Each image is encoded into K = {k} numbers. To draw them on a screen we project them onto the "
            f"two directions of largest variance (PCA), which keep {sum(ev):.0%} of the variance. "
            "Stars mark the class means μ (Eq. 2). Click a class in the legend to hide it; hover a dot "
            "to see its image; click a dot to enlarge it."
        )
    elif k == 2:
        st.caption(
            "With K = 2 the latent codes are points in a plane: this is the latent space itself, no "
            "projection. Stars mark the class means μ (Eq. 2). Hover a dot to see its image."
        )
    else:
        st.caption(
            "With K = 1 every image becomes a single number: the x axis is that number, and the classes "
            "are spread on separate rows so that they can be told apart. Stars mark the class means."
        )
    fig = ui.latent_figure_for(run, a, splits)
    # The clicked image beside the plot, not below it, where a projected screen would not show it.
    left, right = st.columns([3, 1], gap="medium")
    with left:
        event = st.plotly_chart(
            fig,
            key="latent",
            on_select="rerun",
            selection_mode="points",
            config={"displayModeBar": True, "modeBarButtonsToRemove": ["lasso2d", "select2d"]},
        )
    point = ui.clicked_point(event)
    with right:
        if point is not None and point.get("customdata") is not None:
            from convae.analysis import reconstruct

            i = int(point["customdata"][0])
            _, rec, err = reconstruct(run.model, splits.val_images[i : i + 1])
            c1, c2 = st.columns(2)
            c1.image(
                ui.image_to_uint8(splits.val_images[i].float() / 255, 6),
                caption=f"image #{i}: {a.classes[a.labels[i]]}",
                width="stretch",
            )
            c2.image(ui.image_to_uint8(rec[0], 6), caption=f"its reconstruction (MSE {err[0]:.4f})", width="stretch")
            z = a.latents[i].numpy()
            st.markdown(f"**Its latent code** (K = {k}):")
            st.code(np.array2string(z, precision=2, max_line_width=30, suppress_small=True))
        else:
            st.caption("Click a dot to see the image, its reconstruction and its latent code here.")
