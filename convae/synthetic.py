"""Small generated data sets in the MNIST file format, for tests, demos and load tests.

The files are valid IDX files that torchvision reads like the real ones, so everything downstream
(loading, training, the dashboard) runs on them without the download; only the SHA-256 differs
from the published data set, so `ensure_data(verify=True)` would not accept them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from convae.data import dataset_info


def write_idx(raw_dir: Path, prefix: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write images (N, 28, 28) uint8 and labels (N,) as MNIST IDX files PREFIX-images/labels-idx*-ubyte."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    n = images.shape[0]
    with open(raw_dir / f"{prefix}-images-idx3-ubyte", "wb") as f:
        f.write((2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
        f.write(images.to(torch.uint8).contiguous().numpy().tobytes())
    with open(raw_dir / f"{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write((2049).to_bytes(4, "big") + n.to_bytes(4, "big"))
        f.write(labels.to(torch.uint8).contiguous().numpy().tobytes())


def make_synthetic(root: Path, n_train: int = 512, n_val: int = 200, dataset: str = "mnist", seed: int = 0) -> Path:
    """Write a small, learnable data set under ROOT (the data set's raw folder) and return ROOT.

    One blurry stroke pattern per class plus noise; every class appears equally often.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    protos = []
    for c in range(10):
        angle = torch.tensor(c * torch.pi / 10)
        cx, cy = 14 + 6 * torch.cos(angle), 14 + 6 * torch.sin(angle)
        blob = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 18)
        bar = torch.exp(-(((xx - 14) * torch.sin(angle) - (yy - 14) * torch.cos(angle)) ** 2) / 4)
        bar = bar * (((xx - 14) ** 2 + (yy - 14) ** 2) < 100)
        protos.append((blob + bar).clamp(0, 1))
    protos = torch.stack(protos)
    raw = dataset_info(dataset).raw_dir(root)
    for prefix, n in (("train", n_train), ("t10k", n_val)):
        labels = torch.arange(n) % 10
        labels = labels[torch.randperm(n, generator=g)]
        imgs = protos[labels] * (0.7 + 0.3 * torch.rand(n, 1, 1, generator=g))
        imgs = (imgs + 0.08 * torch.rand(n, 28, 28, generator=g)).clamp(0, 1)
        write_idx(raw, prefix, (imgs * 255).round().to(torch.uint8), labels)
    return root
