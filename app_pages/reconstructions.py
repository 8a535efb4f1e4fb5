"""Reconstructions page (Task 6, Figure 1): the first validation batch, original beside reconstruction."""

import streamlit as st

from ui import results
from ui.charts import pairs_grid_figure
from ui.images import image_row
from ui.services import page_context

st.title("Reconstructions (Figure 1)")
ctx = page_context()
if ctx is not None:
    a = ctx.analysis
    st.caption(
        "The first validation batch: 100 test images the model never trained on. In each pair the "
        "original is on the left and the model's reconstruction D(E(x)) on the right. "
        "Hover a pair to see its digit and its error."
    )
    c1, c2, c3 = st.columns(3)
    c1.metric("Validation MSE (all 10,000 images)", f"{ctx.run.val_loss:.5f}")
    c2.metric("MSE of this batch of 100", f"{a.errors.mean():.5f}")
    c3.metric(
        "Latent size K", f"{ctx.config.k} numbers per image", help="Each 784-pixel image is squeezed into K numbers."
    )
    hover = results.batch_hover(a, ctx.splits)
    st.plotly_chart(
        pairs_grid_figure(a.originals.numpy(), a.recons.numpy(), hover), key="fig1", config={"displayModeBar": False}
    )
    st.download_button(
        "Download Figure 1 (PNG)",
        results.figure1_png(a),
        file_name=f"figure1-{ctx.config.key()}.png",
        mime="image/png",
    )

    st.subheader("Hardest and easiest images of the batch")
    for title, idx in zip(("Largest errors", "Smallest errors"), results.extremes(a, 8), strict=True):
        st.markdown(f"**{title}**")
        cols = st.columns(8)
        for col, i in zip(cols, idx, strict=False):
            pair = image_row([a.originals[i], a.recons[i]], 3)
            col.image(pair, caption=f"{a.classes[a.labels[i]]} · MSE {a.errors[i]:.4f}", width="stretch")
