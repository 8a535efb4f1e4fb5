"""The dashboard's shared Streamlit layer: services, sidebar, data and model state, cached analysis.

Pages import from here and only draw. Heavy objects live in `st.cache_resource` (one per server
process); per-browser choices live in `st.session_state`. No background thread calls `st.*`:
trainings and data provisioning run in the core's threads and pages poll them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import streamlit as st
import torch

from convae import analysis
from convae.data import DATASETS, DataError, Splits, check_files, data_root, ensure_data, load_splits
from convae.jobs import JobManager, JobState, JobView
from convae.store import RunStore, StoredRun
from convae.train import TrainConfig

DEFAULTS = {
    "dataset": "mnist",
    "q1": 32,
    "q2": 32,
    "k": 10,
    "epochs": 10,
    "lr": 1e-3,
    "batch_size": 32,
    "train_size": 0,
    "seed": 0,
    "mean_init": False,
}
LEARNING_RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
BATCH_SIZES = {
    32: "32 (the assignment's)",
    128: "128 (fast demo, not the assignment's)",
    256: "256 (fast demo, not the assignment's)",
}
TRAIN_SIZES = {
    0: "all 60,000 (the assignment's)",
    10000: "10,000 (quick demo subset)",
    5000: "5,000 (quick demo subset)",
    1000: "1,000 (quick demo subset)",
}


# --------------------------------------------------------------------------------- services


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


# ---------------------------------------------------------------------------------- sidebar


SLIDER_RANGES = {"q1": (1, 128), "q2": (1, 128), "k": (1, 64), "epochs": (1, 30)}


def _init_state() -> None:
    if "_config_read_from_url" not in st.session_state:  # a new tab, or the same tab refreshed
        st.session_state["_config_read_from_url"] = True
        for key, value in _config_from_url().items():
            st.session_state.setdefault(key, value)
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


# The sidebar's choices that differ from the defaults also live in the page's address, so that a
# refresh (or a bookmark, or a link sent to a student) shows the same configuration and, while it
# trains, the same live training.


def _config_from_url() -> dict:
    """The sidebar values in the address; a value the widgets could not show is ignored."""
    allowed = {"dataset": DATASETS, "lr": LEARNING_RATES, "batch_size": BATCH_SIZES, "train_size": TRAIN_SIZES}
    values = {}
    for key, default in DEFAULTS.items():
        text = st.query_params.get(key)
        if text is None:
            continue
        try:
            if isinstance(default, bool):
                value = text in ("1", "true", "True")
            elif isinstance(default, int):
                value = int(text)
            elif isinstance(default, float):
                value = float(text)
            else:
                value = text
        except ValueError:
            continue
        lo, hi = SLIDER_RANGES.get(key, (0, 2**31 - 1))
        if key in allowed and value not in allowed[key]:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and key not in allowed and not lo <= value <= hi:
            continue
        values[key] = value
    return values


def _config_to_url() -> None:
    def text(value) -> str:
        return "1" if value is True else f"{value:g}" if isinstance(value, float) else str(value)

    wanted = {key: text(st.session_state[key]) for key, default in DEFAULTS.items() if st.session_state[key] != default}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def _reset_to_defaults() -> None:
    for key, value in DEFAULTS.items():
        if key != "dataset":
            st.session_state[key] = value


def select_config(config: TrainConfig) -> None:
    """Move the sidebar to a config (use as a button callback, before the widgets are drawn)."""
    for key in DEFAULTS:
        value = getattr(config, key)
        st.session_state[key] = 0 if key == "train_size" and value is None else value


def selected_config() -> TrainConfig:
    """The config the sidebar shows (defaults until the sidebar has been drawn)."""
    _init_state()
    s = st.session_state
    return TrainConfig(
        q1=s.q1,
        q2=s.q2,
        k=s.k,
        epochs=s.epochs,
        lr=s.lr,
        batch_size=s.batch_size,
        train_size=s.train_size or None,
        seed=int(s.seed),
        dataset=s.dataset,
        mean_init=bool(s.mean_init),
    )


def describe(config: TrainConfig) -> str:
    size = "60,000" if config.train_size is None else f"{config.train_size:,}"
    return (
        f"Q1={config.q1}, Q2={config.q2}, K={config.k} · {config.epochs} epochs · lr {config.lr:g} · "
        f"batch {config.batch_size} · {size} images · seed {config.seed}"
        + (" · output starts at the mean" if config.mean_init else "")
    )


def sidebar() -> TrainConfig:
    """The controls shown on every page; returns the selected config."""
    _init_state()
    svc = services()
    with st.sidebar:
        status, buttons = st.container(), st.container()
        st.divider()
        st.selectbox("Data set", list(DATASETS), key="dataset", format_func=lambda n: DATASETS[n].title)
        st.markdown("**Architecture** (Table 1)")
        st.slider("Q1: channels of the first convolution", 1, 128, key="q1")
        st.slider("Q2: channels of the second convolution", 1, 128, key="q2")
        st.slider("K: size of the latent code", 1, 64, key="k")
        st.markdown("**Training** (Task 5)")
        st.slider("Epochs", 1, 30, key="epochs")
        st.select_slider("Learning rate (Adam)", LEARNING_RATES, key="lr", format_func=lambda v: f"{v:g}")
        st.selectbox("Batch size", list(BATCH_SIZES), key="batch_size", format_func=BATCH_SIZES.get)
        st.selectbox("Training images", list(TRAIN_SIZES), key="train_size", format_func=TRAIN_SIZES.get)
        st.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="seed")
        st.checkbox(
            "Start the output at the mean brightness",
            key="mean_init",
            help="Not the assignment's (which keeps PyTorch's default start). Sets the last layer's bias so "
            "that the untrained model outputs the average pixel instead of 0.5 grey. This stops the "
            "sigmoid from saturating at 0 in the first steps, which leaves some models blank for good.",
        )
        config = selected_config()
        _config_to_url()
        if not config.is_assignment_recipe or config.train_size is not None or config.mean_init:
            st.caption(
                ":material/warning: Not the assignment's recipe (batch 32, lr 0.001, all 60,000 images, default start)."
            )
        if config != TrainConfig(dataset=config.dataset):
            st.button("Back to the assignment's defaults", on_click=_reset_to_defaults, width="stretch")
    run = svc.store.get(config)
    active = svc.jobs.active_for(config)
    with buttons:
        c1, c2 = st.columns(2)
        c1.button(
            "Retrain" if run else "Train",
            type="primary",
            width="stretch",
            key="train_button",
            on_click=_on_train,
            disabled=active is not None,
            help="Train this configuration in the background (the Train page shows it live).",
        )
        c2.button(
            "Stop",
            width="stretch",
            key="stop_button",
            on_click=_on_stop,
            disabled=active is None,
            help="Stop the training of this configuration.",
        )
    with status:
        st.markdown("**Model shown on the pages**")
        if active:
            view = svc.jobs.snapshot(active)
            where = f"queued, position {view.position}" if view.state is JobState.QUEUED else "training now"
            st.info(f"This configuration is {where}.", icon=":material/hourglass_top:")
        if run and is_blank(run):
            st.warning(
                f"Trained model · validation MSE **{run.val_loss:.4f}**, no better than a blank image: "
                "it learned nothing. Change the seed and train again.",
                icon=":material/warning:",
            )
        elif run:
            st.success(
                f"{'Shipped' if run.shipped else 'Trained'} model · {len(run.history.epochs)} epochs · "
                f"validation MSE **{run.val_loss:.4f}**",
                icon=":material/check_circle:",
            )
        elif not active:
            st.warning("No model for this configuration yet. Press **Train**.", icon=":material/info:")
        st.caption(describe(config))
    return config


FIRST_POINT_WAIT_S = 0.6


def _on_train() -> None:
    svc = services()
    config = selected_config()
    job_id = svc.jobs.submit(config)
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


def attached_job(config: TrainConfig) -> JobView | None:
    """The job this tab follows: the active one for the selected config, else the last one it started."""
    jobs = services().jobs
    job_id = jobs.active_for(config) or st.session_state.get("job_id") or jobs.latest_for(config)
    view = jobs.snapshot(job_id) if job_id else None
    if view is not None and view.config != config and not view.state.active:
        return None
    return view


# ------------------------------------------------------------------------------ data, model


def splits_or_notice(dataset: str) -> Splits | None:
    """The data set, or None after drawing its state (provisioning progress, or what to do)."""
    if not check_files(data_root(), dataset):
        try:
            return load_splits(data_root(), dataset)
        except DataError as e:
            st.error(str(e))
            return None
    prov = services().provisioner
    running, messages, error = prov.state(dataset)
    if not running and error is None:
        prov.start(dataset)
    _provisioning_panel(dataset)
    return None


def _provisioning_panel(dataset: str) -> None:
    @st.fragment(run_every=1.0)
    def panel() -> None:
        running, messages, error = services().provisioner.state(dataset)
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


@st.cache_resource(show_spinner=False)
def blank_loss(dataset: str) -> float | None:
    """The validation MSE of an all-black output for a data set (None while its data is missing)."""
    if check_files(data_root(), dataset):
        return None
    return analysis.blank_mse(load_splits(data_root(), dataset).val_images)


def is_blank(run: StoredRun) -> bool:
    blank = blank_loss(run.config.dataset)
    return blank is not None and analysis.learned_nothing(run.val_loss, blank)


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


@dataclass
class Analysis:
    """Everything the analysis pages draw for one model, computed once per model."""

    latents: torch.Tensor  # (10000, K)
    labels: np.ndarray
    pca: analysis.PCA
    means: torch.Tensor  # (10, K)
    means_2d: np.ndarray
    originals: torch.Tensor  # (100, 28, 28) first validation batch
    recons: torch.Tensor
    errors: torch.Tensor  # (100,)
    mixtures: torch.Tensor  # (10, 10, 28, 28)
    classes: tuple[str, ...]

    def axis_titles(self) -> tuple[str, str]:
        k = self.latents.shape[1]
        ev = self.pca.explained.tolist()
        if k == 1:
            return ("z (the 1-D latent code)", "class")
        if k == 2:
            return (f"z1 ({ev[0]:.0%} of the variance)", f"z2 ({ev[1]:.0%} of the variance)")
        return (f"PC 1 ({ev[0]:.0%} of the variance)", f"PC 2 ({ev[1]:.0%} of the variance)")


@st.cache_resource(max_entries=6, show_spinner="Analysing the model…")
def _analysis(run_id: str, _run: StoredRun, _splits: Splits) -> Analysis:
    model = _run.model
    latents = analysis.encode(model, _splits.val_images)
    pca = analysis.pca_2d(latents)
    means = _run.class_means
    originals, recons, errors = analysis.reconstruct(model, _splits.val_images[:100])
    return Analysis(
        latents=latents,
        labels=_splits.val_labels.numpy(),
        pca=pca,
        means=means,
        means_2d=pca.project(means).numpy(),
        originals=originals,
        recons=recons,
        errors=errors,
        mixtures=analysis.mixture_matrix(model, means),
        classes=_splits.classes,
    )


def run_id(run: StoredRun) -> str:
    return f"{run.config.key()}@{run.created}@{run.path}"


def model_analysis(run: StoredRun, splits: Splits) -> Analysis:
    return _analysis(run_id(run), run, splits)


def page_context() -> tuple[TrainConfig, Splits, StoredRun, Analysis] | None:
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
    return config, splits, run, model_analysis(run, splits)


def estimate_minutes(config: TrainConfig) -> str:
    """A rough duration for the sidebar's config on this machine (from ~4,500 images/s at batch 32)."""
    n = config.train_size or 60000
    rate = 4500 * (1.8 if config.batch_size >= 128 else 1.0) * (32 * 32) / max(256, config.q1 * config.q2)
    seconds = config.epochs * (n / min(rate, 20000) + 1.5)
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def image_to_uint8(img: torch.Tensor | np.ndarray, scale: int = 8) -> np.ndarray:
    """A (28, 28) image in [0, 1] as an enlarged uint8 array for st.image (nearest neighbour)."""
    arr = img.numpy() if isinstance(img, torch.Tensor) else img
    arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    return np.kron(arr, np.ones((scale, scale), dtype=np.uint8))


@st.cache_resource(max_entries=4, show_spinner="Drawing 10,000 latent codes…")
def _latent_figure(run_id: str, _a: Analysis, _splits: Splits):
    from convae.figures import latent_figure

    images = _splits.val_images.numpy().astype(np.float32) / 255
    return latent_figure(_a.pca.coords.numpy(), _a.labels, images, _a.classes, _a.means_2d, _a.axis_titles())


def latent_figure_for(run: StoredRun, a: Analysis, splits: Splits):
    """The latent scatter of a model (cached; callers that add traces must copy it first)."""
    return _latent_figure(run_id(run), a, splits)


def clicked_point(event) -> dict | None:
    """The first clicked point of a plotly selection event, or None."""
    try:
        points = event.selection.points
    except AttributeError:
        return None
    return points[0] if points else None
