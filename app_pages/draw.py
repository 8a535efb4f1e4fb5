"""Draw a digit: the drawing becomes an MNIST-like input, is encoded, decoded and placed among the others."""

import streamlit as st

from ui import results
from ui.images import drawn_ink, image_to_uint8, pixels
from ui.latent_charts import drawing_figure
from ui.services import page_context

st.title("Draw a digit")
ctx = page_context()
if ctx is not None:
    from streamlit_drawable_canvas import st_canvas

    a = ctx.analysis
    st.caption(
        "Draw with the mouse or a finger. The drawing is turned into a 28×28 MNIST-style image (fitted "
        "into a 20×20 box and centred by its centre of mass, as MNIST was made), encoded into K = "
        f"{ctx.config.k} numbers and decoded again."
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
    ink = drawn_ink(result)
    if ink is None:
        c2.info("Draw a digit on the black square.", icon=":material/edit:")
    else:
        d = results.read_drawing(ctx.run, a, ink)
        i1, i2 = c2.columns(2)
        i1.image(image_to_uint8(pixels(d.image), 5), caption="the input, 28×28", width="stretch")
        i2.image(image_to_uint8(d.reconstruction, 5), caption="its reconstruction", width="stretch")
        distance = d.distances[d.nearest]
        c2.success(f"Nearest class mean: **{a.classes[d.nearest]}** (distance {distance:.2f} in the latent space)")
        fig = drawing_figure(**a.plane(), drawing=d.point)
        c3.plotly_chart(fig, key="draw_latent", config={"displayModeBar": False})
        with c2.expander("Distance to each class mean"):
            st.dataframe({"class": list(a.classes), "distance": d.distances.numpy().round(2)}, hide_index=True)
