"""The server's shared services and what a page needs before it can draw: data, model, analysis.

Heavy objects live in `st.cache_resource` (one per server process, shared by every browser tab).
No background thread calls `st.*`: trainings and data provisioning run in the core's threads and
pages poll them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import streamlit as st

from convae import analysis
from convae.data import DATASETS, DataError, Splits, check_files, data_root, ensure_data, load_splits
from convae.job_state import estimate_seconds
from convae.jobs import JobManager, JobView
from convae.store import RunStore, StoredRun
from convae.train import TrainConfig
from ui.results import Analysis, model_analysis
from ui.state import selected_config


class Provisioner:
    """Provisions a data set in a background thread and keeps its messages for the page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}
        self._threads: dict[str, threading.Thread] = {}

    def start(self, dataset: str) -> None:
        with self._lock:
            thread = self._threads.get(dataset)
            if thread is not None and thread.is_alive():
                return
            self.messages[dataset] = []
            self.errors.pop(dataset, None)
            thread = threading.Thread(target=self._run, args=(dataset,), daemon=True, name=f"data-{dataset}")
            self._threads[dataset] = thread
            thread.start()

    def _run(self, dataset: str) -> None:
        def say(msg: str) -> None:
            with self._lock:
                self.messages[dataset].append(msg)

        try:
            ensure_data(data_root(), dataset, progress=say)
        except Exception as e:  # shown on the page with what to do
            with self._lock:
                self.errors[dataset] = str(e)

    def state(self, dataset: str) -> tuple[bool, list[str], str | None]:
        with self._lock:
            thread = self._threads.get(dataset)
            return (
                thread is not None and thread.is_alive(),
                list(self.messages.get(dataset, [])),
                self.errors.get(dataset),
            )


@dataclass
class Services:
    store: RunStore
    jobs: JobManager
    provisioner: Provisioner = field(default_factory=Provisioner)


@st.cache_resource
def services() -> Services:
    """One store, job manager and provisioner per server process, shared by every browser tab."""
    store = RunStore()
    return Services(store, JobManager(store, data_root()))


# ------------------------------------------------------------------------------------ data


def splits_or_notice(dataset: str) -> Splits | None:
    """The data set, or None after drawing its state (provisioning progress, or what to do)."""
    if not check_files(data_root(), dataset):
        try:
            return load_splits(data_root(), dataset)
        except DataError as e:
            st.error(str(e))
            return None
    prov = services().provisioner
    running, _, error = prov.state(dataset)
    if not running and error is None:
        prov.start(dataset)
    _provisioning_panel(dataset)
    return None


def stored_splits(dataset: str) -> Splits | None:
    """A data set that is already provisioned, or None (nothing drawn, nothing started)."""
    try:
        return load_splits(None, dataset)
    except Exception:
        return None


def _provisioning_panel(dataset: str) -> None:
    @st.fragment(run_every=1.0)
    def panel() -> None:
        _, messages, error = services().provisioner.state(dataset)
        if not check_files(data_root(), dataset):
            st.rerun(scope="app")
        title = DATASETS[dataset].title
        if error:
            st.subheader(f"The {title} data is not available")
            st.error("The data could not be provisioned. What was wrong, and what to do:", icon=":material/error:")
            st.code(error, language=None, wrap_lines=True)  # wrapped: the reasons are at the ends of lines
            st.button("Try again", on_click=services().provisioner.start, args=(dataset,))
        else:
            st.subheader(f"Getting the {title} data…")
            st.progress(min(0.95, 0.1 + 0.25 * len(messages)), text=messages[-1] if messages else "starting…")
        with st.expander("Details", expanded=False):
            st.code("\n".join(messages) or "(no messages yet)", language=None, wrap_lines=True)

    panel()


# --------------------------------------------------------------------------------- models


@st.cache_resource(show_spinner=False)
def blank_loss(dataset: str) -> float | None:
    """The validation MSE of an all-black output for a data set (None while its data is missing)."""
    if check_files(data_root(), dataset):
        return None
    return analysis.blank_mse(load_splits(data_root(), dataset).val_images)


def is_blank(run: StoredRun) -> bool:
    blank = blank_loss(run.config.dataset)
    return blank is not None and analysis.learned_nothing(run.val_loss, blank)


def looks_blank_so_far(view: JobView) -> bool:
    """True while a training's last validation loss is no better than an all-black image."""
    blank = blank_loss(view.config.dataset)
    last_val = view.epochs[-1]["val_loss"] if view.epochs else None
    return bool(view.state.active and last_val is not None and blank and analysis.learned_nothing(last_val, blank))


BLANK_ADVICE = (
    "This model outputs (almost) blank images: its validation MSE ({loss:.4f}) is no better than that of "
    "an all-black image ({blank:.4f}). Early in training the output sigmoid saturated at 0, where its "
    "gradient vanishes, and Adam could not bring it back: a known failure of this network that depends on "
    "the random start. Change the **seed** in the sidebar and train again, or tick **Start the output at "
    "the mean brightness**, which avoids it."
)


def blank_warning(run: StoredRun) -> None:
    if is_blank(run):
        st.warning(
            BLANK_ADVICE.format(loss=run.val_loss, blank=blank_loss(run.config.dataset)), icon=":material/warning:"
        )


def current_run(config: TrainConfig) -> StoredRun | None:
    return services().store.get(config)


def attached_job(config: TrainConfig) -> JobView | None:
    """The job this tab follows: the active one for the selected config, else the last one it started."""
    jobs = services().jobs
    job_id = jobs.active_for(config) or st.session_state.get("job_id") or jobs.latest_for(config)
    view = jobs.snapshot(job_id) if job_id else None
    if view is not None and view.config != config and not view.state.active:
        return None
    return view


def estimate_minutes(config: TrainConfig) -> str:
    """A rough duration for the sidebar's config on this machine, in words (convae.job_state's estimate)."""
    seconds = estimate_seconds(config)
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


# ------------------------------------------------------------------------- page context


@dataclass(frozen=True)
class PageContext:
    """What an analysis page draws from: the sidebar's config, its data, its model and their analysis."""

    config: TrainConfig
    splits: Splits
    run: StoredRun
    analysis: Analysis


def page_context() -> PageContext | None:
    """For the analysis pages: the data and model, or None after drawing why there is none."""
    config = selected_config()
    splits = splits_or_notice(config.dataset)
    if splits is None:
        return None
    run = current_run(config)
    if run is None:
        view = attached_job(config)
        if view is not None and view.state.active:
            st.info(
                "This configuration is training now: the Train page shows it live; this page fills in when it is done.",
                icon=":material/hourglass_top:",
            )
        else:
            st.info(
                "No model for this configuration yet. Press **Train** in the sidebar (about "
                f"{estimate_minutes(config)} on this machine), or go back to the assignment's defaults, "
                "which ship trained.",
                icon=":material/info:",
            )
        return None
    blank_warning(run)
    return PageContext(config, splits, run, model_analysis(run, splits))
