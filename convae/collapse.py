"""Blank models: why some runs of the assignment's recipe learn nothing, and how to see it early.

With PyTorch's default start the untrained decoder outputs about 0.5 everywhere, while most MNIST
pixels are 0. Adam moves every weight of the last transposed convolution by about the learning rate
per step, all in the same direction (darker), and the decoder's hidden activations are large, so
within a few dozen steps the output layer's pre-activations (the sigmoid's inputs) fall to about
-70. There the sigmoid is flat: its gradient, e^-70, is zero in float32, nothing flows back to the
decoder or the encoder any more, and the model draws black images for good (validation MSE equal to
that of an all-black image). Most of the decoder's ReLU units still fire; it is the saturated
sigmoid that cuts the gradient. A run that escapes keeps a few output pixels above zero through
that phase, and their gradient pulls the rest back.

A collapse shows within the first few hundred steps in two readings taken together: the running
training loss stays at the all-black loss, and the brightest output pixel of the fixed preview
digits stays near 0. `CollapseWatch` takes those readings at fixed steps and decides.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

CHECK_EVERY = 25  # steps between two readings
FIRST_CHECK = 50
LAST_CHECK = 400  # a run that learns has left the blank state long before this
PATIENCE = 3  # consecutive blank readings before the run is called collapsed
BRIGHTEST_BLANK = 0.25  # the brightest output pixel of a collapsed model stays below this
LOSS_SHARE_BLANK = 0.85  # ... and its running loss above this share of the all-black loss

ON_COLLAPSE = ("restart", "stop", "continue")


@dataclass(frozen=True)
class Vitals:
    """One reading of a run's health, taken at `step` (1-based, counted over the whole run)."""

    step: int
    loss: float  # mean training loss of the last CHECK_EVERY steps
    brightest: float  # the largest output pixel over the fixed preview digits
    logit_mean: float  # the mean input of the output sigmoid over those digits
    encoder_grad: float  # the norm of the first convolution's weight gradient at this step

    def looks_blank(self, blank_loss: float) -> bool:
        return self.brightest < BRIGHTEST_BLANK and self.loss > LOSS_SHARE_BLANK * blank_loss


def is_check_step(step: int) -> bool:
    return FIRST_CHECK <= step <= LAST_CHECK and step % CHECK_EVERY == 0


@torch.no_grad()
def read_vitals(model: nn.Module, preview_x: torch.Tensor, step: int, recent_loss: float) -> Vitals:
    """Take a reading: one forward pass of the preview digits up to the sigmoid's input."""
    was_training = model.training
    model.eval()
    logits = model.decoder.net[:-1](model.encoder(preview_x))  # (n, 1, 28, 28), before the Sigmoid
    model.train(was_training)
    grad = model.encoder.net[0].weight.grad
    return Vitals(
        step=step,
        loss=recent_loss,
        brightest=float(torch.sigmoid(logits.max())),
        logit_mean=float(logits.mean()),
        encoder_grad=float(grad.norm()) if grad is not None else math.nan,
    )


@dataclass
class CollapseWatch:
    """Decides from readings whether a run has collapsed: PATIENCE blank readings in a row."""

    blank_loss: float  # the training set's all-black loss, mean(x^2)
    readings: list[Vitals] = field(default_factory=list)
    blank_in_a_row: int = 0

    def update(self, v: Vitals) -> bool:
        """Record a reading; True when the run is judged collapsed."""
        self.readings.append(v)
        self.blank_in_a_row = self.blank_in_a_row + 1 if v.looks_blank(self.blank_loss) else 0
        return self.blank_in_a_row >= PATIENCE

    def to_list(self) -> list[dict]:
        return [asdict(v) for v in self.readings]


MAX_READINGS = (LAST_CHECK - FIRST_CHECK) // CHECK_EVERY + 1
MAX_RESTARTS_KEPT = 20
MAX_NOTE = 300


def clean_readings(value: object) -> list[dict]:
    """Readings from a file, as Vitals dicts: anything malformed is dropped, and the list is bounded."""
    if not isinstance(value, list):
        return []
    out = []
    for item in value[:MAX_READINGS]:
        try:
            out.append(asdict(Vitals(**{name: _number(item[name]) for name in Vitals.__dataclass_fields__})))
        except (TypeError, KeyError, ValueError):
            continue
    return out


def clean_restarts(value: object) -> list[dict]:
    """Restart records from a file ({seed, step, next_seed, note, vitals}), malformed ones dropped."""
    if not isinstance(value, list):
        return []
    out = []
    for item in value[:MAX_RESTARTS_KEPT]:
        try:
            seed, step, next_seed = (int(_number(item[k])) for k in ("seed", "step", "next_seed"))
            note = str(item["note"])[:MAX_NOTE]
        except (TypeError, KeyError, ValueError):
            continue
        out.append(
            {
                "seed": seed,
                "step": step,
                "next_seed": next_seed,
                "note": note,
                "vitals": clean_readings(item.get("vitals")),
            }
        )
    return out


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    return value
