"""The class board's data, figures and clicks: every stored run (one scan per change of the checkpoint
files, shared by all sessions), the table, validation MSE against parameters with the Pareto front and
the spread of seeds, guesses against results, and a clicked row or point shown on every page.

Students' names reach the table as plain cells and the charts' hovers escaped (html.escape), never as
Markdown or HTML.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from convae import board as core
from convae.board import BoardRow, Guess, Spread
from convae.data import DATASETS
from convae.store import StoredRun
from ui import results, sweep
from ui.charts import RUN_COLOURS
from ui.identity import short
from ui.services import services
from ui.state import epochs_text, select_config, selected_config

REFRESH_S = 1.0  # how often an open board looks for new runs (a directory listing: cheap)
TABLE_KEY = "board_table"
KEYS_KEY = "board_keys"  # the run keys of the table's rows as this session last drew them
PICKED_KEY = "board_picked"
COLUMN_CONFIG = {
    "name": st.column_config.TextColumn(width="medium"),
    "validation MSE": st.column_config.NumberColumn(format="%.5f"),
    "guess": st.column_config.NumberColumn(format="%.4f"),
    "minutes": st.column_config.NumberColumn(format="%.1f"),
    "parameters": st.column_config.NumberColumn(format="localized"),
    "Pareto front": st.column_config.CheckboxColumn(help="No other run of its data set is smaller and better."),
}


@dataclass(frozen=True)
class BoardData:
    """The board as of one state of the checkpoint files."""

    stamp: tuple
    runs: list[StoredRun]
    rows: list[BoardRow]
    front: set[str]
    spreads: list[Spread]
    guesses: list[Guess]
    problems: list[str]


@dataclass
class _Latest:
    lock: threading.Lock = field(default_factory=threading.Lock)
    data: BoardData | None = None


@st.cache_resource
def _latest() -> _Latest:
    return _Latest()


def stamp() -> tuple:
    """What changes when a checkpoint is added, replaced or removed (see convae.board.folder_stamp)."""
    store = services().store
    return core.folder_stamp([store.root, *([store.shipped] if store.shipped else [])])


def board_data() -> BoardData:
    """The board, scanned again only when the checkpoint files changed (one scan for every session)."""
    now, latest = stamp(), _latest()
    with latest.lock:
        if latest.data is None or latest.data.stamp != now:
            runs, problems = services().store.scan()
            rows = core.rows(runs)
            latest.data = BoardData(
                now, runs, rows, core.front_keys(rows), core.spreads(rows), core.guesses(rows), problems
            )
        return latest.data


def watch(drawn: tuple) -> None:
    """While the page is open: look for new runs every REFRESH_S seconds; redraw the page when there are."""

    @st.fragment(run_every=REFRESH_S)
    def poll() -> None:
        if stamp() != drawn:
            st.rerun(scope="app")

    poll()


def table_frame(data: BoardData) -> pd.DataFrame:
    """The table as drawn (names as plain cells); remembers its rows' runs for a click."""
    st.session_state[KEYS_KEY] = [r.key for r in data.rows]
    return pd.DataFrame(core.table(data.rows, data.front), columns=core.COLUMNS)


def named_runs_table(runs: list[StoredRun]) -> pd.DataFrame:
    """The Compare page's table (ui.results.runs_table) with who trained each run first, as plain cells."""
    frame = results.runs_table(runs)
    frame.insert(0, "name", [r.owner or "" for r in runs])
    return frame


def csv_bytes(data: BoardData) -> bytes:
    return core.csv_text(data.rows, data.front).encode()


def _show(key: str) -> None:
    """Move the sidebar to the stored run `key` (callbacks only: before the sidebar is drawn)."""
    run = next((r for r in board_data().runs if r.config.key() == key), None)
    if run is not None:
        select_config(run.config)
        st.session_state[PICKED_KEY] = f"Showing {short(run.config)} on every page."


def on_row() -> None:
    """The table's selection callback: show the clicked row's model on every page."""
    event = st.session_state.get(TABLE_KEY) or {}
    picked = event.get("selection", {}).get("rows", [])
    keys = st.session_state.get(KEYS_KEY, [])
    if picked and 0 <= picked[0] < len(keys):
        _show(keys[picked[0]])


def on_point(chart_key: str) -> Callable[[], None]:
    """A chart's selection callback: the sweep page's point click (the point's run on every page)."""

    def pick() -> None:
        sweep.on_pick(chart_key)
        if st.session_state.pop(sweep.PICKED_KEY, False):
            st.session_state[PICKED_KEY] = f"Showing {short(selected_config())} on every page."

    return pick


def datasets(data: BoardData) -> list[str]:
    return sorted({r.config.dataset for r in data.rows})


def dataset_title(name: str) -> str:
    return DATASETS[name].title if name in DATASETS else name


def _who(name: str | None) -> str:
    return html.escape(name) if name else "no name"


