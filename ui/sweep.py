"""The sweep page's data and actions: the stored runs of the sidebar's sweep as chart series, PCA's
curve on the same axes, a clicked point turned into the sidebar's config, and "fill the gaps".

The page reads; the callbacks here change the session (the sidebar's keys, this tab's sweep jobs) and
queue trainings through the job manager. Nothing here draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go
import streamlit as st

from convae import sweep as core
from convae.jobs import JobState, JobView
from convae.pca import MAX_K, pca_parameters
from convae.presets import PRESETS
from convae.sweep import Recipe, Sweep, parameter_count, sweep_csv
from convae.train import TrainConfig
from ui.baseline import image_pca
from ui.charts import RUN_COLOURS
from ui.lesson_charts import Baseline, Series, sweep_figure
from ui.presenter import students_paused, train_priority
from ui.services import estimate_minutes, is_blank, services
from ui.state import select_config, selected_config

KIND_LABELS = {"k": "Bottleneck K", "q": "Channels Q1 = Q2"}
FILL_PRESETS = ("quick", "good", "assignment")  # the quick one first: the class waits for it
JOBS_KEY = "sweep_jobs"
PICKED_KEY = "sweep_picked"


def explanation(kind: str, config: TrainConfig) -> str:
    """What the page's charts show, for a K sweep or a Q sweep of the sidebar's config."""
    if kind == "k":
        return (
            f"Every stored model with Q1 = {config.q1} and Q2 = {config.q2} (the sidebar's), one dot per run, one "
            "colour per training recipe; the line joins the best run at each K. The grey dashed curve is PCA with "
            "K components, the best *linear* code of K numbers: where the dots sit below it, the network's "
            "non-linearity pays. A small K squeezes hard; past some K, more numbers buy little. "
            "**Click a dot** to show that model on every page."
        )
    return (
        f"Every stored model with Q1 = Q2 and K = {config.k} (the sidebar's K): more channels in both "
        f"convolutions, the same bottleneck. The grey dashed line is PCA with {config.k} components. More "
        "channels let the encoder tell more kinds of strokes apart, but everything still has to pass "
        "through the K numbers. **Click a dot** to show that model on every page."
    )


def current_sweep(kind: str) -> Sweep:
    """The sweep of the sidebar's config: its K sweep, or the Q1 = Q2 sweep at its K."""
    runs, _ = services().store.scan()
    return core.sweep_for(runs, kind, selected_config())


def recipe_colour(recipe: Recipe) -> str:
    """One colour per recipe that does not change as runs are added: each preset its own, the rest shared
    out by their label."""
    named = {"assignment": RUN_COLOURS[0], "quick": RUN_COLOURS[1], "good": RUN_COLOURS[2]}
    if recipe.preset in named:
        return named[recipe.preset]
    others = RUN_COLOURS[3:]
    return others[sum(recipe.label.encode()) % len(others)]


def series_of(sw: Sweep, by_parameters: bool) -> list[Series]:
    """One series per recipe: each run's setting (or parameter count) and validation MSE."""
    out = []
    for recipe, runs in sw.groups.items():
        s = Series(recipe.label, recipe_colour(recipe))
        for r in runs:
            c = r.config
            params = parameter_count(c.q1, c.q2, c.k)
            blank = is_blank(r)
            s.x.append(float(params if by_parameters else sw.setting(r)))
            s.y.append(r.val_loss)
            s.keys.append(c.key())
            s.blank.append(blank)
            s.hover.append(
                f"Q1={c.q1}, Q2={c.q2}, K={c.k} · {params:,} parameters · seed {c.seed}<br>"
                f"validation MSE {r.val_loss:.4f}"
                + (" · learned nothing (blank output)" if blank else "")
                + (" · output started at the mean" if c.mean_init else "")
                + (" · shipped" if r.shipped else "")
            )
        out.append(s)
    return out


def baseline_of(sw: Sweep, by_parameters: bool) -> Baseline | None:
    """PCA on the sweep's axis: its curve over K (or over its number of parameters) for a K sweep; for
    a Q sweep, whose K is fixed, one level. None while the data set is not provisioned."""
    pca = image_pca(sw.dataset)
    if pca is None:
        return None
    if sw.kind == "q":
        k = sw.fixed[0]
        return Baseline(f"PCA with {k} components", None, None, level=pca.mse(k)) if k <= MAX_K else None
    ks = list(range(1, MAX_K + 1))
    x = [float(pca_parameters(k)) for k in ks] if by_parameters else [float(k) for k in ks]
    return Baseline("PCA with K components (linear)", x, pca.val_mse.tolist())


