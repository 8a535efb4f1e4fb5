"""Draw a digit: the drawing becomes an MNIST-like input, is encoded, decoded and placed among the others."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

import ui
from convae.analysis import decode, encode, mnist_like, nearest_class
from convae.figures import class_map

st.title("Draw a digit")
ctx = ui.page_context()
if ctx is not None:
    from streamlit_drawable_canvas import st_canvas

    config, splits, run, a = ctx
    st.caption(
        "Draw with the mouse or a finger. The drawing is turned into a 28×28 MNIST-style image (fitted "
        "into a 20×20 box and centred by its centre of mass, as MNIST was made), encoded into K = "
        f"{config.k} numbers and decoded again."
    )
    st.write("")  # room for the canvas's toolbar, which appears above it
    c1, c2, c3 = st.columns([1.6, 1.2, 2.4], gap="medium")
    with c1:
        result = st_canvas(
            stroke_width=22,
            stroke_color="#FFFFFF",
            background_color="#000000",
            height=280,
            width=280,
            drawing_mode="freedraw",
            return_image_data=True,
            key=f"canvas-{st.session_state.get('canvas_round', 0)}",
        )
        st.button(
            "Clear", on_click=lambda: st.session_state.update(canvas_round=st.session_state.get("canvas_round", 0) + 1)
        )
    image_data = None
    try:
        image_data = result.image_data
    except Exception:  # no drawing has reached the server yet
        image_data = None
    ink = None
    if image_data is not None and np.asarray(image_data).size:
        rgba = np.asarray(image_data, dtype=np.float32)
        ink = torch.from_numpy(rgba[..., :3].mean(axis=2) / 255 * (rgba[..., 3] / 255))
    if ink is None or float(ink.max()) < 0.1:
        c2.info("Draw a digit on the black square.", icon=":material/edit:")
    else:
        x = mnist_like(ink)
        z = encode(run.model, x[None])
        y = decode(run.model, z)[0]
        i1, i2 = c2.columns(2)
        i1.image(ui.image_to_uint8(x.float() / 255, 5), caption="the input, 28×28", width="stretch")
        i2.image(ui.image_to_uint8(y, 5), caption="its reconstruction", width="stretch")
        cls, dists = nearest_class(z[0], a.means)
        c2.success(f"Nearest class mean: **{a.classes[cls]}** (distance {dists[cls]:.2f} in the latent space)")
        xy = a.pca.project(z).numpy()[0]
        fig = class_map(a.pca.coords.numpy(), a.labels, a.classes, a.means_2d, a.axis_titles(), height=430)
        my = xy[1] if len(xy) > 1 else float(cls)
        fig.add_trace(
            go.Scattergl(
                x=[xy[0]],
                y=[my],
                mode="markers+text",
                name="your drawing",
                text=["your drawing"],
                textposition="top center",
                marker={"symbol": "x", "size": 20, "color": "red", "line": {"color": "white", "width": 2}},
            )
        )
        c3.plotly_chart(fig, key="draw_latent", config={"displayModeBar": False})
        with c2.expander("Distance to each class mean"):
            st.dataframe({"class": list(a.classes), "distance": dists.numpy().round(2)}, hide_index=True)
