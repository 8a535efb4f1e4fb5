"""Reconstructions page (Task 6, Figure 1): the first validation batch, original beside reconstruction,
and the same digits through PCA with K components, the linear baseline."""

from functools import partial

import streamlit as st

from ui import page_charts, results
from ui.baseline import components_to_match, image_pca
from ui.images import image_row
from ui.services import page_context

st.title("Reconstructions (Figure 1)")
ctx = page_context()
if ctx is not None:
    a, k = ctx.analysis, ctx.config.k
    pca = image_pca(ctx.config.dataset)
    with_pca = pca is not None and st.toggle(
        f"Add PCA's reconstruction to each pair (PCA with {k} components, the linear baseline)", key="fig1_pca"
    )
    st.caption(
        "The first validation batch: 100 test images the model never trained on. "
        + (
            "In each triple: the original, the auto-encoder's reconstruction D(E(x)) and PCA's."
            if with_pca
            else "In each pair the original is on the left and the model's reconstruction D(E(x)) on the right."
        )
        + " Hover to see the digit and its error."
    )
    c1, c2, c3 = st.columns(3)
    c1.metric("Validation MSE (all 10,000 images)", f"{ctx.run.val_loss:.5f}")
    c2.metric("MSE of this batch of 100", f"{a.errors.mean():.5f}")
    c3.metric("Latent size K", f"{k} numbers per image", help="Each 784-pixel image is squeezed into K numbers.")
    st.plotly_chart(
        page_charts.figure1_chart(ctx.run, ctx.splits, pca, with_pca), key="fig1", config={"displayModeBar": False}
    )
    st.download_button(  # the PNG is made when the button is pressed, not on every visit
        "Download Figure 1 (PNG)",
        partial(results.figure1_png, a),
        file_name=f"figure1-{ctx.config.key()}.png",
        mime="image/png",
    )

    st.subheader(f"The linear baseline: PCA with {k} component{'s' if k > 1 else ''}")
    if pca is None:
        st.info("PCA needs the training images; it appears here once the data set is provisioned.")
    else:
        need = components_to_match(pca, ctx.run.val_loss)
        st.caption(
            f"PCA keeps the {k} directions of the training images with the largest variance; a digit is "
            f"rebuilt as the mean image plus {k} multiples of them. It is the best *linear* code of {k} "
            "numbers, so the gap between its row and the auto-encoder's is what the network's "
            "convolutions and non-linearities buy."
        )
        m1, m2, m3 = st.columns(3)
        m1.metric("Auto-encoder, validation MSE", f"{ctx.run.val_loss:.5f}")
        m2.metric(
            f"PCA with {k} components, validation MSE",
            f"{pca.mse(k):.5f}",
            delta=f"{pca.mse(k) / ctx.run.val_loss:.1f} × the auto-encoder's error",
            delta_color="off",
            delta_arrow="off",
        )
        m3.metric(
            "PCA components needed to do as well",
            f"{need}" if need else "more than 64",
            help="The fewest principal components whose validation MSE is at most the auto-encoder's.",
        )
        fig = page_charts.pca_rows_chart(ctx.run, ctx.splits, pca)
        st.plotly_chart(fig, key="pca_rows", config={"displayModeBar": False})

    st.subheader("Hardest and easiest images of the batch")
    for title, idx in zip(("Largest errors", "Smallest errors"), results.extremes(a, 8), strict=True):
        st.markdown(f"**{title}**")
        cols = st.columns(8)
        for col, i in zip(cols, idx, strict=False):
            pair = image_row([a.originals[i], a.recons[i]], 3)
            col.image(pair, caption=f"{a.classes[a.labels[i]]} · MSE {a.errors[i]:.4f}", width="stretch")