def axis(sw: Sweep, by_parameters: bool) -> tuple[str, list[int] | None]:
    """The x axis's title and tick values."""
    if by_parameters:
        return "number of parameters (log scale; PCA keeps 784 × (K + 1) numbers)", None
    if sw.kind == "k":
        return "K, the size of the latent code (log scale)", list(core.K_GRID)
    return f"Q1 = Q2, channels of both convolutions (log scale; K = {sw.fixed[0]})", list(core.Q_GRID)


def figure(sw: Sweep, by_parameters: bool) -> go.Figure:
    """The sweep's chart against its setting or the parameter count, the sidebar's model ringed."""
    x_title, ticks = axis(sw, by_parameters)
    series, baseline = series_of(sw, by_parameters), baseline_of(sw, by_parameters)
    return sweep_figure(series, baseline, x_title, ticks, selected=selected_config().key())


def fill_recipe(preset: str) -> Recipe:
    p = PRESETS[preset]
    return Recipe(p.epochs, p.lr, p.batch_size, p.train_size)


def gaps(sw: Sweep, preset: str) -> list[int]:
    """The grid values that no run trained with `preset`'s settings has yet."""
    return sw.missing(fill_recipe(preset))


def gap_config(sw: Sweep, value: int, preset: str) -> TrainConfig:
    """The config that trains grid value `value` with `preset`'s settings and the sidebar's seed."""
    return sw.config_for(value, PRESETS[preset].apply(selected_config()))


def gaps_note(sw: Sweep, missing: list[int], preset: str) -> str:
    """What "Fill the gaps" would train, and how long (the assignment's recipe) or that it is a quick demo."""
    setting = "K" if sw.kind == "k" else "Q1 = Q2"
    seed = selected_config().seed
    if preset == "assignment":
        how = f"About {estimate_minutes(gap_config(sw, missing[0], preset))} each on this machine."
    else:
        how = "These settings are not the assignment's recipe: their points get a colour of their own."
    return f"Missing with these settings: {setting} = {', '.join(map(str, missing))} (seed {seed}). {how}"


def fill_the_gaps(kind: str, preset: str) -> None:
    """The button's callback: queue one training per missing grid value, with the preset's settings
    and the sidebar's seed, and remember the jobs so that the page follows them."""
    if students_paused():  # the button is disabled then; a click that raced the pause does nothing
        return
    sw = current_sweep(kind)
    jobs = services().jobs
    ids = [jobs.submit(gap_config(sw, value, preset), **train_priority()) for value in gaps(sw, preset)]
    st.session_state[JOBS_KEY] = list(dict.fromkeys([*st.session_state.get(JOBS_KEY, []), *ids]))


@dataclass
class JobsState:
    """This tab's sweep jobs: what is done, what is training and what waits."""

    done: int
    failed: list[JobView]
    running: list[JobView]
    queued: int

    @property
    def active(self) -> bool:
        return bool(self.running) or self.queued > 0


def sweep_jobs() -> JobsState:
    views = [v for v in (services().jobs.snapshot(j) for j in st.session_state.get(JOBS_KEY, [])) if v is not None]
    return JobsState(
        done=sum(v.state is JobState.DONE for v in views),
        failed=[v for v in views if v.state is JobState.FAILED],
        running=[v for v in views if v.state is JobState.RUNNING],
        queued=sum(v.state is JobState.QUEUED for v in views),
    )


def progress_text(state: JobsState) -> str:
    parts = [f"{state.done} trained"]
    for v in state.running:
        pct = f" ({v.latest.fraction:.0%})" if v.latest is not None else ""
        parts.append(f"training Q1={v.config.q1}, Q2={v.config.q2}, K={v.config.k} now{pct}")
    if state.queued:
        parts.append(f"{state.queued} waiting")
    if state.failed:
        parts.append(f"{len(state.failed)} failed")
    return "Filling the gaps: " + ", ".join(parts) + ". Each point appears as soon as its run ends."


def on_pick(chart_key: str) -> None:
    """A chart's selection callback: show the clicked run's model on every page (moves the sidebar)."""
    event = st.session_state.get(chart_key)
    points = (event or {}).get("selection", {}).get("points", [])
    keys = [p.get("customdata") for p in points if isinstance(p.get("customdata"), str)]
    if not keys:
        return
    runs, _ = services().store.scan()
    run = next((r for r in runs if r.config.key() == keys[0]), None)
    if run is not None:
        select_config(run.config)
        st.session_state[PICKED_KEY] = True


def csv_bytes(sw: Sweep) -> bytes:
    """The sweep's runs as CSV, with PCA's validation MSE at each run's K."""
    pca = image_pca(sw.dataset)
    return sweep_csv(sw, {k: pca.mse(k) for k in range(1, MAX_K + 1)} if pca is not None else None).encode()


def fill_label(preset: str) -> str:
    return PRESETS[preset].label
