"""The assignment's figures as PNG grids: Figure 1 (reconstructions) and Figure 2
(decoded mixtures of class means), the comparison with PCA, and the sweep chart. The dashboard's
interactive charts are in ui/."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from convae.analysis import reconstruct
from convae.pca import ImagePCA


def tile(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """Images (N, 1, H, W) as one RGB grid (3, rows * (H + p) + p, cols * (W + p) + p), `nrow` per row,
    `padding` pixels of `pad_value` around each: torchvision.utils.make_grid's layout, without
    importing torchvision (whose import costs seconds at the start of every process)."""
    n, _, h, w = images.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = torch.full((3, rows * (h + padding) + padding, cols * (w + padding) + padding), float(pad_value))
    for i in range(n):
        y, x = (i // cols) * (h + padding) + padding, (i % cols) * (w + padding) + padding
        grid[:, y : y + h, x : x + w] = images[i, 0]
    return grid


def _to_pil(grid: torch.Tensor) -> Image.Image:
    arr = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr)


def pairs_image(originals: torch.Tensor, *recons: torch.Tensor) -> torch.Tensor:
    """Each original beside its reconstruction(s): (N, 28, 28) x m -> (N, 1, 28, 29 m - 1), 1-px grey gaps."""
    gap = torch.full((originals.shape[0], 28, 1), 0.5)
    parts = [originals]
    for r in recons:
        parts += [gap, r.clamp(0, 1)]
    return torch.cat(parts, dim=2).unsqueeze(1)


def figure1_image(originals: torch.Tensor, recons: torch.Tensor, scale: int = 3) -> Image.Image:
    """Figure 1: 100 (original, reconstruction) pairs as 10 rows x 10 columns, white gaps between pairs."""
    if originals.shape[0] != 100:
        raise ValueError(f"Figure 1 shows 100 pairs (10 x 10), got {originals.shape[0]}.")
    grid = tile(pairs_image(originals, recons), nrow=10, padding=4, pad_value=1.0)
    img = _to_pil(grid)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return _with_title(
        img, "Figure 1: the first validation batch, 100 pairs; in each pair: original (left) | reconstruction (right)"
    )


def figure2_image(mixtures: torch.Tensor, class_names: tuple[str, ...], scale: int = 3) -> Image.Image:
    """Figure 2: the 10 x 10 decoded mixtures (row o1, column o2) with class labels on both axes."""
    c = mixtures.shape[0]
    grid = tile(mixtures.reshape(c * c, 1, 28, 28), nrow=c, padding=2, pad_value=1.0)
    img = _to_pil(grid)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    cell = (28 + 2) * scale
    margin = 40 if max(len(n) for n in class_names) <= 2 else 120
    canvas = Image.new("RGB", (img.width + margin, img.height + 40), "white")
    canvas.paste(img, (margin, 40))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=16)
    for i, name in enumerate(class_names):
        centre = 2 * scale + i * cell + 14 * scale
        short = name if len(name) <= 12 else name[:11] + "…"
        draw.text((margin + centre, 20), short, fill="black", font=font, anchor="mm")
        draw.text((margin - 6, 40 + centre), short, fill="black", font=font, anchor="rm")
    return _with_title(
        canvas,
        "Figure 2: cell (row a, column b) = D((mu_a + mu_b) / 2); the diagonal shows the decoded class means D(mu_a)",
    )


def comparison_image(rows: list[tuple[str, torch.Tensor]], scale: int = 3) -> Image.Image:
    """Labelled rows of images (each (N, 28, 28) in [0, 1]), one digit per column: e.g. the originals,
    the auto-encoder's and PCA's reconstructions of the same digits."""
    n = rows[0][1].shape[0]
    stack = torch.cat([images.clamp(0, 1) for _, images in rows]).unsqueeze(1)
    img = _to_pil(tile(stack, nrow=n, padding=2, pad_value=1.0))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    font = ImageFont.load_default(size=16)
    margin = 12 + max(int(ImageDraw.Draw(img).textlength(label, font=font)) for label, _ in rows)
    canvas = Image.new("RGB", (img.width + margin, img.height), "white")
    canvas.paste(img, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (label, _) in enumerate(rows):
        draw.text((margin - 8, (2 + i * 30 + 14) * scale), label, fill="black", font=font, anchor="rm")
    return canvas


def pca_comparison_image(model: torch.nn.Module, images: torch.Tensor, pca: ImagePCA) -> Image.Image:
    """Some uint8 images (N, 28, 28) in three labelled rows: the originals, the auto-encoder's
    reconstructions and PCA's with the model's K components, with both errors on these images."""
    k = model.encoder.K
    originals, recons, err = reconstruct(model, images)
    linear = pca.reconstruct(images, k)
    pca_err = float(((linear - originals) ** 2).mean())
    rows = [("original", originals), ("auto-encoder", recons), (f"PCA, K = {k}", linear)]
    return _with_title(
        comparison_image(rows),
        f"The auto-encoder (MSE {float(err.mean()):.4f}) against PCA with {k} components (MSE {pca_err:.4f})",
    )


def _with_title(img: Image.Image, title: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 30), "white")
    out.paste(img, (0, 30))
    ImageDraw.Draw(out).text((8, 15), title, fill="black", font=ImageFont.load_default(size=15), anchor="lm")
    return out


def save_png(img: Image.Image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


SERIES_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def sweep_image(
    series: list[tuple[str, list[float], list[float]]],
    baseline: tuple[str, list[float], list[float]] | None,
    x_label: str,
    title: str,
    size: tuple[int, int] = (900, 560),
) -> Image.Image:
    """A log-log line chart (PIL only): one coloured line with dots per series (label, xs, ys), and a
    grey baseline (PCA's curve); for `scripts/sweep.py`, which writes sweep.png."""
    w, h = size
    left, right, top, bottom = 80, 20, 50, 70 + 22 * (len(series) + (baseline is not None))
    img = Image.new("RGB", (w, h + bottom - 70), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=14)
    xs = [x for _, sx, _ in series + ([baseline] if baseline else []) for x in sx]
    ys = [y for _, _, sy in series + ([baseline] if baseline else []) for y in sy if y > 0]
    if not xs or not ys:
        raise ValueError("sweep_image needs at least one point.")
    lx0, lx1 = math.log10(min(xs)) - 0.05, math.log10(max(xs)) + 0.05
    ly0, ly1 = math.log10(min(ys)) - 0.05, math.log10(max(ys)) + 0.05
    plot_w, plot_h = w - left - right, h - top - 70

    def at(x: float, y: float) -> tuple[float, float]:
        u = left + (math.log10(x) - lx0) / (lx1 - lx0) * plot_w
        v = top + (ly1 - math.log10(max(y, 1e-12))) / (ly1 - ly0) * plot_h
        return u, v

    draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
    # The x ticks are the settings trained (K or Q values) when there are few of them: easier to read than 1-2-5.
    trained = {x for _, sx, _ in series for x in sx}
    x_ticks = sorted(trained) if len(trained) <= 16 else _log_ticks(lx0, lx1)
    for tick in x_ticks:
        u, _ = at(tick, 10**ly0)
        draw.line([u, top + plot_h, u, top + plot_h + 5], fill="black")
        draw.text((u, top + plot_h + 8), f"{tick:g}", fill="black", font=font, anchor="mt")
    for tick in _log_ticks(ly0, ly1):
        _, v = at(10**lx0, tick)
        draw.line([left - 5, v, left + plot_w, v], fill="#dddddd")
        draw.text((left - 8, v), f"{tick:g}", fill="black", font=font, anchor="rm")
    draw.text((left + plot_w / 2, top + plot_h + 30), x_label, fill="black", font=font, anchor="mt")
    draw.text((left, top - 30), title, fill="black", font=ImageFont.load_default(size=16), anchor="lm")
    draw.text((left - 70, top - 10), "validation MSE (log)", fill="black", font=font, anchor="lm")
    legend_y = top + plot_h + 56
    if baseline is not None:
        label, bx, by = baseline
        draw.line([at(x, y) for x, y in zip(bx, by, strict=True)], fill="#888888", width=2)
        draw.line([left, legend_y + 7, left + 30, legend_y + 7], fill="#888888", width=2)
        draw.text((left + 40, legend_y + 7), label, fill="black", font=font, anchor="lm")
        legend_y += 22
    for n, (label, sx, sy) in enumerate(series):
        colour = SERIES_COLOURS[n % len(SERIES_COLOURS)]
        pts = [at(x, y) for x, y in sorted(zip(sx, sy, strict=True))]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=3)
        for u, v in pts:
            draw.ellipse([u - 5, v - 5, u + 5, v + 5], fill=colour, outline="black")
        draw.line([left, legend_y + 7, left + 30, legend_y + 7], fill=colour, width=3)
        draw.text((left + 40, legend_y + 7), label, fill="black", font=font, anchor="lm")
        legend_y += 22
    return img


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 times powers of ten between 10**lo and 10**hi; finer steps (1 to 9, then halves) when that
    gives fewer than 3 ticks (a narrow range, such as the channel sweep's MSEs)."""
    for mantissas in ((1, 2, 5), range(1, 10), [m / 2 for m in range(2, 20)]):
        ticks = [m * 10.0**e for e in range(math.floor(lo), math.ceil(hi) + 1) for m in mantissas]
        ticks = [float(f"{t:.6g}") for t in ticks if lo <= math.log10(t) <= hi]
        if len(ticks) >= 3:
            break
    return ticks
