"""The Train page's blocks about runs that did not end: a run cut off by a server stop or stopped by a
person, with Resume and Start over; and the list of such runs of this runs folder."""

from __future__ import annotations

import streamlit as st

from convae.jobs import JobState, JobView
from convae.resume import EpochState
from convae.train import TrainConfig
from ui.charts import loss_figure
from ui.identity import request_training
from ui.presenter import students_paused, train_priority
from ui.services import services
from ui.state import describe, select_config


def kept_epoch(config: TrainConfig) -> EpochState | None:
    """The epoch a run of `config` kept and can resume from (None while it trains, here or elsewhere)."""
    return services().store.kept_epoch(config)


def resume_label(kept: EpochState) -> str:
    """'Interrupted after epoch 3 of 10' or 'Stopped after epoch 3 of 10'."""
    return kept.label[0].upper() + kept.label[1:]


def resume_panel(config: TrainConfig, view: JobView | None, stored: bool, message: bool = True) -> bool:
    """What is left of an unfinished run of `config` (said so unless `message` is False: the job's own
    outcome says it), with Resume and Start over; True when it drew a loss chart (the run's epochs so
    far, when no model of this configuration is stored)."""
    kept = kept_epoch(config)
    if kept is None:
        if not message:
            return False
        if view is not None and view.state is JobState.INTERRUPTED:
            st.warning(
                "The server stopped during the first epoch of this training, so nothing was kept (an epoch is "
                "kept from its end on). Press **Train** in the sidebar to start it again.",
                icon=":material/power_off:",
            )
        elif services().store.in_use(config) and not services().jobs.active_for(config):
            st.info(
                "This configuration is training on another server or command that uses the same runs folder. "
                "Its model shows here when it is done.",
                icon=":material/hourglass_top:",
            )
        return False
    why = (
        "Stop was pressed; the model of that epoch is stored, and the other pages show it."
        if kept.stopped
        else "The server stopped before the run ended; everything up to the end of that epoch was kept."
    )
    left = kept.epochs - kept.epoch
    if message:
        st.warning(f"**{resume_label(kept)}.** {why}", icon=":material/pause_circle:")
    paused = students_paused()
    c1, c2, _ = st.columns([2, 2, 3])
    c1.button(
        f"Resume (the last {left} epoch{'s' if left != 1 else ''})" if left else "Resume (save it)",
        type="primary",
        key="resume_button",
        on_click=_train,
        args=(config, False),
        disabled=paused is not None,
        help=paused
        or f"Go on from the end of epoch {kept.epoch} with the same seed ({kept.seed}), weights, Adam state "
        "and data order: it ends as the run would have ended without the interruption.",
    )
    c2.button(
        "Start over",
        key="start_over_button",
        on_click=_train,
        args=(config, True),
        disabled=paused is not None,
        help=paused or "Train this configuration from its first epoch; the kept epoch is replaced.",
    )
    if stored:
        return False
    h = kept.history
    st.subheader(f"Loss history so far (epochs 1 to {kept.epoch} of {kept.epochs})")
    spe = h.steps[-1] // kept.epoch if h.steps else 1
    fig = loss_figure(h.steps, h.step_losses, h.epochs, spe, log_y=st.session_state.get("log_y", False))
    st.plotly_chart(fig, key="kept_chart", config={"displayModeBar": False})
    return True


def _train(config: TrainConfig, fresh: bool) -> None:
    """Resume / Start over: the same request as the sidebar's Train (this session's one job, its name and
    guess, the presenter's priority), and refused the same way while the teacher has paused training."""
    if students_paused():
        return
    job_id = request_training(config, fresh=fresh, **train_priority())
    if job_id is not None:
        st.session_state["job_id"] = job_id
        st.session_state["train_clicked"] = True


def unfinished_runs(config: TrainConfig) -> None:
    """The other runs of this folder that were stopped or cut off, each with a button that selects it;
    and what was wrong with the queue file, if anything, when the server started."""
    for notice in services().jobs.notices():
        st.warning(notice, icon=":material/warning:")
    others = [k for k in services().store.kept_epochs() if k.config.key() != config.key()]
    if not others:
        return
    st.subheader("Runs that did not finish")
    for kept in others[:20]:
        c1, c2 = st.columns([4, 1])
        c1.write(f"**{kept.label}** · {describe(kept.config)}")
        c2.button("Show it", key=f"show-kept-{kept.config.key()}", on_click=select_config, args=(kept.config,))
