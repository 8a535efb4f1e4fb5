"""Bottleneck sweep: validation loss against K (or Q1 = Q2), and against the number of parameters, for
every stored model of the sidebar's architecture, with PCA's curve; click a point to show that model."""

from functools import partial

import streamlit as st

from ui import sweep
from ui.baseline import image_pca
from ui.presenter import students_paused
from ui.state import selected_config

st.title("Bottleneck sweep")
config = selected_config()
kind = st.segmented_control(
    "Sweep over",
    list(sweep.KIND_LABELS),
    format_func=sweep.KIND_LABELS.get,
    key="sweep_kind",
    default="k",
    required=True,
)
st.caption(sweep.explanation(kind, config))
if image_pca(config.dataset) is None:
    st.info(
        "PCA's curve needs the training images, which are not provisioned yet: open the Train page to get "
        "them (or run `python -m convae fetch-data`). The stored models are shown without it.",
        icon=":material/info:",
    )

sw = sweep.current_sweep(kind)
jobs = sweep.sweep_jobs()
c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
preset = c1.selectbox(
    "Train the missing points with", sweep.FILL_PRESETS, format_func=sweep.fill_label, key="sweep_preset"
)
missing = sweep.gaps(sw, preset)
c2.button(
    f"Fill the gaps ({len(missing)} run{'s' if len(missing) != 1 else ''})",
    key="sweep_fill",
    on_click=sweep.fill_the_gaps,
    args=(kind, preset),
    disabled=not missing or jobs.active or image_pca(config.dataset) is None or students_paused() is not None,
    help=students_paused() or "Queue one training per missing grid value (the job manager runs them one at a time).",
)
if missing:
    st.caption(sweep.gaps_note(sw, missing, preset))


@st.fragment(run_every=1.0 if jobs.active else None)
def charts() -> None:
    """The two charts; while this tab's sweep jobs run, redrawn every second so that the curve fills in."""
    if st.session_state.pop(sweep.PICKED_KEY, False):
        st.rerun(scope="app")  # a clicked point moved the sidebar: every part of the page follows it
    now = sweep.sweep_jobs()
    if jobs.active and not now.active:
        st.rerun(scope="app")  # the last job ended: stop polling
    if now.active or now.done or now.failed:
        st.info(sweep.progress_text(now), icon=":material/hourglass_top:" if now.active else ":material/check_circle:")
    current = sweep.current_sweep(kind)
    if not current.groups:
        st.info("No stored model in this sweep yet: press **Fill the gaps**, or train one from the sidebar.")
    left, right = st.columns(2, gap="medium")
    for col, by_parameters in ((left, False), (right, True)):
        key = f"sweep-{kind}-{'parameters' if by_parameters else 'setting'}"
        col.plotly_chart(
            sweep.figure(current, by_parameters),
            key=key,
            on_select=partial(sweep.on_pick, key),
            selection_mode="points",
            config={"displayModeBar": False},
        )
    if current.groups:
        st.download_button(
            "Download this sweep (CSV)",
            sweep.csv_bytes(current),
            file_name=f"sweep-{kind}-{config.dataset}.csv",
            mime="text/csv",
        )


charts()
