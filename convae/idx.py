"""The IDX files MNIST and Fashion-MNIST come in: checks of their headers, and reading them.

Read here directly (a 16- or 8-byte big-endian header, then uint8 values) rather than through
torchvision's dataset classes, whose import alone takes seconds at the start of every process;
torchvision is still what downloads the files (convae.data).
"""

from __future__ import annotations

from pathlib import Path

import torch

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def idx_problem(path: Path, is_images: bool) -> str | None:
    """Why an IDX file is unusable (missing, wrong magic, size that disagrees with its header)."""
    if not path.is_file():
        return f"{path} is missing"
    size = path.stat().st_size
    head_len = 16 if is_images else 8
    with open(path, "rb") as f:
        head = f.read(head_len)
    if len(head) < head_len:
        return f"{path} is truncated ({size} bytes, shorter than its header)"
    magic = int.from_bytes(head[0:4], "big")
    count = int.from_bytes(head[4:8], "big")
    if is_images:
        rows, cols = int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:16], "big")
        if magic != IMAGE_MAGIC or (rows, cols) != (28, 28):
            return f"{path} is not an IDX file of 28x28 images (magic {magic}, {rows}x{cols})"
        expected = 16 + count * 28 * 28
    else:
        if magic != LABEL_MAGIC:
            return f"{path} is not an IDX label file (magic {magic})"
        expected = 8 + count
    if size != expected:
        return (
            f"{path} is truncated or padded: its header announces {count} items, so {expected} bytes, but it has {size}"
        )
    return None


def idx_count(path: Path) -> int:
    with open(path, "rb") as f:
        return int.from_bytes(f.read(8)[4:8], "big")


def read_idx(path: Path, is_images: bool) -> torch.Tensor:
    """The values of an IDX file as uint8: images (N, 28, 28) or labels (N,). ValueError if unusable."""
    problem = idx_problem(path, is_images)
    if problem:
        raise ValueError(problem)
    data = bytearray(path.read_bytes())  # writable, so that the tensor owns memory it may change
    values = torch.frombuffer(data, dtype=torch.uint8)[16 if is_images else 8 :]
    return values.view(-1, 28, 28) if is_images else values
