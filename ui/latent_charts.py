"""Plotly charts of the latent plane: the scatter of every validation code, and the lighter class map
that the Latent walk and Draw pages mark points on.

A 1-D latent code gets one row per class (its y axis lists the classes); a 2-D code is drawn as it
is; a larger one through its 2-D PCA (`convae.analysis.pca_2d`).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

# One colour per class: the familiar "tab10" palette, ten hues that stay apart.
CLASS_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def _blocks(img: np.ndarray) -> str:
    """A 14 x 7 text picture of a 28 x 28 image (half-block characters), for hover labels."""
    small = img.reshape(14, 2, 14, 2).mean(axis=(1, 3)) > 0.35
    rows = []
    for r in range(0, 14, 2):
        top, bottom = small[r], small[r + 1]
        rows.append(
            "".join("█" if t and b else "▀" if t else "▄" if b else " " for t, b in zip(top, bottom, strict=True))
        )
    return "<br>".join(rows)


def _class_rows(coords: np.ndarray, c: int, idx: np.ndarray) -> np.ndarray:
    """y of the dots of class c: the second coordinate, or for 1-D codes the class's own row (jittered)."""
    if coords.shape[1] > 1:
        return coords[idx, 1]
    return np.random.default_rng(c).uniform(-0.4, 0.4, len(idx)) + c


def add_class_means(fig: go.Figure, means_2d: np.ndarray, class_names: tuple[str, ...], prefix: str = "") -> None:
    """The class means as large stars with their names. WebGL like the dots: plotly draws its WebGL
    layer over SVG traces, which would bury the stars."""
    y = means_2d[:, 1] if means_2d.shape[1] > 1 else np.arange(len(class_names), dtype=float)
    fig.add_trace(
        go.Scattergl(
            x=means_2d[:, 0],
            y=y,
            mode="markers+text",
            name="class means μ",
            text=[f"{prefix}{n}" for n in class_names],
            textposition="top center",
            textfont={"size": 15, "color": "#111111", "weight": "bold"},
            marker={
                "symbol": "star",
                "size": 22,
                "color": list(CLASS_COLOURS[: len(class_names)]),
                "line": {"color": "#111111", "width": 2},
            },
            unselected={"marker": {"opacity": 1}, "textfont": {"color": "#111111"}},
            hovertemplate="class mean %{text}<extra></extra>",
        )
    )


def _latent_layout(
    fig: go.Figure,
    class_names: tuple[str, ...],
    one_d: bool,
    axis_titles: tuple[str, str],
    height: int,
    legend_title: str,
) -> go.Figure:
    fig.update_layout(
        height=height,
        xaxis_title=axis_titles[0],
        yaxis_title=axis_titles[1],
        legend={"title": legend_title, "itemsizing": "constant"},
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
    )
    if one_d:
        fig.update_yaxes(tickvals=list(range(len(class_names))), ticktext=list(class_names))
    return fig


def _class_dots(coords: np.ndarray, c: int, idx: np.ndarray, name: str, opacity: float, **extra) -> go.Scattergl:
    """The dots `idx` of class c in the latent plane, in the class's colour (one legend entry)."""
    return go.Scattergl(
        x=coords[idx, 0],
        y=_class_rows(coords, c, idx),
        mode="markers",
        name=name,
        marker={"size": 4, "color": CLASS_COLOURS[c], "opacity": opacity},
        **extra,
    )


def latent_figure(
    coords: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray,
    class_names: tuple[str, ...],
    means_2d: np.ndarray,
    axis_titles: tuple[str, str],
    height: int = 620,
) -> go.Figure:
    """The latent scatter: one trace per class (the legend toggles classes), class means as stars,
    hover showing the class and a small text picture of the digit. 1-D codes get a row per class."""
    fig = go.Figure()
    for c, name in enumerate(class_names):
        idx = np.flatnonzero(labels == c)
        pics = [_blocks(images[i]) for i in idx]
        fig.add_trace(
            _class_dots(
                coords,
                c,
                idx,
                name,
                opacity=0.55,
                # A click selects a dot: mark it, and keep the others as they were (plotly dims them).
                selected={"marker": {"size": 14, "color": "#111111", "opacity": 1}},
                unselected={"marker": {"opacity": 0.55}},
                customdata=np.stack([idx, np.array(pics, dtype=object)], axis=1) if len(idx) else None,
                hovertemplate=f"<b>{name}</b> · image #%{{customdata[0]}}<br>%{{customdata[1]}}<extra></extra>",
            )
        )
    add_class_means(fig, means_2d, class_names, prefix="μ ")
    fig.update_layout(
        hoverlabel={"font": {"family": "DejaVu Sans Mono, Menlo, Consolas, monospace", "size": 11}},
        uirevision="latent",
    )
    return _latent_layout(fig, class_names, coords.shape[1] == 1, axis_titles, height, "class (click to hide)")


