"""Plotly charts of losses and of image grids (Figure 1, Figure 2), and reading a chart's click.

The charts of the latent plane are in `ui.latent_charts`. Builders return a `go.Figure` and draw
nothing themselves; pages pass them to `st.plotly_chart`.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from convae.figures import pairs_image, png_bytes, tile
from convae.store import StoredRun
from convae.train import History

LOG_TICKS = [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]  # plain numbers on log axes, no "2 5" digits
RUN_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]


class SharedFigure(go.Figure):
    """A figure that many tabs draw as it is (built once, kept in `st.cache_resource`): the dict that
    st.plotly_chart makes of it, a deep copy of every trace (5 to 10 ms for a chart of thousands of
    points), is made once and handed to every tab. Read only once shared: a change would not be sent."""

    def to_dict(self) -> dict:
        made = self.__dict__.get("_shared_dict")
        if made is None:  # two tabs at once may both make it: the same dict
            made = self.__dict__["_shared_dict"] = super().to_dict()
        return made


def shared(fig: go.Figure | None) -> go.Figure | None:
    """`fig` as a SharedFigure, in place (its class only; no copy, no second validation of its data)."""
    if fig is not None and type(fig) is go.Figure:
        fig.__class__ = SharedFigure
    return fig


def use_log_axis(fig: go.Figure) -> go.Figure:
    """A logarithmic y axis labelled with plain numbers."""
    fig.update_yaxes(type="log", tickvals=LOG_TICKS, ticktext=[f"{v:g}" for v in LOG_TICKS])
    return fig


def restarts_title(restarts: int) -> str | None:
    """The loss chart's title when the run was restarted after a collapse (None: no title)."""
    if not restarts:
        return None
    return f"Restarted {restarts}× after a collapse: the curve of the last start (notes above)"


