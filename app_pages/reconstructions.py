"""Reconstructions page (Task 6, Figure 1): the first validation batch, original beside reconstruction."""

import numpy as np
import streamlit as st
import torch

import ui
from convae.figures import figure1_image, pairs_grid_figure, png_bytes

st.title("Reconstructions (Figure 1)")
ctx = ui.page_context()
if ctx is not None:
    config, splits, run, a = ctx
    st.caption(
        "The first validation batch: 100 test images the model never trained on. In each pair the "
        "original is on the left and the model's reconstruction D(E(x)) on the right. "
        "Hover a pair to see its digit and its error."
    )
    c1, c2, c3 = st.columns(3)
    c1.metric("Validation MSE (all 10,000 images)", f"{run.val_loss:.5f}")
    c2.metric("MSE of this batch of 100", f"{a.errors.mean():.5f}")
    c3.metric("Latent size K", f"{config.k} numbers per image", help="Each 784-pixel image is squeezed into K numbers.")
    labels = splits.val_labels[:100].tolist()
    hover = [f"{a.classes[labels[i]]} · image #{i} · MSE {a.errors[i]:.4f}" for i in range(100)]
    st.plotly_chart(
        pairs_grid_figure(a.originals.numpy(), a.recons.numpy(), hover), key="fig1", config={"displayModeBar": False}
    )
    st.download_button(
        "Download Figure 1 (PNG)",
        png_bytes(figure1_image(a.originals, a.recons)),
        file_name=f"figure1-{config.key()}.png",
        mime="image/png",
    )

    st.subheader("Hardest and easiest images of the batch")
    order = torch.argsort(a.errors, descending=True).tolist()
    for title, idx in (("Largest errors", order[:8]), ("Smallest errors", order[-8:][::-1])):
        st.markdown(f"**{title}**")
        cols = st.columns(8)
        for col, i in zip(cols, idx, strict=False):
            pair = np.concatenate([ui.image_to_uint8(a.originals[i], 3), ui.image_to_uint8(a.recons[i], 3)], axis=1)
            col.image(pair, caption=f"{a.classes[labels[i]]} · MSE {a.errors[i]:.4f}", width="stretch")