def _hover(r: BoardRow) -> str:
    c = r.config
    return (
        f"{_who(r.name)}<br>Q1={c.q1}, Q2={c.q2}, K={c.k} · {epochs_text(r.epochs)} · seed {c.seed}<br>"
        f"{r.parameters:,} parameters · validation MSE {r.val_loss:.5f}"
    )


def scatter(data: BoardData, dataset: str) -> go.Figure:
    """Validation MSE against parameters (log x) for one data set: the Pareto front joined and ringed,
    the spread of seeds of one configuration as a bar from its best to its worst seed (dot: the mean)."""
    rows = [r for r in data.rows if r.config.dataset == dataset]
    fig = go.Figure()
    front = sorted((r for r in rows if r.key in data.front), key=lambda r: r.parameters)
    fig.add_scatter(
        x=[r.parameters for r in front],
        y=[r.val_loss for r in front],
        mode="lines",
        line={"shape": "hv", "color": RUN_COLOURS[1], "width": 2},
        name="Pareto front",
        hoverinfo="skip",
    )
    for on_front in (False, True):
        part = [r for r in rows if (r.key in data.front) == on_front]
        fig.add_scatter(
            x=[r.parameters for r in part],
            y=[r.val_loss for r in part],
            mode="markers",
            marker={"size": 12 if on_front else 8, "color": RUN_COLOURS[1 if on_front else 0], "opacity": 0.85},
            name="on the front (no run is smaller and better)" if on_front else "a run",
            customdata=[r.key for r in part],
            hovertext=[_hover(r) for r in part],
            hoverinfo="text",
        )
    mine = [s for s in data.spreads if s.config.dataset == dataset]
    if mine:
        fig.add_scatter(
            x=[s.parameters for s in mine],
            y=[s.mean for s in mine],
            error_y={
                "type": "data",
                "array": [s.high - s.mean for s in mine],
                "arrayminus": [s.mean - s.low for s in mine],
                "color": "#555",
                "thickness": 1.5,
            },
            mode="markers",
            marker={"symbol": "line-ew-open", "size": 14, "color": "#555"},
            name="seeds of one configuration: best to worst (mean)",
            hovertext=[_spread_hover(s) for s in mine],
            hoverinfo="text",
        )
    chosen = selected_config().key()
    ringed = [r for r in rows if r.key == chosen]
    fig.add_scatter(
        x=[r.parameters for r in ringed],
        y=[r.val_loss for r in ringed],
        mode="markers",
        marker={"size": 20, "color": "rgba(0,0,0,0)", "line": {"color": "black", "width": 2}},
        name="the model shown on the pages",
        hoverinfo="skip",
    )
    fig.update_layout(
        height=460,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": -0.22},
        xaxis={"type": "log", "title": "number of parameters (log scale)"},
        yaxis={"title": "validation MSE (lower is better)"},
    )
    return fig


def _spread_hover(s: Spread) -> str:
    c = s.config
    seeds = ", ".join(str(x) for x in s.seeds[:8]) + (" …" if len(s.seeds) > 8 else "")
    return (
        f"Q1={c.q1}, Q2={c.q2}, K={c.k} · {c.epochs} epochs · {len(s.seeds)} seeds ({seeds})<br>"
        f"mean {s.mean:.5f} ± {s.sd:.5f} (sd) · best {s.low:.5f} · worst {s.high:.5f}"
    )


def spread_lines(data: BoardData, dataset: str) -> list[str]:
    """The spreads in words, largest first (numbers only: no names)."""
    return [
        f"{short(s.config).split(' (')[0]}, {s.config.epochs} epochs: {len(s.seeds)} seeds from {s.low:.4f} to "
        f"{s.high:.4f} (mean {s.mean:.4f} ± {s.sd:.4f})"
        for s in data.spreads
        if s.config.dataset == dataset
    ]


def guesses_figure(data: BoardData, dataset: str) -> go.Figure | None:
    """Each guess against its run's result, with the line where they are equal; None without guesses."""
    points = [g for g in data.guesses if g.dataset == dataset]
    if not points:
        return None
    low = min(min(g.guess for g in points), min(g.result for g in points))
    high = max(max(g.guess for g in points), max(g.result for g in points))
    fig = go.Figure()
    fig.add_scatter(
        x=[low, high], y=[low, high], mode="lines", line={"dash": "dash", "color": "#999"}, name="guess = result"
    )
    fig.add_scatter(
        x=[g.guess for g in points],
        y=[g.result for g in points],
        mode="markers",
        marker={"size": 9, "color": RUN_COLOURS[2]},
        name="a guess",
        customdata=[g.key for g in points],
        hovertext=[f"{_who(g.name)}<br>guessed {g.guess:.4f} · reached {g.result:.4f}" for g in points],
        hoverinfo="text",
    )
    fig.update_layout(
        height=340,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        showlegend=False,
        xaxis={"title": "guess before training"},
        yaxis={"title": "validation MSE reached"},
    )
    return fig
