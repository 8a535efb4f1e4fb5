"""Train page: the live loss chart, progress, and "watch it learn" while a job runs; else the model's history."""

import streamlit as st

from convae.jobs import JobState
from ui import results, resume, training
from ui.baseline import GAP_NOTE, pca_mse_for
from ui.charts import loss_figure, restarts_title
from ui.images import image_grid, pixels
from ui.page_charts import collapse_chart, history_chart
from ui.services import attached_job, blank_warning, current_run, estimate_minutes, is_blank, services, splits_or_notice
from ui.state import describe, selected_config

config = selected_config()
svc = services()
st.title("Train the auto-encoder")
st.caption(
    "MSE between output and input, Adam, shuffled batches; the validation loss is measured on the "
    "10,000 test images at the end of each epoch. " + describe(config)
)

splits = splits_or_notice(config.dataset)


def strip(preview, caption: str) -> None:
    """Fixed validation digits (top) and their current reconstructions (bottom)."""
    digits = [pixels(splits.val_images[i]) for i in preview_idx]
    st.image(image_grid([digits, preview], 3), caption=caption, width="stretch")


def loss_chart(fig, key: str) -> None:
    """A loss chart, and the note on PCA's dashed line when the chart has one."""
    st.plotly_chart(fig, key=key, config={"displayModeBar": False})
    if baseline is not None:
        st.caption(GAP_NOTE)


if splits is not None:
    preview_idx = results.preview_digits(splits)
    baseline = pca_mse_for(config)  # PCA's MSE with this K: the dashed line on the loss charts
    view = attached_job(config)
    active = view is not None and view.state.active
    st.toggle("Logarithmic loss axis", key="log_y")

    if view is not None and (active or st.session_state.get("train_clicked")):
        # Twice a second while it trains; a queued job only waits, so once a second is enough, and
        # when it starts the whole page reruns, which sets the faster pace.
        queued = view.state is JobState.QUEUED

        @st.fragment(run_every=(1.0 if queued else 0.5) if active else None)
        def live() -> None:
            v = svc.jobs.snapshot(view.id)
            if v is None:
                return
            if queued and v.state is not JobState.QUEUED:
                st.rerun(scope="app")
            if v.state.active:
                st.session_state["watching"] = v.id
            elif st.session_state.get("watching") == v.id:
                st.session_state.pop("watching")
                st.rerun(scope="app")  # the sidebar and the other pages now show the new model
            if v.state.active or v.state is JobState.DONE:
                training.progress_block(v)
            training.outcome(v)  # how it ended goes above the chart, where it is seen without scrolling
            training.restart_notes(v.restarts, v.run.history.seed if v.state is JobState.DONE else None)
            if v.state is JobState.QUEUED:
                return  # nothing to draw yet
            spe = v.latest.steps_per_epoch if v.latest else 1
            log_y, title = st.session_state.get("log_y", False), restarts_title(len(v.restarts))
            curve = (v.steps, v.step_losses, v.epochs, spe)
            fig = loss_figure(*curve, log_y=log_y, title=title, baseline=baseline, k=config.k)
            loss_chart(fig, "live_chart")
            if v.preview is not None:
                strip(
                    v.preview,
                    "Watch it learn: fixed validation digits (top) and the model's current "
                    "reconstructions (bottom), updated every second.",
                )

        live()
        if not active:  # stopped or failed with an epoch kept: Resume and Start over
            resume.resume_panel(config, view, stored=True, message=False)

    else:
        run = current_run(config)
        drew_kept = resume.resume_panel(config, view, stored=run is not None)  # a run that did not finish
        if run is None and not drew_kept:
            st.info(
                f"No model for this configuration yet. Press **Train** in the sidebar to train it "
                f"(about {estimate_minutes(config)} on this machine) and watch the loss fall here.",
                icon=":material/info:",
            )
        elif run is not None:
            h = run.history
            label = "shipped with the project" if run.shipped else f"trained {run.created.replace('T', ' ')}"
            label += f", {run.label}" if run.label else ""
            st.subheader(f"Loss history of the model shown ({label})")
            blank_warning(run)
            training.credit(run)  # who trained it, and their guess against the result
            training.restart_notes([r["note"] for r in h.restarts])
            c1, c2, c3 = st.columns(3)
            c1.metric("Validation MSE", f"{run.val_loss:.5f}")
            c2.metric("Training loss, last epoch", f"{run.train_loss:.5f}")
            c3.metric("Training time", f"{run.seconds / 60:.1f} min" + (f" on {run.device}" if run.device else ""))
            # a stored run's curve: built once, the same for every tab that shows it
            loss_chart(history_chart(run, st.session_state.get("log_y", False), baseline), "history_chart")
            blank = is_blank(run)
            training.why_it_collapsed(collapse_chart(run, blank), blank)
            _, recons, _ = results.reconstruct_digits(run, splits, preview_idx)
            strip(recons, "Fixed validation digits (top) and this model's reconstructions (bottom).")
            training.downloads(run)
            st.caption("Press **Retrain** in the sidebar to train this configuration again and watch it live.")

    training.other_trainings(config)
    resume.unfinished_runs(config)
