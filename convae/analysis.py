"""What the trained auto-encoder learned (Tasks 6-8), as pure functions on a model and data.

All functions take uint8 images (N, 28, 28) as the data module keeps them and return CPU tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from convae.data import to_float

NUM_CLASSES = 10


@torch.no_grad()
def encode(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """E(X) for uint8 images (N, 28, 28) -> latents (N, K)."""
    model.eval()
    return torch.cat([model.encoder(to_float(images[i : i + batch_size])) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def decode(model: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """D(z) for latents (N, K) -> images (N, 28, 28) in [0, 1]."""
    model.eval()
    return model.decoder(latents.to(torch.float32)).squeeze(1)


@torch.no_grad()
def reconstruct(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(originals, reconstructions, per-image MSE) for uint8 images; Task 6 uses the first 100."""
    model.eval()
    x = to_float(images)
    y = model(x)
    err = ((y - x) ** 2).mean(dim=(1, 2, 3))
    return x.squeeze(1), y.squeeze(1), err


def class_means(latents: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 2: mu_o = mean of E(X) over the samples of class o, as a (10, K) tensor."""
    means = []
    for o in range(NUM_CLASSES):
        members = latents[labels == o]
        if len(members) == 0:
            raise ValueError(f"class {o} has no validation samples; its mean (Eq. 2) is undefined.")
        means.append(members.mean(dim=0))
    return torch.stack(means)


def mixture_latents(means: torch.Tensor) -> torch.Tensor:
    """Eq. 3: (mu_o1 + mu_o2) / 2 for every pair, as a (10, 10, K) tensor; the diagonal is mu_o."""
    return (means[:, None, :] + means[None, :, :]) / 2


@torch.no_grad()
def mixture_matrix(model: nn.Module, means: torch.Tensor) -> torch.Tensor:
    """Figure 2: decoded mixtures, (10, 10, 28, 28); row o1, column o2; the diagonal shows D(mu_o)."""
    z = mixture_latents(means)
    c = means.shape[0]
    return decode(model, z.reshape(c * c, -1)).reshape(c, c, 28, 28)


@torch.no_grad()
def interpolate(model: nn.Module, mu_a: torch.Tensor, mu_b: torch.Tensor, alpha: float) -> torch.Tensor:
    """D((1 - alpha) * mu_a + alpha * mu_b) as one (28, 28) image; alpha = 0.5 is Eq. 3's mixture."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}.")
    return decode(model, ((1 - alpha) * mu_a + alpha * mu_b)[None])[0]


@dataclass(frozen=True)
class PCA:
    """A 2-D principal component analysis of latent codes."""

    mean: torch.Tensor  # (K,)
    components: torch.Tensor  # (d, K), rows are unit directions, d = min(2, K)
    explained: torch.Tensor  # (d,) fraction of the total variance along each direction
    coords: torch.Tensor  # (N, d) the projected latents

    def project(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents - self.mean) @ self.components.T

    def lift(self, coords: torch.Tensor) -> torch.Tensor:
        """Back from the plane to latent space: mean + coords @ components."""
        return self.mean + coords.to(self.mean.dtype) @ self.components


def pca_2d(latents: torch.Tensor) -> PCA:
    """Principal components of the latents (torch SVD); with K <= 2 the latents' own axes."""
    latents = latents.to(torch.float64)
    mean = latents.mean(dim=0)
    centred = latents - mean
    k = latents.shape[1]
    total = centred.pow(2).sum().clamp_min(1e-30)
    if k <= 2:
        comps = torch.eye(k, dtype=torch.float64)
    else:
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        comps = vh[:2]
        # A stable sign: the largest coordinate of each direction is positive.
        signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
        comps = comps * signs
    coords = centred @ comps.T
    explained = coords.pow(2).sum(0) / total
    return PCA(mean.float(), comps.float(), explained.float(), coords.float())


@torch.no_grad()
def decode_grid(model: nn.Module, pca: PCA, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Decode a lattice of PCA-plane points: (len(ys), len(xs), 28, 28), row 0 at ys[0]."""
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten()], dim=1)[:, : pca.components.shape[0]]
    return decode(model, pca.lift(pts)).reshape(len(ys), len(xs), 28, 28)


def nearest_class(latent: torch.Tensor, means: torch.Tensor) -> tuple[int, torch.Tensor]:
    """The class whose mean is closest (Euclidean) to a latent code, and all the distances."""
    d = torch.linalg.vector_norm(means - latent[None], dim=1)
    return int(d.argmin()), d


def mnist_like(canvas: torch.Tensor) -> torch.Tensor:
    """Turn a drawing (H, W) with ink in [0, 1] into an MNIST-style 28x28 uint8 image.

    As MNIST was made: the ink's bounding box is scaled to fit a 20x20 box (keeping the aspect
    ratio), then placed in the 28x28 frame so that its centre of mass sits in the middle.
    """
    ink = canvas.to(torch.float32).clamp(0, 1)
    nz = (ink > 0.05).nonzero()
    if len(nz) == 0:
        return torch.zeros(28, 28, dtype=torch.uint8)
    (r0, c0), (r1, c1) = nz.min(0).values.tolist(), nz.max(0).values.tolist()
    crop = ink[r0 : r1 + 1, c0 : c1 + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = nn.functional.interpolate(crop[None, None], size=(nh, nw), mode="area")[0, 0]
    ys, xs = torch.arange(nh, dtype=torch.float32), torch.arange(nw, dtype=torch.float32)
    mass = small.sum().clamp_min(1e-6)
    cy, cx = (small.sum(1) * ys).sum() / mass, (small.sum(0) * xs).sum() / mass
    top, left = round(13.5 - float(cy)), round(13.5 - float(cx))  # pixel 13.5 is the frame's centre
    top, left = min(max(top, 0), 28 - nh), min(max(left, 0), 28 - nw)
    out = torch.zeros(28, 28)
    out[top : top + nh, left : left + nw] = small
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)


def blank_mse(images: torch.Tensor) -> float:
    """The MSE of an all-black output on uint8 images: what a model that learned nothing scores.

    Counted from a histogram of the 256 pixel values, so that 47 million training pixels need no
    float copy."""
    counts = torch.bincount(images.flatten(), minlength=256).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64) / 255
    return float((counts * values**2).sum() / counts.sum())


def learned_nothing(val_loss: float, blank: float) -> bool:
    """True when a validation loss is no better than an all-black output (the sigmoid saturated)."""
    return val_loss >= 0.97 * blank
