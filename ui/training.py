"""The Train page's blocks about jobs: a job's progress line or place in the queue, how it ended (or how it
is going wrong), the guess against the result, the server's other trainings, and this session's own."""

from __future__ import annotations

from functools import partial

import plotly.graph_objects as go
import streamlit as st

from convae.job_state import about
from convae.jobs import JobState, JobView
from convae.store import StoredRun
from convae.train import TrainConfig
from ui import identity
from ui.results import checkpoint_bytes, history_csv
from ui.services import blank_warning, looks_blank_so_far, services
from ui.state import describe, epochs_text, select_config


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


def wait_text(view: JobView) -> str:
    """A queued job's place in the line and about when it starts: "position 2 in the line, starts in about 3 min"."""
    starts = "" if view.starts_in_s is None else f", starts in {about(view.starts_in_s)}"
    return f"position {view.position} in the line{starts}"


def progress_block(view: JobView) -> None:
    """The queue position of a queued job, else its progress bar (epoch, step, speed, time left)."""
    p = view.latest
    if view.state is JobState.QUEUED:
        st.info(
            f"Queued: {wait_text(view)} (the time left of the training now running and of the ones before it, "
            "estimated). One training per person at a time: Train for another configuration replaces this one.",
            icon=":material/hourglass_top:",
        )
        return
    if p is None:
        if view.state.active:  # a job stopped while queued has no progress to show
            st.progress(0.0, text="Starting…")
        return
    st.progress(
        p.fraction,
        text=(
            f"Epoch {p.epoch}/{p.epochs} · step {p.step:,}/{p.steps_per_epoch:,} · "
            f"{p.samples_per_s:,.0f} images/s · {fmt_time(p.elapsed_s)} elapsed · {fmt_time(p.eta_s)} left"
        ),
    )


def outcome(view: JobView) -> None:
    """How a job ended (done, stopped, failed), or a warning while it trains into a blank model."""
    if view.state is JobState.DONE:
        blank_warning(view.run)
        st.success(
            f"Done: validation MSE {view.run.val_loss:.5f} after {epochs_text(len(view.epochs))}. "
            "The other pages show this model now.",
            icon=":material/check_circle:",
        )
        guess = identity.my_guess(view.id)
        if guess is not None:
            st.info(reveal(guess, view.run.val_loss), icon=":material/lightbulb:")
    elif view.state is JobState.CANCELLED:
        st.warning(stopped_text(view), icon=":material/stop_circle:")
    elif view.state is JobState.FAILED:
        reason = (view.error or "unknown error").rstrip(".")
        kept = services().store.kept_epoch(view.config)
        after = f" Epoch {kept.epoch} of {kept.epochs} is kept: **Resume** below goes on from it." if kept else ""
        st.error(f"Training failed: {reason}.{after or ' Nothing was saved.'}", icon=":material/error:")
    for note in view.notes:
        st.warning(note, icon=":material/save:")
    if looks_blank_so_far(view):
        last_val = view.epochs[-1]["val_loss"]
        st.warning(
            f"So far the model outputs blank images (validation MSE {last_val:.4f}, the same as an "
            f"all-black image). If this does not change in the next epoch, press **Stop**, change "
            "the seed and train again.",
            icon=":material/warning:",
        )


def reveal(guess: float, result: float) -> str:
    """Predict, then reveal: "You guessed 0.0200, it reached 0.0131: better than you expected"."""
    if abs(guess - result) <= 0.1 * result:
        verdict = "spot on (within 10 %)"
    else:
        verdict = "better than you expected" if result < guess else "worse than you expected"
    return f"You guessed {guess:.4f}, it reached {result:.4f}: {verdict}."


def credit(run: StoredRun) -> None:
    """Who trained a stored run (as plain text) and the guess they made before training, if any."""
    if run.owner:
        st.text(f"Trained by: {run.owner}")
    if run.guess is not None:
        st.caption(f"Guessed before training: {run.guess:.4f}; it reached {run.val_loss:.4f}.")


