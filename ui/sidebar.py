"""The sidebar on every page: the configuration's controls, Train / Stop, and the model they select."""

from __future__ import annotations

import time

import streamlit as st

from convae.data import DATASETS
from convae.jobs import JobState
from convae.presets import PRESETS
from convae.train import TrainConfig
from ui import identity, training
from ui.presenter import students_paused, train_priority
from ui.services import is_blank, services
from ui.state import (
    BATCH_SIZES,
    LEARNING_RATES,
    ON_COLLAPSE,
    RANGES,
    TRAIN_SIZES,
    apply_preset,
    config_to_url,
    current_preset,
    describe,
    epochs_text,
    init_state,
    reset_to_defaults,
    selected_config,
)

FIRST_POINT_WAIT_S = 0.6


def sidebar() -> TrainConfig:
    """The controls shown on every page; returns the selected config."""
    init_state()
    svc = services()
    with st.sidebar:
        status, you, buttons = st.container(), st.container(), st.container()
        st.divider()
        st.selectbox("Data set", list(DATASETS), key="dataset", format_func=lambda n: DATASETS[n].title)
        st.markdown("**Architecture** (Table 1)")
        st.slider("Q1: channels of the first convolution", *RANGES["q1"], key="q1")
        st.slider("Q2: channels of the second convolution", *RANGES["q2"], key="q2")
        st.slider("K: size of the latent code", *RANGES["k"], key="k")
        st.markdown("**Training** (Task 5)")
        st.caption("Training settings")
        now = current_preset()
        for name, column in zip(PRESETS, st.columns(len(PRESETS)), strict=True):
            column.button(
                PRESETS[name].short,
                key=f"preset_{name}",
                on_click=apply_preset,
                args=(name,),
                type="primary" if now == name else "secondary",
                width="stretch",
                help=PRESETS[name].label,
            )
        st.caption(f"Now: {PRESETS[now].label}" if now else "Now: custom settings")
        st.slider("Epochs", *RANGES["epochs"], key="epochs")
        st.select_slider("Learning rate (Adam)", LEARNING_RATES, key="lr", format_func=lambda v: f"{v:g}")
        st.selectbox("Batch size", list(BATCH_SIZES), key="batch_size", format_func=BATCH_SIZES.get)
        st.selectbox("Training images", list(TRAIN_SIZES), key="train_size", format_func=TRAIN_SIZES.get)
        seed_min, seed_max = RANGES["seed"]
        st.number_input("Seed", min_value=seed_min, max_value=seed_max, step=1, key="seed")
        st.checkbox(
            "Start the output at the mean brightness",
            key="mean_init",
            help="Not the assignment's (which keeps PyTorch's default start). Sets the last layer's bias so "
            "that the untrained model outputs the average pixel instead of 0.5 grey. This stops the "
            "sigmoid from saturating at 0 in the first steps, which leaves some models blank for good.",
        )
        st.selectbox(
            "If the model collapses into blank images",
            list(ON_COLLAPSE),
            key="on_collapse",
            format_func=ON_COLLAPSE.get,
            help="With PyTorch's default start some runs learn nothing: within about a hundred steps the output "
            "sigmoid saturates at 0 and no gradient flows any more. The run is watched for this in its first "
            "400 steps. Restarting keeps the assignment's recipe and changes only the seed; the Train page "
            "says when it happened and why.",
        )
        config = selected_config()
        config_to_url()
        if not config.is_assignment_recipe or config.train_size is not None or config.mean_init:
            st.caption(
                ":material/warning: Not the assignment's recipe (batch 32, lr 0.001, all 60,000 images, default start)."
            )
        if config != TrainConfig(dataset=config.dataset):
            st.button("Back to the assignment's defaults", on_click=reset_to_defaults, width="stretch")
    run = svc.store.get(config)
    active = svc.jobs.active_for(config)
    kept = svc.store.kept_epoch(config) if not active else None  # a run that did not finish: Train resumes it
    paused = students_paused()
    with buttons:
        c1, c2 = st.columns(2)
        c1.button(
            "Resume" if kept else "Retrain" if run else "Train",
            type="primary",
            width="stretch",
            key="train_button",
            on_click=_on_train,
            disabled=active is not None or paused is not None,
            help=paused
            or "Train this configuration in the background (the Train page shows it live). A run that did not "
            "finish goes on from its last finished epoch (the Train page also offers to start over).",
        )
        c2.button(
            "Stop",
            width="stretch",
            key="stop_button",
            on_click=_on_stop,
            disabled=active is None,
            help="Stop the training of this configuration.",
        )
        if paused:
            st.caption(f":material/pause_circle: {paused}")
        identity.train_notice()
    with you:
        identity.inputs()
    with status:
        st.markdown("**Model shown on the pages**")
        if active:
            view = svc.jobs.snapshot(active)
            where = f"queued, {training.wait_text(view)}" if view.state is JobState.QUEUED else "training now"
            st.info(f"This configuration is {where}.", icon=":material/hourglass_top:")
        if run and is_blank(run):
            st.warning(
                f"Trained model · validation MSE **{run.val_loss:.4f}**, no better than a blank image: "
                "it learned nothing. Change the seed and train again.",
                icon=":material/warning:",
            )
        elif run and not run.complete:
            st.warning(f"Model {run.label} · validation MSE **{run.val_loss:.4f}**", icon=":material/pause_circle:")
        elif run:
            st.success(
                f"{'Shipped' if run.shipped else 'Trained'} model · {epochs_text(len(run.history.epochs))} · "
                f"validation MSE **{run.val_loss:.4f}**",
                icon=":material/check_circle:",
            )
        elif kept:
            st.warning(f"No model yet: the run was {kept.label}. Press **Resume**.", icon=":material/pause_circle:")
        elif not active:
            st.warning("No model for this configuration yet. Press **Train**.", icon=":material/info:")
        st.caption(describe(config))
        training.own_job(config)
    return config


def _on_train() -> None:
    svc = services()
    config = selected_config()
    if students_paused():  # a click sent before the button was disabled
        return
    job_id = identity.request_training(config, **train_priority())  # None: refused, and it says why
    if job_id is None:
        return
    st.session_state["job_id"] = job_id
    st.session_state["train_clicked"] = True
    # A job that starts now has its first loss point a few tenths of a second later: wait for it (at
    # most FIRST_POINT_WAIT_S), so that the rerun after this click draws it, instead of the live
    # chart's next refresh, half a second on.
    deadline = time.monotonic() + FIRST_POINT_WAIT_S
    while time.monotonic() < deadline:
        view = svc.jobs.snapshot(job_id)
        if view is None or view.steps or view.state is not JobState.RUNNING:
            break
        time.sleep(0.02)


def _on_stop() -> None:
    svc = services()
    job = svc.jobs.active_for(selected_config())
    if job:
        svc.jobs.cancel(job)
        # The job ends at its next step (well under a second): wait for it, so that the rerun after
        # this click already shows "Stopped." and a Train button, not a job still winding down.
        svc.jobs.wait(job, timeout=1.0)
        st.session_state["job_id"] = job
        st.session_state["train_clicked"] = True  # a tab that only re-attached shows the outcome too
        st.session_state.pop("watching", None)  # this rerun redraws the whole page already
