"""The Latent space page's "how it formed" block: a run's latent snapshots (convae.snapshots) with a slider
and a play button, from the stored run or, while the selected configuration trains, from its job.

A fragment draws the frames: while playing it steps to the next snapshot every PLAY_EVERY_S, while the
configuration trains it polls the job for new snapshots every LIVE_EVERY_S; no background thread draws.
While playing, or following the newest snapshot of a training, the slider only shows where it is (disabled):
a slider whose value the server moved on a timer gets stale values back from the browser and jumps back a
step now and then (seen in Chromium). Pause, the end of the play, or "follow" turned off hand it back.
"""

from __future__ import annotations

import streamlit as st

from convae.data import Splits
from convae.jobs import JobView
from convae.snapshots import FIRST_EPOCH, Plane, Snapshots, plane
from convae.store import StoredRun
from convae.train import TrainConfig
from ui.latent_charts import formation_figure
from ui.services import PageContext, attached_job, stored_splits
from ui.state import selected_config

FRAME_KEY = "formation_frame"  # the slider's value: the snapshot shown (while not playing)
PLAY_KEY = "formation_playing"
AT_KEY = "formation_at"  # while playing: the snapshot shown last (each run of the fragment shows the next)
SEEN_KEY = "formation_seen"  # how many snapshots the last run had (to stay on the newest while training)
PLAYING_SLIDER_KEY = "formation_frame_playing"  # the disabled slider shown while playing or following the newest
FOLLOW_NEWEST_KEY = "formation_follow_newest"  # while the configuration trains: show each new snapshot
ZOOM_KEY = "formation_zoom"
PLAY_BUTTON_KEY = "formation_play"
PLAY_EVERY_S = 0.8
LIVE_EVERY_S = 1.5
CHART_KEY = "formation"

ZOOM_HELP = (
    "The codes spread out a lot while the network learns (often a hundredfold): on axes fixed for every "
    "snapshot the first ones are a small blob. Fitted, each snapshot fills the plot: the same directions, "
    "each on its own scale."
)
NO_SNAPSHOTS = (
    "This model has no snapshots of its latent space as it formed: the models shipped with the project were "
    "trained before runs kept them. Train a configuration (or **Retrain** this one) and its snapshots appear "
    "here, live while it trains."
)


def live_job(config: TrainConfig) -> JobView | None:
    """The job training the selected configuration now, if any."""
    view = attached_job(config)
    return view if view is not None and view.state.active and view.config == config else None


@st.cache_resource(max_entries=8, show_spinner=False, hash_funcs={Snapshots: lambda s: s.serial})
def _plane(snapshots: Snapshots) -> Plane:
    """A training's snapshots so far in the newest one's plane (once per new snapshot, for every tab)."""
    return plane(snapshots)


def source(config: TrainConfig, run: StoredRun | None) -> tuple[Plane | None, JobView | None]:
    """What to draw: the training job's snapshots so far (in the newest one's plane), else the stored run's."""
    view = live_job(config)
    if view is not None and view.snapshots:
        return _plane(view.snapshots), view
    return (run.snapshots if run is not None else None), view


def axis_titles(p: Plane, k: int, live: bool) -> tuple[str, str]:
    ev, which = p.explained, "newest" if live else "final"
    if k == 1:
        return ("z (the 1-D latent code)", "class")
    if k == 2:
        return (f"z1 ({ev[0]:.0%} of the {which} codes' variance)", f"z2 ({ev[1]:.0%})")
    return (f"PC 1 of the {which} snapshot ({ev[0]:.0%} of its variance)", f"PC 2 ({ev[1]:.0%})")


def explanation(p: Plane, k: int, live: bool) -> str:
    first = ", ".join(f"{f:.0%}" for f in FIRST_EPOCH)
    when = (
        f"{len(p.marks)} snapshots of the codes of the first {p.images:,} validation images: before training, "
        f"after {first} of the first epoch, and at the end of the epochs. "
    )
    if k == 1:
        axes = "The x axis is the code, one row per class."
    elif k == 2:
        axes = "With K = 2 these are the codes themselves."
    else:
        which = "newest snapshot (the axes settle when training ends)" if live else "final snapshot"
        axes = (
            f"Each snapshot's K = {k} numbers are projected on the same plane: the two main directions (PCA) "
            f"of the codes of the {which}."
        )
    return when + axes + " The axes stay fixed from one snapshot to the next: watch the classes separate."


def _chosen(n: int) -> int:
    """The slider's snapshot, kept within range (the newest at first); written only when it changes."""
    state = st.session_state
    i = state.get(FRAME_KEY)
    if not isinstance(i, int) or not 0 <= i < n:
        state[FRAME_KEY] = i = n - 1
    state[SEEN_KEY] = n
    return i


