"""Images for `st.image`: enlarged uint8 pictures, strips and grids of them, and the drawing canvas's ink."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


def image_to_uint8(img: torch.Tensor | np.ndarray, scale: int = 8) -> np.ndarray:
    """A (28, 28) image in [0, 1] as an enlarged uint8 array for st.image (nearest neighbour)."""
    arr = img.numpy() if isinstance(img, torch.Tensor) else img
    arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    return arr.repeat(scale, axis=0).repeat(scale, axis=1)  # nearest neighbour, as np.kron with ones, faster


def pixels(img: torch.Tensor) -> torch.Tensor:
    """A uint8 image (28, 28) as floats in [0, 1]."""
    return img.float() / 255


def image_row(images: Iterable[torch.Tensor | np.ndarray], scale: int) -> np.ndarray:
    """Images in [0, 1] side by side, each enlarged `scale` times."""
    return np.concatenate([image_to_uint8(img, scale) for img in images], axis=1)


def image_grid(rows: Iterable[Iterable[torch.Tensor | np.ndarray]], scale: int) -> np.ndarray:
    """Rows of images in [0, 1], one above the other."""
    return np.concatenate([image_row(row, scale) for row in rows], axis=0)


def drawn_ink(canvas_result: object) -> torch.Tensor | None:
    """The ink of the drawing canvas's RGBA pixels (H, W, 4), in [0, 1]; None until something is drawn."""
    try:
        image_data = canvas_result.image_data
    except Exception:  # no drawing has reached the server yet
        return None
    if image_data is None or not np.asarray(image_data).size:
        return None
    rgba = np.asarray(image_data, dtype=np.float32)
    ink = torch.from_numpy(rgba[..., :3].mean(axis=2) / 255 * (rgba[..., 3] / 255))
    return ink if float(ink.max()) >= 0.1 else None


# Colour maps as a few anchor colours, interpolated: "magma"-like for activations (black = nothing), and
# blue-white-red for signed weights (white = 0).
_SEQUENTIAL = np.array([[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]], dtype=np.float32)
_DIVERGING = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]], np.float32)


def colourise(values: np.ndarray, diverging: bool = False) -> np.ndarray:
    """Values in [0, 1] (or [-1, 1] with `diverging`) as RGB uint8 through a colour map."""
    anchors = _DIVERGING if diverging else _SEQUENTIAL
    t = (np.clip(values, -1, 1) + 1) / 2 if diverging else np.clip(values, 0, 1)
    pos = t * (len(anchors) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(anchors) - 2)
    frac = (pos - lo)[..., None]
    return (anchors[lo] * (1 - frac) + anchors[lo + 1] * frac).round().astype(np.uint8)


def tiled_maps(
    maps: torch.Tensor, tile: int = 56, cols: int = 8, diverging: bool = False, per_map: bool = False
) -> np.ndarray:
    """Maps (C, h, w) as one RGB picture: a grid of `cols` columns of tiles about `tile` pixels wide,
    4-px grey gaps. One colour scale for all maps (the largest value, or the largest magnitude with
    `diverging`), so that a dark tile is a map that did not respond; or with `per_map`, one per map."""
    arr = maps.detach().float().numpy()
    c, h, w = arr.shape
    mag = np.abs(arr) if diverging else arr
    top = mag.reshape(c, -1).max(axis=1)[:, None, None] if per_map else np.full((1, 1, 1), mag.max())
    scaled = np.divide(arr, top, out=np.zeros_like(arr), where=top > 0)
    scale = max(1, tile // max(h, w))
    cols = min(cols, c)
    rows = -(-c // cols)
    gap = 4
    th, tw = h * scale, w * scale
    out = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), 190, dtype=np.uint8)
    for i in range(c):
        r, q = divmod(i, cols)
        big = np.kron(scaled[i], np.ones((scale, scale), dtype=np.float32))
        out[r * (th + gap) : r * (th + gap) + th, q * (tw + gap) : q * (tw + gap) + tw] = colourise(big, diverging)
    return out
