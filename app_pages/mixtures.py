"""Mixtures page (Tasks 7-8, Figure 2): decoded mixtures of class means; click a cell to explore the pair."""

from functools import partial

import streamlit as st

from ui import page_charts, results
from ui.charts import clicked_point
from ui.images import image_row, image_to_uint8
from ui.services import page_context

st.title("Mixtures of classes (Figure 2)")
ctx = page_context()
if ctx is not None:
    a = ctx.analysis
    names = list(a.classes)
    st.caption(
        "Each class o has a mean latent code μ_o (Eq. 2, over its validation images). Cell (row a, "
        "column b) shows the decoder's image of the midpoint (μ_a + μ_b) / 2 (Eq. 3); the diagonal shows "
        "the decoded class means themselves. **Click a cell** to study that pair below."
    )
    left, right = st.columns([3, 2], gap="large")
    with left:
        pair = st.session_state.get("pair", (3, 8))
        fig = page_charts.mixtures_chart(ctx.run, ctx.splits, pair)
        event = st.plotly_chart(
            fig, key=f"mix-{pair}", on_select="rerun", selection_mode="points", config={"displayModeBar": False}
        )
        point = clicked_point(event)
        if point is not None and point.get("customdata") is not None:
            clicked = tuple(int(v) for v in point["customdata"])
            if clicked != pair:
                st.session_state["pair"] = clicked
                st.rerun()
        st.download_button(
            "Download Figure 2 (PNG)",
            partial(results.figure2_png, a),  # made when pressed
            file_name=f"figure2-{ctx.config.key()}.png",
            mime="image/png",
        )
    with right:
        o1, o2 = pair
        st.subheader(f"From {names[o1]} to {names[o2]}")
        st.session_state.setdefault("alpha", 0.5)  # a shared link or the teacher may have set it
        alpha = st.slider(
            f"α: how much of {names[o2]}",
            0.0,
            1.0,
            step=0.05,
            key="alpha",
            help="The decoder draws D((1 - α)·μ_a + α·μ_b). α = 0.5 is the cell of Figure 2.",
        )
        start, mid, end = results.between(ctx.run, a, pair, [0.0, alpha, 1.0])
        c1, c2, c3 = st.columns(3)
        c1.image(image_to_uint8(start, 5), caption=f"D(μ {names[o1]})", width="stretch")
        c2.image(image_to_uint8(mid, 5), caption=f"α = {alpha:.2f}", width="stretch")
        c3.image(image_to_uint8(end, 5), caption=f"D(μ {names[o2]})", width="stretch")
        st.image(
            image_row(results.between(ctx.run, a, pair, results.ALPHA_STEPS), 2),
            caption="α = 0, 0.1, …, 1: one class turning into the other",
            width="stretch",
        )
        if o1 == o2:
            st.info("A diagonal cell: both ends are the same class mean, so every α gives the same image.")
