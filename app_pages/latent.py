"""Latent space page: a 2-D PCA of all 10,000 validation codes E(x), coloured by class."""

import streamlit as st

from ui import formation, results, share
from ui.baseline import pca_plane
from ui.images import image_to_uint8, pixels
from ui.latent_charts import image_plane_figure
from ui.services import page_context


def pca_plane_chart(height: int, dense: bool) -> None:
    """The validation images on the plane of PCA's first two components, with the same colours."""
    plane = pca_plane(ctx.splits)
    if plane is None:
        st.info("PCA needs the training images; it appears here once the data set is provisioned.")
        return
    fig = image_plane_figure(plane.coords, a.labels, a.classes, plane.means_2d, plane.axis_titles, height, dense)
    st.plotly_chart(fig, key="pca_plane", config={"displayModeBar": False})


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
    if k == 2:  # the classic picture: the learned plane beside the best linear one, the clicked image below
        left, pca_side = st.columns(2, gap="medium")
        right, _ = st.columns([1, 2])
        with pca_side:
            st.markdown("**PCA of the images: the best *linear* code of 2 numbers**")
            pca_plane_chart(height=620, dense=True)
            st.caption(
                "The same 10,000 images projected on the two directions of largest variance of the "
                "training images. Classes that overlap here but not on the left were pulled apart by "
                "the network's non-linearity."
            )
        left.markdown("**Learned by the auto-encoder (K = 2)**")
    else:
        # The clicked image beside the plot, not below it, where a projected screen would not show it.
        left, right = st.columns([3, 1], gap="medium")
    with left:
        st.plotly_chart(
            fig,
            key="latent",
            on_select=share.on_latent_click,
            selection_mode="points",
            config={"displayModeBar": True, "modeBarButtonsToRemove": ["lasso2d", "select2d"]},
        )
    i = share.index_in("latent_point", len(ctx.splits.val_images))  # clicked, or from a link or the teacher
    with right:
        if i is not None:
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
    if k != 2:
        # Drawn only when opened: another 10,000 points would slow every visit of the page.
        pca_box = st.expander(
            "Compare: PCA of the images, the linear baseline with 2 numbers per image",
            key="latent_pca_open",
            on_change="rerun",
        )
        with pca_box:
            st.caption(
                "The validation images projected on the two directions of largest variance of the raw "
                "training images: what a linear code of 2 numbers sees. Compare how well the classes "
                "separate with the auto-encoder's plane above."
            )
            if pca_box.open:
                pca_plane_chart(height=480, dense=False)
formation.section(ctx)  # the latent space as it formed: the run's snapshots, with a slider and Play