def toggle_play() -> None:
    """The Play / Pause button. Play starts from the slider's snapshot (from the first when the slider is on
    the last); Pause puts the slider on the snapshot shown."""
    state = st.session_state
    if state.get(PLAY_KEY):
        state[PLAY_KEY], state[FRAME_KEY] = False, state.get(AT_KEY, 0)
        if FOLLOW_NEWEST_KEY in state:
            state[FOLLOW_NEWEST_KEY] = False  # (while training) stay on the paused snapshot
        return
    start = state.get(FRAME_KEY, 0)
    at_end = not isinstance(start, int) or start >= state.get(SEEN_KEY, 0) - 1
    state[PLAY_KEY], state[AT_KEY] = True, (0 if at_end else start) - 1


def section(ctx: PageContext | None) -> None:
    """The block, below the page's own: the stored run's snapshots, or those of the selected configuration's
    training (also while no model of it is stored yet), or a note that the model has none."""
    config = selected_config()
    run, splits = (ctx.run, ctx.splits) if ctx is not None else (None, stored_splits(config.dataset))
    if splits is None:
        return
    p, view = source(config, run)
    if p is None and view is None:
        if run is not None:
            st.subheader("How the latent space formed")
            if run.snapshots_note:
                st.warning(run.snapshots_note, icon=":material/warning:")
            st.info(NO_SNAPSHOTS, icon=":material/movie:")
        return
    if p is not None and p.images > len(splits.val_labels):
        st.warning(
            f"The snapshots hold {p.images:,} images but this data set has {len(splits.val_labels):,} validation "
            "images: they were taken on other data and are not shown."
        )
        return
    st.subheader("How the latent space formed" + (" (training now)" if view is not None else ""))
    player(config, run, splits, live=view is not None)


def _icon(playing: bool) -> str:
    return ":material/pause:" if playing else ":material/play_arrow:"


def player(config: TrainConfig, run: StoredRun | None, splits: Splits, live: bool) -> None:
    playing = st.session_state.get(PLAY_KEY, False)

    @st.fragment(run_every=PLAY_EVERY_S if playing else LIVE_EVERY_S if live else None)
    def frames() -> None:
        p, view = source(config, run)
        if live and view is None:
            st.rerun(scope="app")  # the training ended: the stored run shows its snapshots
        if p is None:
            st.caption("No snapshot yet: the first is taken just before the first training step, and shows here.")
            return
        st.caption(explanation(p, config.k, live))
        n, state = len(p.marks), st.session_state
        playing = bool(state.get(PLAY_KEY))
        # Inside the fragment (new snapshots come while training); a click reruns the page, for the timer.
        if n > 1 and st.button("Pause" if playing else "Play", key=PLAY_BUTTON_KEY, icon=_icon(playing)):
            toggle_play()
            st.rerun(scope="app")
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        zoom = right.toggle("Fit the axes to each snapshot", key=ZOOM_KEY, help=ZOOM_HELP)
        following = False
        if live:
            state.setdefault(FOLLOW_NEWEST_KEY, True)
            following = right.toggle("Follow the newest snapshot", key=FOLLOW_NEWEST_KEY) and not playing
        if playing:
            i = state[AT_KEY] = min(state.get(AT_KEY, -1) + 1, n - 1)
        else:
            i = n - 1 if following else _chosen(n)
            state[SEEN_KEY] = n
        if n > 1:
            driven = playing or following
            if driven:
                state[PLAYING_SLIDER_KEY] = i
            names = [m.label for m in p.marks]
            left.select_slider(
                "Snapshot",
                options=list(range(n)),
                format_func=names.__getitem__,
                key=PLAYING_SLIDER_KEY if driven else FRAME_KEY,
                disabled=driven,
            )
        losses = {e["epoch"]: e["val_loss"] for e in (view.epochs if view is not None else run.history.epochs)}
        mark = p.marks[i]
        title = mark.label + (
            f" · validation MSE {losses[mark.epoch]:.4f}" if mark.step == mark.steps and mark.epoch in losses else ""
        )
        labels = splits.val_labels[: p.images].numpy()
        limits = p.limits_at(i) if zoom else p.limits
        fig = formation_figure(
            p.coords[i].numpy(), labels, splits.classes, limits, axis_titles(p, config.k, live), title
        )
        st.plotly_chart(fig, key=CHART_KEY, config={"displayModeBar": False})
        if playing and i >= n - 1:  # played to the end: the slider takes over there
            state[PLAY_KEY], state[FRAME_KEY] = False, i
            st.rerun(scope="app")

    frames()
