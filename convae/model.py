"""The assignment's convolutional auto-encoder (Table 1), in one file.

Encoder E (Table 1a)                         Decoder D (Table 1b)
  Conv2d(1 -> Q1, 5x5, s2, p2)   28 -> 14      Linear(K -> Q2*7*7)
  ReLU                                         ReLU, reshape to (Q2, 7, 7)
  Conv2d(Q1 -> Q2, 5x5, s2, p2)  14 -> 7       ConvTranspose2d(Q2 -> Q1, 5x5, s2, p2, op1)  7 -> 14
  ReLU, Flatten                                ReLU
  Linear(Q2*7*7 -> K)                          ConvTranspose2d(Q1 -> 1, 5x5, s2, p2, op1)  14 -> 28
                                               Sigmoid (outputs in [0, 1], like the inputs)
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

IMAGE_SIZE = 28
BOTTLENECK = 7  # 28 -> 14 -> 7 after two stride-2 convolutions


# The one table of allowed sizes: the sliders, the command line, the address bar and checkpoint files
# all check against it, before any memory is spent on a model.
SIZE_RANGES: dict[str, tuple[int, int]] = {"Q1": (1, 128), "Q2": (1, 128), "K": (1, 64)}


def check_sizes(q1: object, q2: object, k: object) -> tuple[int, int, int]:
    """Return (Q1, Q2, K) as ints, or raise ValueError naming the bad parameter and its allowed range."""
    out = []
    for name, value in (("Q1", q1), ("Q2", q2), ("K", k)):
        lo, hi = SIZE_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(
                f"{name} must be a whole number from {lo} to {hi} (a number of channels or latent "
                f"dimensions), got {value!r} of type {type(value).__name__}."
            )
        if not lo <= value <= hi:
            raise ValueError(f"{name} must be from {lo} to {hi}, got {value}.")
        out.append(int(value))
    return out[0], out[1], out[2]


def state_dict_shapes(q1: object, q2: object, k: object) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor of AutoEncoder(Q1, Q2, K).state_dict(), in order, worked out
    without building the model: a checkpoint's tensors are checked against it before memory is spent."""
    Q1, Q2, K = check_sizes(q1, q2, k)
    flat = Q2 * BOTTLENECK * BOTTLENECK
    return {
        "encoder.net.0.weight": (Q1, 1, 5, 5),  # Conv2d weights are (out, in, kH, kW)
        "encoder.net.0.bias": (Q1,),
        "encoder.net.2.weight": (Q2, Q1, 5, 5),
        "encoder.net.2.bias": (Q2,),
        "encoder.net.5.weight": (K, flat),  # Linear weights are (out, in)
        "encoder.net.5.bias": (K,),
        "decoder.net.0.weight": (flat, K),
        "decoder.net.0.bias": (flat,),
        "decoder.net.3.weight": (Q2, Q1, 5, 5),  # ConvTranspose2d weights are (in, out, kH, kW)
        "decoder.net.3.bias": (Q1,),
        "decoder.net.5.weight": (Q1, 1, 5, 5),
        "decoder.net.5.bias": (1,),
    }


class Encoder(nn.Module):
    """E: image (B, 1, 28, 28) -> latent code (B, K)."""

    def __init__(self, Q1: int = 32, Q2: int = 32, K: int = 10) -> None:
        super().__init__()
        Q1, Q2, K = check_sizes(Q1, Q2, K)
        self.Q1, self.Q2, self.K = Q1, Q2, K
        self.net = nn.Sequential(
            nn.Conv2d(1, Q1, kernel_size=5, stride=2, padding=2),  # (B, Q1, 14, 14)
            nn.ReLU(),
            nn.Conv2d(Q1, Q2, kernel_size=5, stride=2, padding=2),  # (B, Q2, 7, 7)
            nn.ReLU(),
            nn.Flatten(),  # (B, Q2*7*7)
            nn.Linear(Q2 * BOTTLENECK * BOTTLENECK, K),  # (B, K)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """D: latent code (B, K) -> image (B, 1, 28, 28) with values in [0, 1]."""

    def __init__(self, Q1: int = 32, Q2: int = 32, K: int = 10) -> None:
        super().__init__()
        Q1, Q2, K = check_sizes(Q1, Q2, K)
        self.Q1, self.Q2, self.K = Q1, Q2, K
        self.net = nn.Sequential(
            nn.Linear(K, Q2 * BOTTLENECK * BOTTLENECK),  # (B, Q2*7*7)
            nn.ReLU(),
            nn.Unflatten(1, (Q2, BOTTLENECK, BOTTLENECK)),  # (B, Q2, 7, 7)
            # output_padding=1 makes each transposed convolution exactly double the size.
            nn.ConvTranspose2d(Q2, Q1, 5, stride=2, padding=2, output_padding=1),  # (B, Q1, 14, 14)
            nn.ReLU(),
            nn.ConvTranspose2d(Q1, 1, 5, stride=2, padding=2, output_padding=1),  # (B, 1, 28, 28)
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class AutoEncoder(nn.Module):
    """Y = D(E(X)): one module holding an encoder and a decoder of matching sizes."""

    def __init__(self, Q1: int = 32, Q2: int = 32, K: int = 10) -> None:
        super().__init__()
        Q1, Q2, K = check_sizes(Q1, Q2, K)
        self.Q1, self.Q2, self.K = Q1, Q2, K
        self.encoder = Encoder(Q1, Q2, K)
        self.decoder = Decoder(Q1, Q2, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    @torch.no_grad()
    def start_at_mean(self, mean_pixel: float) -> None:
        """Set the last layer's bias so that the untrained output is about `mean_pixel`, not 0.5.

        Not part of the assignment (which keeps PyTorch's default initialisation). With the default,
        the first Adam steps can push the sigmoid so far into 0 that its gradient vanishes and the model
        outputs blank images for good; starting at the mean pixel avoids that for every K tried.
        """
        if not 0.0 < mean_pixel < 1.0:
            raise ValueError(f"mean_pixel must lie in (0, 1), got {mean_pixel}.")
        last = self.decoder.net[-2]  # ConvTranspose2d(Q1 -> 1), before the Sigmoid
        last.bias.fill_(math.log(mean_pixel / (1 - mean_pixel)))

    @property
    def sizes(self) -> tuple[int, int, int]:
        return self.Q1, self.Q2, self.K
