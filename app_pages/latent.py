"""Latent space page: a 2-D PCA of all 10,000 validation codes E(x), coloured by class."""

import streamlit as st

from ui import results
from ui.charts import clicked_point
from ui.images import image_to_uint8, pixels
from ui.services import page_context

st.title("Latent space")
ctx = page_context()
if ctx is not None:
    a, k = ctx.analysis, ctx.config.k
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
    fig = results.latent_figure_for(ctx.run, ctx.splits)
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
    point = clicked_point(event)
    with right:
        if point is not None and point.get("customdata") is not None:
            i = int(point["customdata"][0])
            _, rec, err = results.reconstruct_digits(ctx.run, ctx.splits, [i])
            c1, c2 = st.columns(2)
            c1.image(
                image_to_uint8(pixels(ctx.splits.val_images[i]), 6),
                caption=f"image #{i}: {a.classes[a.labels[i]]}",
                width="stretch",
            )
            c2.image(image_to_uint8(rec[0], 6), caption=f"its reconstruction (MSE {err[0]:.4f})", width="stretch")
            st.markdown(f"**Its latent code** (K = {k}):")
            st.code(results.latent_code_text(a, i))
        else:
            st.caption("Click a dot to see the image, its reconstruction and its latent code here.")
