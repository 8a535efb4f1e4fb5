"""Plotly figures of the lesson pages: the sweep of validation loss against K (or Q1 = Q2, or the number
of parameters) with PCA's curve, and the code of one image as a bar chart."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from ui.charts import add_baseline, use_log_axis

PCA_COLOUR = "#555555"
SELECTED_COLOUR = "#E69F00"


@dataclass
class Series:
    """The points of one recipe in a sweep: x, validation MSE, and per point its run's key and hover text."""

    label: str
    colour: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    hover: list[str] = field(default_factory=list)
    blank: list[bool] = field(default_factory=list)

    def best_line(self) -> tuple[list[float], list[float]]:
        """The lowest validation MSE at each x among the runs that learned (the line through the points)."""
        best: dict[float, float] = {}
        for x, y, b in zip(self.x, self.y, self.blank, strict=True):
            if not b:
                best[x] = min(y, best.get(x, y))
        xs = sorted(best)
        return xs, [best[x] for x in xs]


@dataclass
class Baseline:
    """PCA's validation MSE: a curve (x, y) over the sweep's axis, or one level (a horizontal line)."""

    label: str
    x: list[float] | None
    y: list[float] | None
    level: float | None = None


def sweep_figure(
    series: list[Series],
    baseline: Baseline | None,
    x_title: str,
    ticks: list[int] | None,
    selected: str | None,
    height: int = 460,
) -> go.Figure:
    """Validation MSE (log) against the swept setting or the parameter count (log), one colour per recipe,
    every run a clickable dot (customdata: its config key), PCA's curve grey and dashed, and a ring
    around the model the other pages show (`selected`, a config key)."""
    fig = go.Figure()
    if baseline is not None and baseline.x is not None:
        fig.add_trace(
            go.Scatter(
                x=baseline.x,
                y=baseline.y,
                mode="lines",
                name=baseline.label,
                line={"color": PCA_COLOUR, "width": 2, "dash": "dash"},
                hovertemplate=f"{baseline.label}<br>%{{x:,}}: MSE %{{y:.4f}}<extra></extra>",
            )
        )
    elif baseline is not None and baseline.level is not None:
        add_baseline(fig, baseline.level, baseline.label, log_y=True)
    for s in series:
        colour = s.colour
        lx, ly = s.best_line()
        fig.add_trace(
            go.Scatter(
                x=lx, y=ly, mode="lines", line={"color": colour, "width": 2.5}, hoverinfo="skip", showlegend=False
            )
        )
        fig.add_trace(
            go.Scatter(
                x=s.x,
                y=s.y,
                mode="markers",
                name=s.label,
                marker={
                    "size": 13,
                    "color": colour,
                    "symbol": ["x" if b else "circle" for b in s.blank],
                    "line": {"color": "white", "width": 1.5},
                },
                customdata=s.keys,
                text=s.hover,
                hovertemplate="%{text}<br><b>click to show this model</b><extra></extra>",
                selected={"marker": {"opacity": 1}},
                unselected={"marker": {"opacity": 1}},
            )
        )
    chosen = [(x, y) for s in series for x, y, k in zip(s.x, s.y, s.keys, strict=True) if k == selected]
    if chosen:
        fig.add_trace(
            go.Scatter(
                x=[chosen[0][0]],
                y=[chosen[0][1]],
                mode="markers",
                name="the model shown on the other pages",
                marker={"size": 26, "color": "rgba(0,0,0,0)", "line": {"color": SELECTED_COLOUR, "width": 4}},
                customdata=[selected],
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(type="log", title=x_title)
    if ticks:  # the whole grid from the start, so that the axis stays put while the gaps fill in
        span = [math.log10(min(ticks) / 1.25), math.log10(max(ticks) * 1.25)]
        fig.update_xaxes(tickvals=ticks, ticktext=[str(t) for t in ticks], range=span)
    else:  # plain 1k, 2k, 5k, 10k... instead of plotly's "2  5" minor labels
        values = [m * 10**e for e in range(2, 8) for m in (1, 2, 5)]
        fig.update_xaxes(tickvals=values, ticktext=[_short(v) for v in values])
    fig.update_layout(
        height=height,
        yaxis_title="validation MSE (log scale)",
        margin={"l": 60, "r": 20, "t": 20, "b": 50},
        legend={"orientation": "h", "y": -0.22, "x": 0},
        dragmode=False,
        clickmode="event+select",
    )
    return use_log_axis(fig)


def _short(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 10**6 else f"{n / 1e3:g}k" if n >= 1000 else str(n)


def code_figure(code: np.ndarray, class_mean: np.ndarray | None, class_name: str, height: int = 300) -> go.Figure:
    """The K numbers of one image's code as bars, and the mean code of its class (Eq. 2) as diamonds."""
    k = len(code)
    dims = [f"z{i + 1}" for i in range(k)]
    fig = go.Figure(
        go.Bar(
            x=dims,
            y=code,
            name="this image's code E(x)",
            marker={"color": ["#0072B2" if v >= 0 else "#D55E00" for v in code]},
            hovertemplate="%{x} = %{y:.3f}<extra></extra>",
        )
    )
    if class_mean is not None:
        fig.add_trace(
            go.Scatter(
                x=dims,
                y=class_mean,
                mode="markers",
                name=f"mean code of class {class_name} (μ)",
                marker={"symbol": "diamond", "size": 11, "color": "#111111"},
                hovertemplate="μ: %{x} = %{y:.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        height=height,
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        yaxis_title="value",
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        bargap=0.25 if k > 1 else 0.6,
    )
    return fig
