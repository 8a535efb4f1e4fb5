"""Figures: the assignment's PNG grids (torchvision.utils) and the dashboard's plotly charts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

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


# ------------------------------------------------------------------------------- PNG grids


def _to_pil(grid: torch.Tensor) -> Image.Image:
    arr = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow: fixed-size bitmap font
        return ImageFont.load_default()


def pairs_image(originals: torch.Tensor, recons: torch.Tensor) -> torch.Tensor:
    """Each original beside its reconstruction: (N, 28, 28) x 2 -> (N, 1, 28, 57), a 1-px grey gap."""
    gap = torch.full((originals.shape[0], 28, 1), 0.5)
    return torch.cat([originals, gap, recons], dim=2).unsqueeze(1)


def figure1_image(originals: torch.Tensor, recons: torch.Tensor, scale: int = 3) -> Image.Image:
    """Figure 1: 100 (original, reconstruction) pairs as 10 rows x 10 columns, white gaps between pairs."""
    if originals.shape[0] != 100:
        raise ValueError(f"Figure 1 shows 100 pairs (10 x 10), got {originals.shape[0]}.")
    grid = make_grid(pairs_image(originals, recons), nrow=10, padding=4, pad_value=1.0)
    img = _to_pil(grid)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return _with_title(
        img, "Figure 1: the first validation batch, 100 pairs; in each pair: original (left) | reconstruction (right)"
    )


def figure2_image(mixtures: torch.Tensor, class_names: tuple[str, ...], scale: int = 3) -> Image.Image:
    """Figure 2: the 10 x 10 decoded mixtures (row o1, column o2) with class labels on both axes."""
    c = mixtures.shape[0]
    grid = make_grid(mixtures.reshape(c * c, 1, 28, 28), nrow=c, padding=2, pad_value=1.0)
    img = _to_pil(grid)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    cell = (28 + 2) * scale
    margin = 40 if max(len(n) for n in class_names) <= 2 else 120
    canvas = Image.new("RGB", (img.width + margin, img.height + 40), "white")
    canvas.paste(img, (margin, 40))
    draw = ImageDraw.Draw(canvas)
    font = _font(16)
    for i, name in enumerate(class_names):
        centre = 2 * scale + i * cell + 14 * scale
        short = name if len(name) <= 12 else name[:11] + "…"
        draw.text((margin + centre, 20), short, fill="black", font=font, anchor="mm")
        draw.text((margin - 6, 40 + centre), short, fill="black", font=font, anchor="rm")
    return _with_title(
        canvas,
        "Figure 2: cell (row a, column b) = D((mu_a + mu_b) / 2); the diagonal shows the decoded class means D(mu_a)",
    )


def _with_title(img: Image.Image, title: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 30), "white")
    out.paste(img, (0, 30))
    ImageDraw.Draw(out).text((8, 15), title, fill="black", font=_font(15), anchor="lm")
    return out


def save_png(img: Image.Image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def png_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- plotly charts

LOG_TICKS = [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]  # plain numbers on log axes, no "2 5" digits


def use_log_axis(fig: go.Figure) -> go.Figure:
    """A logarithmic y axis labelled with plain numbers."""
    fig.update_yaxes(type="log", tickvals=LOG_TICKS, ticktext=[f"{v:g}" for v in LOG_TICKS])
    return fig


def loss_figure(
    steps: list[int],
    step_losses: list[float],
    epochs: list[dict],
    steps_per_epoch: int,
    log_y: bool = False,
    title: str | None = None,
) -> go.Figure:
    """Running training loss over steps and validation loss at the end of each epoch."""
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
        title=title,
        xaxis_title="training step (batches seen)",
        yaxis_title="MSE loss",
        height=380,
        margin={"l": 60, "r": 20, "t": 40, "b": 50},
        legend={"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"},
        uirevision="loss",
    )
    return use_log_axis(fig) if log_y else fig


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


def _class_rows(coords: np.ndarray, labels: np.ndarray, c: int, idx: np.ndarray) -> np.ndarray:
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


def _class_dots(
    coords: np.ndarray, labels: np.ndarray, c: int, idx: np.ndarray, name: str, opacity: float, **extra
) -> go.Scattergl:
    """The dots `idx` of class c in the latent plane, in the class's colour (one legend entry)."""
    return go.Scattergl(
        x=coords[idx, 0],
        y=_class_rows(coords, labels, c, idx),
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
                labels,
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
        fig.add_trace(_class_dots(coords, labels, c, idx, name, opacity=0.35, hoverinfo="skip"))
    add_class_means(fig, means_2d, class_names)
    return _latent_layout(fig, class_names, coords.shape[1] == 1, axis_titles, height, "class")


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
    import base64

    encoded = base64.b64encode(png_bytes(Image.fromarray(rgb))).decode("ascii")
    return go.Image(source=f"data:image/png;base64,{encoded}", hoverinfo="skip")


def pairs_grid_figure(originals: np.ndarray, recons: np.ndarray, hover: list[str], height: int = 560) -> go.Figure:
    """Figure 1 as an interactive picture: 10 x 10 (original | reconstruction) pairs, hover per pair."""
    n = originals.shape[0]
    cols = 10
    grid = make_grid(
        pairs_image(torch.as_tensor(originals), torch.as_tensor(recons)), nrow=cols, padding=4, pad_value=1.0
    )
    rgb = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    fig = go.Figure(_image_trace(rgb))
    w, h, pad = 57, 28, 4
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
