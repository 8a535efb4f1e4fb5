"""What a run reports while it trains (`Progress` events) and what it keeps (`History`).

A history is also read back from files (checkpoints, the state kept at each epoch end), so
`History.from_dict` checks and bounds what it reads: malformed entries are dropped, lists are cut.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from convae.collapse import clean_readings, clean_restarts
from convae.snapshots import Snapshots, Weights

MAX_POINTS = 200_000  # loss-curve points kept from a file (a 30-epoch run on all of MNIST has about 1,000)
MAX_EPOCHS = 1000  # TrainConfig's own limit


@dataclass
class Progress:
    """One progress event. `kind` is 'start', 'step', 'epoch', 'restart' (a collapsed run starts again
    with the next seed; `note` says so) or 'done'."""

    kind: str
    epoch: int  # 1-based epoch in progress (or just finished, for 'epoch')
    epochs: int
    step: int  # steps done in this epoch
    steps_per_epoch: int
    train_loss: float | None = None  # running average over this epoch so far
    val_loss: float | None = None  # set on 'epoch' and 'done'
    samples_per_s: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    preview: torch.Tensor | None = None  # (n, 28, 28) float reconstructions of fixed digits
    note: str | None = None  # on 'restart': what happened, in words
    snapshots: Snapshots | None = None  # the run's latent snapshots so far, when one was just taken (or on 'start')
    weights: Weights | None = None  # a copy of the weights, with each snapshot and at every epoch end

    @property
    def global_step(self) -> int:
        return (self.epoch - 1) * self.steps_per_epoch + self.step

    @property
    def fraction(self) -> float:
        return min(1.0, self.global_step / max(1, self.epochs * self.steps_per_epoch))


@dataclass
class History:
    """Loss history: running-loss points along the steps, one row per finished epoch, and the early
    health readings (convae.collapse.Vitals) of this run and of any collapsed attempt before it."""

    steps: list[int] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)  # {epoch, train_loss, val_loss, seconds}
    vitals: list[dict] = field(default_factory=list)  # this run's readings in its first steps
    restarts: list[dict] = field(default_factory=list)  # {seed, step, next_seed, note, vitals} per collapse
    seed: int | None = None  # the seed this history was trained with (the asked one unless restarted)
    mean_init: bool | None = None  # whether it started at the mean brightness (see TrainConfig.mean_init)
    kernels: dict[str, str] = field(default_factory=dict)  # the CPU convolutions' kernels (convae.kernels), else empty

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """A history read from a file: malformed entries are dropped and every list is bounded."""
        steps, losses = _curve(d.get("steps"), d.get("step_losses"))
        seed, mean_init = d.get("seed"), d.get("mean_init")
        return cls(
            steps,
            losses,
            _epoch_rows(d.get("epochs")),
            clean_readings(d.get("vitals")),
            clean_restarts(d.get("restarts")),
            seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            mean_init if isinstance(mean_init, bool) else None,
            _kernels(d.get("kernels")),
        )


MAX_KERNEL_ENTRIES = 64  # a layout and three products per convolution: the largest model has 16 entries
MAX_KERNEL_TEXT = 80


def _kernels(value: object) -> dict[str, str]:
    """The kernels named in a file: short text keys and values only, at most MAX_KERNEL_ENTRIES."""
    if not isinstance(value, dict):
        return {}
    items = [(k, v) for k, v in value.items() if isinstance(k, str) and isinstance(v, str)]
    return {k[:MAX_KERNEL_TEXT]: v[:MAX_KERNEL_TEXT] for k, v in items[:MAX_KERNEL_ENTRIES]}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _curve(steps: object, losses: object) -> tuple[list[int], list[float]]:
    """The loss curve's points, or none when the two lists are not numbers of the same length."""
    if not isinstance(steps, list) or not isinstance(losses, list) or len(steps) != len(losses):
        return [], []
    xs = [int(s) for s in steps[:MAX_POINTS] if isinstance(s, int) and not isinstance(s, bool)]
    ys = [v for v in (_number(x) for x in losses[:MAX_POINTS]) if v is not None]
    return (xs, ys) if len(xs) == len(ys) == min(len(steps), MAX_POINTS) else ([], [])


def _epoch_rows(value: object) -> list[dict]:
    """{epoch, train_loss, val_loss, seconds} rows; a row that is not numbers ends the list there."""
    rows: list[dict] = []
    for item in value[:MAX_EPOCHS] if isinstance(value, list) else []:
        if not isinstance(item, dict):
            break
        train_loss, val_loss = _number(item.get("train_loss")), _number(item.get("val_loss"))
        if item.get("epoch") != len(rows) + 1 or train_loss is None or val_loss is None:
            break
        seconds = _number(item.get("seconds"))
        rows.append(
            {
                "epoch": len(rows) + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "seconds": seconds if seconds is not None and math.isfinite(seconds) else 0.0,
            }
        )
    return rows
