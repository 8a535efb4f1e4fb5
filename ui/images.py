"""Images for `st.image`: enlarged uint8 pictures, strips and grids of them, and the drawing canvas's ink."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


def image_to_uint8(img: torch.Tensor | np.ndarray, scale: int = 8) -> np.ndarray:
    """A (28, 28) image in [0, 1] as an enlarged uint8 array for st.image (nearest neighbour)."""
    arr = img.numpy() if isinstance(img, torch.Tensor) else img
    arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    return np.kron(arr, np.ones((scale, scale), dtype=np.uint8))


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