def class_map(
    coords: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    means_2d: np.ndarray,
    axis_titles: tuple[str, str],
    height: int = 480,
    sample: int = 3000,
) -> go.Figure:
    """A light map of the latent plane to mark points on: a sample of the codes, faint and without
    hover, and the class means as stars."""
    fig = go.Figure()
    chosen = np.random.default_rng(0).choice(len(coords), size=min(sample, len(coords)), replace=False)
    for c, name in enumerate(class_names):
        idx = chosen[labels[chosen] == c]
        fig.add_trace(_class_dots(coords, c, idx, name, opacity=0.35, hoverinfo="skip"))
    add_class_means(fig, means_2d, class_names)
    return _latent_layout(fig, class_names, coords.shape[1] == 1, axis_titles, height, "class")


def walk_figure(
    coords: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    means_2d: np.ndarray,
    axis_titles: tuple[str, str],
    lattice: tuple[np.ndarray, np.ndarray],
    picked: tuple[float, float] | None,
) -> go.Figure:
    """The class map with an invisible lattice of click targets (`lattice`: the x and y of its
    points) and a red cross on the decoded point, if one was picked."""
    fig = class_map(coords, labels, class_names, means_2d, axis_titles, height=560)
    # An invisible lattice of clickable points: plotly reports clicks on points, not on empty space.
    # WebGL: 1,681 SVG markers made the page's switch about 0.5 s slower in Chromium, with no gain in clicks.
    fig.add_trace(
        go.Scattergl(
            x=lattice[0],
            y=lattice[1],
            mode="markers",
            name="click target",
            showlegend=False,
            marker={"size": 14, "color": "rgba(0,0,0,0)"},  # invisible; plotly still reports clicks on it
            hovertemplate="decode (%{x:.2f}, %{y:.2f})<extra></extra>",
        )
    )
    if picked is not None:
        fig.add_trace(
            go.Scattergl(
                x=[picked[0]],
                y=[picked[1]],
                mode="markers",
                name="decoded point",
                marker={"symbol": "x", "size": 18, "color": "red"},
            )
        )
    fig.update_layout(dragmode=False)
    return fig


def drawing_figure(
    coords: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    means_2d: np.ndarray,
    axis_titles: tuple[str, str],
    drawing: tuple[float, float],
) -> go.Figure:
    """The class map with a drawing's code marked as "your drawing"."""
    fig = class_map(coords, labels, class_names, means_2d, axis_titles, height=430)
    fig.add_trace(
        go.Scattergl(
            x=[drawing[0]],
            y=[drawing[1]],
            mode="markers+text",
            name="your drawing",
            text=["your drawing"],
            textposition="top center",
            marker={"symbol": "x", "size": 20, "color": "red", "line": {"color": "white", "width": 2}},
        )
    )
    return fig


def image_plane_figure(
    coords: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    means_2d: np.ndarray,
    axis_titles: tuple[str, str],
    height: int,
    dense: bool,
) -> go.Figure:
    """The validation images on PCA's plane (the linear baseline), drawn as the class map; `dense`: every
    image, as opaque as the learned plane's dots, for a side-by-side comparison."""
    fig = class_map(coords, labels, class_names, means_2d, axis_titles, height, sample=len(coords) if dense else 3000)
    if dense:
        fig.update_traces(marker_opacity=0.55, selector={"mode": "markers"})
    return fig


def formation_figure(
    coords: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    limits: list[tuple[float, float]],
    axis_titles: tuple[str, str],
    title: str,
    height: int = 540,
) -> go.Figure:
    """One snapshot of the latent space as it formed: the snapshot images' codes (N, 1 or 2) by class, with
    their class means as stars, in axes fixed for every snapshot (`limits`), so that from one snapshot to the
    next the dots move and the axes stay."""
    fig = go.Figure()
    for c, name in enumerate(class_names):
        idx = np.flatnonzero(labels == c)
        fig.add_trace(_class_dots(coords, c, idx, name, opacity=0.6, hovertemplate=f"{name}<extra></extra>"))
    means = np.stack(
        [
            coords[labels == c].mean(axis=0) if (labels == c).any() else np.full(coords.shape[1], np.nan)
            for c in range(len(class_names))
        ]
    )
    add_class_means(fig, means, class_names, prefix="μ ")
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 16}}, uirevision="formation")
    fig.update_xaxes(range=list(limits[0]), autorange=False)
    y_range = list(limits[1]) if coords.shape[1] > 1 else [-0.6, len(class_names) - 0.4]
    fig.update_yaxes(range=y_range, autorange=False)
    _latent_layout(fig, class_names, coords.shape[1] == 1, axis_titles, height, "class (click to hide)")
    fig.update_layout(margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return fig