def stopped_text(view: JobView) -> str:
    """What a Stop kept: the model of the last finished epoch (resumable), or nothing in the first epoch."""
    n, total = view.stopped_after, view.config.epochs
    if n is None:
        return (
            "Stopped during the first epoch: nothing was kept (a model is kept from the end of the first epoch "
            "on). The pages show the previous model, if any."
        )
    if view.run is None:
        return f"Stopped after epoch {n} of {total}. The complete model of this configuration, trained before, stays."
    return (
        f"Stopped after epoch {n} of {total}: the model of epoch {n} is kept as a stored run, and the other pages "
        f"show it. **Resume** below trains the other {total - n} epochs."
    )


def downloads(run: StoredRun) -> None:
    """Download buttons for a stored run's loss history (CSV) and its checkpoint file."""
    name = run.config.key()
    # The files are made when a button is pressed, not on every visit of the page.
    st.download_button("Download the loss history (CSV)", partial(history_csv, run), f"{name}-losses.csv", "text/csv")
    if run.path is not None:
        st.download_button(
            "Download the checkpoint (.pt)", partial(checkpoint_bytes, run), run.path.name, "application/octet-stream"
        )


def other_trainings(config: TrainConfig) -> None:
    """The server's other queued and running jobs, each with a button that selects its config."""
    others = [v for v in services().jobs.views() if v.state.active and v.config != config]
    if others:
        st.subheader("Other trainings on this server")
        for v in others:
            c1, c2 = st.columns([4, 1])
            state = f"queued ({wait_text(v)})" if v.state is JobState.QUEUED else "training"
            pct = f" · {v.latest.fraction:.0%}" if v.latest else ""
            c1.write(f"**{state}**{pct} · {describe(v.config)}")
            if v.owner:
                c1.text(f"by {v.owner}")  # a student's name: plain text, never Markdown
            c2.button("Show it", key=f"show-{v.id}", on_click=select_config, args=(v.config,))


def own_job(config: TrainConfig) -> None:
    """In the sidebar: this session's queued or running training, when the sidebar shows another configuration."""
    jobs = services().jobs
    job_id = jobs.job_of(identity.session_id())
    view = jobs.snapshot(job_id) if job_id else None
    if view is None or view.config == config:
        return
    state = wait_text(view) if view.state is JobState.QUEUED else "training now"
    pct = f", {view.latest.fraction:.0%}" if view.state is JobState.RUNNING and view.latest else ""
    st.info(f"Your training: {identity.short(view.config)}, {state}{pct}.", icon=":material/person:")
    st.button("Show it", key="show_own_job", on_click=select_config, args=(view.config,), width="stretch")


WHY_IT_COLLAPSED = (
    "With PyTorch's default start the untrained network outputs about 0.5 grey everywhere, while most "
    "MNIST pixels are black. In the first steps Adam moves every weight of the last layer the same way "
    "(darker), so the inputs of the output sigmoid fall far below zero (middle panel). There the sigmoid "
    "is flat: its slope is practically zero, so almost no gradient flows back any more (right panel, "
    "a thousand times less or worse) and the model keeps drawing black images (left panel). A run that "
    "escapes keeps a few bright pixels through this phase, and their gradient pulls it back. Another "
    "seed, or starting the output at the mean brightness, avoids it."
)


def restart_notes(notes: list[str], seed: int | None = None) -> None:
    """One line per restart after a collapse ("seed 0 collapsed at step 100, restarted with seed 1"); for
    a finished run without one (`seed` given), a line saying that its seed learned from the start."""
    for note in notes:
        st.info(f"Restarted: {note}.", icon=":material/restart_alt:")
    if not notes and seed is not None:
        st.caption(f"No restart: seed {seed} learned from its first start (no collapse into blank images).")


def why_it_collapsed(figure: go.Figure | None, blank: bool) -> None:
    """For a run with collapsed attempts, or a blank one (`figure`: page_charts.collapse_chart, None
    for any other run): the explanation and the first steps' readings of each attempt."""
    if figure is None:
        return
    with st.expander("Why did it collapse?", expanded=blank):
        st.markdown(WHY_IT_COLLAPSED)
        st.plotly_chart(figure, key="collapse_chart", config={"displayModeBar": False})
