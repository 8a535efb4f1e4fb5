"""The assignment's figures as PNG grids (torchvision.utils): Figure 1 (reconstructions) and Figure 2
(decoded mixtures of class means). The dashboard's interactive charts are in ui/."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid


def _to_pil(grid: torch.Tensor) -> Image.Image:
    arr = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr)


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
