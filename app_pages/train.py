"""Train page: the live loss chart, progress, and "watch it learn" while a job runs; else the model's history."""

import numpy as np
import pandas as pd
import streamlit as st

import ui
from convae import analysis
from convae.figures import loss_figure
from convae.jobs import JobState, JobView

config = ui.selected_config()
svc = ui.services()
st.title("Train the auto-encoder")
st.caption(
    "MSE between output and input, Adam, shuffled batches; the validation loss is measured on the "
    "10,000 test images at the end of each epoch. " + ui.describe(config)
)

splits = ui.splits_or_notice(config.dataset)


def strip(preview, caption: str) -> None:
    """Fixed validation digits (top) and their current reconstructions (bottom)."""
    top = np.concatenate([ui.image_to_uint8(splits.val_images[i].float() / 255, 3) for i in preview_idx], axis=1)
    bottom = np.concatenate([ui.image_to_uint8(p, 3) for p in preview], axis=1)
    st.image(np.concatenate([top, bottom], axis=0), caption=caption, width="stretch")


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


def progress_block(view: JobView) -> None:
    p = view.latest
    if view.state is JobState.QUEUED:
        st.info(
            f"Queued: position {view.position} in the queue. It starts when the trainings before it end.",
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


def chart(view_steps, view_losses, epochs, steps_per_epoch, key: str) -> None:
    log_y = st.session_state.get("log_y", False)
    fig = loss_figure(view_steps, view_losses, epochs, steps_per_epoch, log_y=log_y)
    st.plotly_chart(fig, key=key, config={"displayModeBar": False})


if splits is not None:
    from convae.train import preview_indices

    preview_idx = preview_indices(splits.val_labels).tolist()
    view = ui.attached_job(config)
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
                progress_block(v)
            # How it ended goes above the chart, where it is seen without scrolling.
            if v.state is JobState.DONE:
                ui.blank_warning(v.run)
                st.success(
                    f"Done: validation MSE {v.run.val_loss:.5f} after {len(v.epochs)} epochs. "
                    "The other pages show this model now.",
                    icon=":material/check_circle:",
                )
            elif v.state is JobState.CANCELLED:
                st.warning(
                    "Stopped. Nothing was saved; the pages show the previous model, if any.",
                    icon=":material/stop_circle:",
                )
            elif v.state is JobState.FAILED:
                reason = (v.error or "unknown error").rstrip(".")
                st.error(f"Training failed: {reason}. Nothing was saved.", icon=":material/error:")
            blank = ui.blank_loss(v.config.dataset)
            last_val = v.epochs[-1]["val_loss"] if v.epochs else None
            if v.state.active and last_val is not None and blank and analysis.learned_nothing(last_val, blank):
                st.warning(
                    f"So far the model outputs blank images (validation MSE {last_val:.4f}, the same as an "
                    f"all-black image). If this does not change in the next epoch, press **Stop**, change "
                    "the seed and train again.",
                    icon=":material/warning:",
                )
            if v.state is JobState.QUEUED:
                return  # nothing to draw yet
            spe = v.latest.steps_per_epoch if v.latest else 1
            chart(v.steps, v.step_losses, v.epochs, spe, key="live_chart")
            if v.preview is not None:
                strip(
                    v.preview,
                    "Watch it learn: fixed validation digits (top) and the model's current "
                    "reconstructions (bottom), updated every second.",
                )

        live()

    else:
        run = ui.current_run(config)
        if run is None:
            st.info(
                f"No model for this configuration yet. Press **Train** in the sidebar to train it "
                f"(about {ui.estimate_minutes(config)} on this machine) and watch the loss fall here.",
                icon=":material/info:",
            )
        else:
            h = run.history
            spe = h.steps[-1] // len(h.epochs) if h.steps else 1
            label = "shipped with the project" if run.shipped else f"trained {run.created.replace('T', ' ')}"
            st.subheader(f"Loss history of the model shown ({label})")
            ui.blank_warning(run)
            c1, c2, c3 = st.columns(3)
            c1.metric("Validation MSE", f"{run.val_loss:.5f}")
            c2.metric("Training loss, last epoch", f"{run.train_loss:.5f}")
            c3.metric("Training time", f"{run.seconds / 60:.1f} min" + (f" on {run.device}" if run.device else ""))
            chart(h.steps, h.step_losses, h.epochs, spe, key="history_chart")
            _, recons, _ = analysis.reconstruct(run.model, splits.val_images[preview_idx])
            strip(recons, "Fixed validation digits (top) and this model's reconstructions (bottom).")
            rows = pd.DataFrame(h.epochs)
            st.download_button(
                "Download the loss history (CSV)",
                rows.to_csv(index=False).encode(),
                file_name=f"{config.key()}-losses.csv",
                mime="text/csv",
            )
            if run.path is not None:
                st.download_button(
                    "Download the checkpoint (.pt)",
                    run.path.read_bytes(),
                    file_name=run.path.name,
                    mime="application/octet-stream",
                )
            st.caption("Press **Retrain** in the sidebar to train this configuration again and watch it live.")

    others = [v for v in svc.jobs.views() if v.state.active and v.config != config]
    if others:
        st.subheader("Other trainings on this server")
        for v in others:
            c1, c2 = st.columns([4, 1])
            state = f"queued (position {v.position})" if v.state is JobState.QUEUED else "training"
            pct = f" · {v.latest.fraction:.0%}" if v.latest else ""
            c1.write(f"**{state}**{pct} · {ui.describe(v.config)}")
            c2.button("Show it", key=f"show-{v.id}", on_click=ui.select_config, args=(v.config,))
