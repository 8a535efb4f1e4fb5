"""Inside the network: what each layer of the auto-encoder computes for one image (Table 1, layer by layer).

`trace` runs one forward pass with forward hooks on the layers whose outputs a student can look at,
and returns them as plain tensors: the first convolution's filters, the feature maps after each
encoder convolution (after its ReLU, as the next layer sees them), the code, and the decoder's maps
on the way back up to the output image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from convae.data import to_float
from convae.model import AutoEncoder


@dataclass(frozen=True)
class Trace:
    """One image through the network; shapes for a model with Q1, Q2 and K."""

    image: torch.Tensor  # (28, 28) the input, in [0, 1]
    filters: torch.Tensor  # (Q1, 5, 5) the first convolution's weights
    conv1: torch.Tensor  # (Q1, 14, 14) after Conv2d(1 -> Q1) and ReLU
    conv2: torch.Tensor  # (Q2, 7, 7) after Conv2d(Q1 -> Q2) and ReLU
    code: torch.Tensor  # (K,) the latent code E(x)
    dec_linear: torch.Tensor  # (Q2, 7, 7) after Linear(K -> Q2*7*7), ReLU and the reshape
    dec_conv1: torch.Tensor  # (Q1, 14, 14) after ConvTranspose2d(Q2 -> Q1) and ReLU
    output: torch.Tensor  # (28, 28) after ConvTranspose2d(Q1 -> 1) and the sigmoid: D(E(x))

    @property
    def mse(self) -> float:
        return float(((self.output - self.image) ** 2).mean())


# Where each traced tensor comes from: (encoder or decoder, index in its nn.Sequential).
_TAPS = {
    "conv1": ("encoder", 1),  # the ReLU after the first convolution
    "conv2": ("encoder", 3),  # the ReLU after the second
    "code": ("encoder", 5),  # the Linear layer: the code
    "dec_linear": ("decoder", 2),  # the Unflatten after Linear and ReLU
    "dec_conv1": ("decoder", 4),  # the ReLU after the first transposed convolution
    "output": ("decoder", 6),  # the sigmoid
}


@torch.no_grad()
def trace(model: AutoEncoder, image: torch.Tensor) -> Trace:
    """Run one uint8 image (28, 28) through the model and keep what each tapped layer put out."""
    if tuple(image.shape) != (28, 28):
        raise ValueError(f"trace takes one 28 x 28 image, got shape {tuple(image.shape)}.")
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, (part, index) in _TAPS.items():
        layer = getattr(model, part).net[index]

        def keep(_module, _inputs, output, name=name) -> None:
            seen[name] = output.detach()[0].cpu()

        handles.append(layer.register_forward_hook(keep))
    was_training = model.training
    model.eval()
    try:
        x = to_float(image[None])
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return Trace(
        image=x[0, 0],
        filters=model.encoder.net[0].weight.detach()[:, 0].cpu().clone(),
        conv1=seen["conv1"],
        conv2=seen["conv2"],
        code=seen["code"],
        dec_linear=seen["dec_linear"],
        dec_conv1=seen["dec_conv1"],
        output=seen["output"][0],
    )