def loss_figure(
    steps: list[int],
    step_losses: list[float],
    epochs: list[dict],
    steps_per_epoch: int,
    log_y: bool = False,
    title: str | None = None,
    baseline: float | None = None,
    k: int | None = None,
) -> go.Figure:
    """Running training loss over steps and validation loss at the end of each epoch; with `baseline`,
    a dashed horizontal line at PCA's validation MSE with the model's K components (`k`)."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=step_losses,
            mode="lines",
            name="training loss (running average, restarts each epoch)",
            line={"color": "#0072B2", "width": 2},
        )
    )
    if epochs:
        fig.add_trace(
            go.Scatter(
                x=[e["epoch"] * steps_per_epoch for e in epochs],
                y=[e["val_loss"] for e in epochs],
                mode="lines+markers",
                name="validation loss (end of epoch)",
                line={"color": "#D55E00", "width": 2, "dash": "dot"},
                marker={"size": 9},
                text=[f"epoch {e['epoch']}" for e in epochs],
                hovertemplate="%{text}<br>validation MSE %{y:.5f}<extra></extra>",
            )
        )
    fig.update_layout(
        # A title sits above the legend row, not on it.
        title={"text": title, "y": 0.98, "yanchor": "top", "font": {"size": 14}} if title else None,
        xaxis_title="training step (batches seen)",
        yaxis_title="MSE loss",
        height=400 if title else 380,
        margin={"l": 60, "r": 20, "t": 70 if title else 40, "b": 50},
        legend={"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"},
        uirevision="loss",
    )
    if baseline is not None:
        label = f"PCA with {k} component{'s' if k != 1 else ''}" if k else "PCA baseline"
        add_baseline(fig, baseline, label, log_y)
    return use_log_axis(fig) if log_y else fig


def add_baseline(fig: go.Figure, mse: float, label: str, log_y: bool) -> None:
    """PCA's validation MSE as a dashed horizontal line across the whole chart, labelled at its right end.
    (The label is placed by hand: on a log axis an annotation's y is log10 of the value, which
    `add_hline`'s own annotation does not take into account.)"""
    fig.add_hline(y=mse, line={"color": "#555555", "width": 2, "dash": "dash"})
    fig.add_annotation(
        x=1,
        xref="paper",
        xanchor="right",
        y=math.log10(mse) if log_y else mse,
        yanchor="bottom",
        text=f"{label}: {mse:.4f}",
        showarrow=False,
        font={"color": "#333333", "size": 13},
    )


def runs_loss_figure(runs: list[StoredRun]) -> go.Figure:
    """The loss curves of several stored runs over epochs (log scale), one colour per run."""
    fig = go.Figure()
    for n, r in enumerate(runs):
        h = r.history
        spe = h.steps[-1] / len(h.epochs) if h.steps else 1
        size = "" if r.config.train_size is None else f", {r.config.train_size:,} images"
        label = f"Q1={r.config.q1} Q2={r.config.q2} K={r.config.k} (b{r.config.batch_size}, lr {r.config.lr:g}{size})"
        colour = RUN_COLOURS[n % len(RUN_COLOURS)]
        fig.add_trace(
            go.Scatter(
                x=np.array(h.steps) / spe,
                y=h.step_losses,
                mode="lines",
                name=f"{label}: training",
                line={"color": colour, "width": 1.5},
                opacity=0.6,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[e["epoch"] for e in h.epochs],
                y=[e["val_loss"] for e in h.epochs],
                mode="lines+markers",
                name=f"{label}: validation",
                line={"color": colour, "width": 2.5, "dash": "dot"},
            )
        )
    fig.update_layout(
        height=420, xaxis_title="epoch", yaxis_title="MSE loss (log scale)", margin={"l": 60, "r": 10, "t": 10, "b": 50}
    )
    return use_log_axis(fig)


def clickable_image_grid(
    images: np.ndarray,
    row_labels: list[str],
    col_labels: list[str],
    hover: list[list[str]],
    selected: tuple[int, int] | None = None,
    height: int = 640,
) -> go.Figure:
    """A grid of images (R, C, 28, 28) drawn as one picture, with a marker over each cell so that a
    click selects the cell (heatmap clicks do not reach Streamlit; scatter clicks do)."""
    r, c = images.shape[:2]
    pad = 2
    cell = 28 + pad
    canvas = np.full((r * cell + pad, c * cell + pad), 110, dtype=np.uint8)  # grey gaps between cells
    for i in range(r):
        for j in range(c):
            cell_img = (np.clip(images[i, j], 0, 1) * 255).round().astype(np.uint8)
            canvas[pad + i * cell : pad + i * cell + 28, pad + j * cell : pad + j * cell + 28] = cell_img
    rgb = np.repeat(canvas[..., None], 3, axis=2)  # white ink on black, as MNIST is shown
    fig = go.Figure(_image_trace(rgb))
    xs = [pad + j * cell + 14 for i in range(r) for j in range(c)]
    ys = [pad + i * cell + 14 for i in range(r) for j in range(c)]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="markers",
            showlegend=False,
            marker={"symbol": "square", "size": 30, "color": "rgba(0,0,0,0.01)"},
            customdata=[[i, j] for i in range(r) for j in range(c)],
            text=[hover[i][j] for i in range(r) for j in range(c)],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    if selected is not None:
        i, j = selected
        x0, y0 = pad + j * cell - 1.5, pad + i * cell - 1.5
        fig.add_shape(type="rect", x0=x0, y0=y0, x1=x0 + 31, y1=y0 + 31, line={"color": "#E69F00", "width": 4})
    fig.update_xaxes(
        tickvals=[pad + j * cell + 14 for j in range(c)],
        ticktext=col_labels,
        side="top",
        showgrid=False,
        zeroline=False,
    )
    fig.update_yaxes(
        tickvals=[pad + i * cell + 14 for i in range(r)], ticktext=row_labels, showgrid=False, zeroline=False
    )
    fig.update_layout(
        height=height, margin={"l": 90, "r": 10, "t": 40, "b": 10}, dragmode=False, clickmode="event+select"
    )
    return fig


def _image_trace(rgb: np.ndarray) -> go.Image:
    """An RGB uint8 picture as a plotly trace, sent as a PNG (a few dozen kB) rather than as `z`, a
    JSON list of every pixel (1.6 MB for Figure 1), which the browser takes about a second to draw.
    Pixel (0, 0) is at x = y = 0 and each pixel is one unit wide, as with `z`."""
    encoded = base64.b64encode(png_bytes(Image.fromarray(rgb))).decode("ascii")
    return go.Image(source=f"data:image/png;base64,{encoded}", hoverinfo="skip")


def pairs_grid_figure(
    originals: np.ndarray, recons: np.ndarray, hover: list[str], height: int = 560, pca: np.ndarray | None = None
) -> go.Figure:
    """Figure 1 as an interactive picture: 10 x 10 (original | reconstruction) pairs, hover per pair;
    with `pca`, triples (original | auto-encoder | PCA)."""
    n = originals.shape[0]
    cols = 10
    sets = [torch.as_tensor(recons)] + ([torch.as_tensor(pca)] if pca is not None else [])
    grid = tile(pairs_image(torch.as_tensor(originals), *sets), nrow=cols, padding=4, pad_value=1.0)
    rgb = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    fig = go.Figure(_image_trace(rgb))
    w, h, pad = 29 * (1 + len(sets)) - 1, 28, 4
    fig.add_trace(
        go.Scatter(
            x=[pad + (i % cols) * (w + pad) + w / 2 for i in range(n)],
            y=[pad + (i // cols) * (h + pad) + h / 2 for i in range(n)],
            mode="markers",
            showlegend=False,
            text=hover,
            hovertemplate="%{text}<extra></extra>",
            marker={"symbol": "square", "size": 34, "color": "rgba(0,0,0,0.01)"},
        )
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 0, "b": 0}, dragmode=False)
    return fig


def clicked_point(event) -> dict | None:
    """The first clicked point of a plotly selection event, or None."""
    try:
        points = event.selection.points
    except AttributeError:
        return None
    return points[0] if points else None


def collapse_attempts(history: History, blank: bool) -> list[tuple[str, list[dict]]]:
    """A run's attempts to show under "Why did it collapse?" (each collapsed one, and the last when the
    run restarted or ended blank), with their first steps' readings; [] for a run that learned at once."""
    attempts = [(f"seed {r['seed']} (collapsed at step {r['step']})", r["vitals"]) for r in history.restarts]
    if history.vitals and (attempts or blank):
        attempts.append((f"seed {history.seed} ({'collapsed' if blank else 'learned'})", history.vitals))
    return attempts


def collapse_figure(attempts: list[tuple[str, list[dict]]]) -> go.Figure:
    """The first steps' health readings (convae.collapse.Vitals) of one or more attempts of a run, in
    three panels: the brightest output pixel, the output sigmoid's mean input, and the gradient that
    reaches the encoder (log scale). A collapsed attempt's lines fall to 0, far below 0, and to ~0."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.08,
        subplot_titles=(
            "brightest output pixel",
            "mean input of the output sigmoid",
            "gradient reaching the encoder (norm)",
        ),
    )
    colours = ["#D55E00", "#E69F00", "#CC79A7", "#999999", "#56B4E9", "#0072B2"]
    for i, (label, readings) in enumerate(attempts):
        colour = "#009E73" if label.endswith("(learned)") else colours[i % len(colours)]
        steps = [r["step"] for r in readings]
        for col, field in enumerate(("brightest", "logit_mean", "encoder_grad"), start=1):
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=[r[field] for r in readings],
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    line={"color": colour, "width": 2},
                    hovertemplate=f"{label}<br>step %{{x}}: %{{y:.3g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(type="log", exponentformat="power", row=1, col=3)
    fig.update_xaxes(title_text="training step")
    fig.update_layout(
        height=330,
        margin={"l": 50, "r": 20, "t": 40, "b": 50},
        legend={"orientation": "h", "y": -0.3, "x": 0},
    )
    return fig
