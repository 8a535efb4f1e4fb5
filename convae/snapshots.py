"""The latent space as it forms: the codes of a fixed set of validation images, taken while a run trains.

Every run of a data set encodes the same images, the first `N_IMAGES` of its validation set (MNIST's
first 2,000 test images hold 175 to 230 of each digit): before its first step, a few times in its first
epoch (after 1 %, 5 %, 20 % and 50 % of it, when most of the structure appears) and at the end of each
epoch (of at most `MAX_EPOCH_MARKS` evenly spread epochs in a longer run): `MAX_SNAPSHOTS` at most.

While a run trains, and in the state it keeps at each epoch end (convae.resume), the codes are kept
whole (`Snapshots`, (N, K) each: 512 KB a snapshot at K = 64, 12.8 MB for the most a run takes). A
stored run keeps them as a `Plane`: every snapshot in the same two axes, the final snapshot's PCA plane
(for K <= 2 the codes themselves): N x 2 x 4 bytes = 16 KB a snapshot whatever K, 400 KB at most, 240 KB
for the assignment's 10 epochs. Those are the coordinates the latent page draws; they do not move from
one snapshot to the next. Everything read back from a file is checked (types, shapes, bounds, finite
values) first.

Why float32 and not float16, which would halve both: the codes grow about 300-fold in training (a spread
of 0.02 around an offset of 2 before the first step, against 5 to 7 at the end), and float16's step near 2
is 0.002, so the first snapshots would keep only about ten levels across their spread: visible banding
when the page zooms in on them.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from convae.analysis import pca_2d
from convae.data import to_float

N_IMAGES = 2000  # validation images encoded at each snapshot (fewer if the validation set is smaller)
FIRST_EPOCH = (0.01, 0.05, 0.2, 0.5)  # fractions of the first epoch after which a snapshot is taken
MAX_EPOCH_MARKS = 20  # epoch ends with a snapshot, at most (evenly spread over a longer run)
MAX_SNAPSHOTS = 1 + len(FIRST_EPOCH) + MAX_EPOCH_MARKS
MAX_STEPS = 10_000_000  # steps per epoch accepted from a file (60,000 images at batch 1 take 60,000)
MAX_EPOCHS = 1000  # TrainConfig's own limit
CODE_MAX = 1e6  # codes are clipped into +-CODE_MAX (NaN kept as 0) before they are kept: a file holds finite numbers
BATCH = 500
_SERIALS = itertools.count()


class SnapshotError(ValueError):
    """Snapshots read from a file are malformed; the message says what is wrong."""


@dataclass(frozen=True)
class Mark:
    """When a snapshot was taken: after `step` of the `steps` steps of epoch `epoch`."""

    epoch: int
    step: int
    steps: int

    @property
    def label(self) -> str:
        if self.step == 0:
            return "before training" if self.epoch == 1 else f"start of epoch {self.epoch}"
        if self.step == self.steps:
            return f"end of epoch {self.epoch}"
        return f"epoch {self.epoch}, {self.step / self.steps:.0%}"

    @property
    def position(self) -> float:
        """Epochs done, as a number (1.05 is 5 % into the second epoch)."""
        return self.epoch - 1 + self.step / self.steps

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "steps": self.steps}

    @classmethod
    def from_dict(cls, d: object) -> Mark:
        if not isinstance(d, dict) or not all(_whole(d.get(k)) for k in ("epoch", "step", "steps")):
            raise SnapshotError("a snapshot's mark is not three whole numbers (epoch, step, steps)")
        epoch, step, steps = d["epoch"], d["step"], d["steps"]
        if not (1 <= epoch <= MAX_EPOCHS and 1 <= steps <= MAX_STEPS and 0 <= step <= steps):
            raise SnapshotError(f"a snapshot's mark is out of range (epoch {epoch}, step {step} of {steps})")
        return cls(epoch, step, steps)


def first_epoch_steps(steps: int) -> tuple[int, ...]:
    """The steps of the first epoch after which a snapshot is taken (its end excluded: that one always is)."""
    return tuple(sorted({max(1, round(f * steps)) for f in FIRST_EPOCH} - {steps}))


def epoch_ends(epochs: int) -> frozenset[int]:
    """The epochs whose end gets a snapshot: all of them, or MAX_EPOCH_MARKS evenly spread, the last included."""
    if epochs <= MAX_EPOCH_MARKS:
        return frozenset(range(1, epochs + 1))
    return frozenset(math.ceil(i * epochs / MAX_EPOCH_MARKS) for i in range(1, MAX_EPOCH_MARKS + 1))


@dataclass(frozen=True)
class Snapshots:
    """A run's snapshots so far, whole: `codes[i]` is (N, K) float32 on the CPU, taken at `marks[i]`.
    Never changed once made (a new snapshot makes a new object), so a copy can go to another thread."""

    marks: tuple[Mark, ...] = ()
    codes: tuple[torch.Tensor, ...] = ()
    serial: int = field(default_factory=lambda: next(_SERIALS), compare=False)  # tells them apart (page caches)

    def __len__(self) -> int:
        return len(self.marks)

    def added(self, mark: Mark, codes: torch.Tensor) -> Snapshots:
        return Snapshots((*self.marks, mark), (*self.codes, codes))

    def to_dict(self) -> dict:
        return {"marks": [m.to_dict() for m in self.marks], "codes": torch.stack(self.codes)}

    @classmethod
    def from_dict(cls, d: object, k: int) -> Snapshots:
        """Snapshots of a model with K = k read from a file (SnapshotError if anything is off)."""
        if not isinstance(d, dict):
            raise SnapshotError(f"the snapshots are a {type(d).__name__}, not a table")
        marks = _marks(d.get("marks"))
        codes = _codes(d.get("codes"), len(marks), k)
        return cls(marks, tuple(codes.unbind(0)))


@dataclass(frozen=True)
class Plane:
    """Snapshots as a stored run keeps them and the latent page draws them: `coords` (S, N, D) float32,
    every snapshot in the final snapshot's PCA plane (D = 2; for K <= 2 the codes themselves, D = K)."""

    marks: tuple[Mark, ...]
    coords: torch.Tensor
    explained: tuple[float, ...]  # the fraction of the final snapshot's variance along each axis

    @property
    def images(self) -> int:
        return self.coords.shape[1]

    @functools.cached_property
    def limits(self) -> list[tuple[float, float]]:
        """Axis ranges that hold (nearly) every snapshot's points: the same for every snapshot, so the
        picture does not jump. The outermost 0.05 % of the points on each side are let go."""
        return _ranges(self.coords.numpy().reshape(-1, self.coords.shape[2]))

    def limits_at(self, i: int) -> list[tuple[float, float]]:
        """Axis ranges fitted to snapshot i alone (to see the shape of the first ones, which are small)."""
        return _ranges(self.coords[i].numpy())

    def to_dict(self) -> dict:
        return {"marks": [m.to_dict() for m in self.marks], "coords": self.coords, "explained": list(self.explained)}

    @classmethod
    def from_dict(cls, d: object, k: int) -> Plane:
        """A stored plane of a model with K = k (SnapshotError if anything is off)."""
        if not isinstance(d, dict):
            raise SnapshotError(f"the snapshots are a {type(d).__name__}, not a table")
        marks = _marks(d.get("marks"))
        dims = min(k, 2)
        coords = _codes(d.get("coords"), len(marks), dims)
        explained = d.get("explained")
        if not isinstance(explained, list) or len(explained) != dims:
            raise SnapshotError(f"the explained variance is not a list of {dims} numbers")
        if not all(isinstance(v, float | int) and not isinstance(v, bool) and 0 <= v <= 1 for v in explained):
            raise SnapshotError("the explained variance is not fractions between 0 and 1")
        return cls(marks, coords, tuple(float(v) for v in explained))


def plane(snapshots: Snapshots) -> Plane:
    """Every snapshot in the final one's PCA plane (K > 2), or as it is (K <= 2)."""
    final = snapshots.codes[-1].float()
    pca = pca_2d(final)
    codes = torch.stack(snapshots.codes).float()  # (S, N, K)
    coords = codes if final.shape[1] <= 2 else (codes - pca.mean) @ pca.components.T
    return Plane(snapshots.marks, _finite(coords), tuple(pca.explained.tolist()))


def stored(snapshots: Snapshots | None) -> dict | None:
    """What a checkpoint keeps of a run's snapshots (None when it has none)."""
    return plane(snapshots).to_dict() if snapshots else None


def read_stored(value: object, k: int) -> tuple[Plane | None, str]:
    """A checkpoint's snapshots and, when they are damaged, why (the model itself is still usable)."""
    if value is None:
        return None, ""
    try:
        return Plane.from_dict(value, k), ""
    except (SnapshotError, TypeError, RuntimeError) as e:
        return None, f"The snapshots stored with this model are damaged ({str(e)[:200]}), so they are not shown."


@dataclass(frozen=True)
class Weights:
    """A copy of a training model's weights (CPU), and when it was taken, for a page to look inside."""

    label: str
    state: dict[str, torch.Tensor]
    serial: int = field(default_factory=lambda: next(_SERIALS), compare=False)  # tells copies apart (page caches)


def copy_weights(model: nn.Module, label: str) -> Weights:
    return Weights(label, {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()})


@torch.no_grad()
def encode_codes(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """E(x) of uint8 images (N, 28, 28) on the model's device, as float32 (N, K) on the CPU; the model's
    training mode is left as it was."""
    was_training = model.training
    model.eval()
    try:
        codes = torch.cat([model.encoder(to_float(images[i : i + BATCH])) for i in range(0, len(images), BATCH)])
    finally:
        model.train(was_training)
    return _finite(codes.cpu())


class Recorder:
    """Takes a run's snapshots at their marks; the training loop asks `due` between steps."""

    def __init__(self, images: torch.Tensor, epochs: int, steps: int, earlier: Snapshots | None = None) -> None:
        self.images, self.steps = images, steps
        self.first_epoch, self.ends = first_epoch_steps(steps), epoch_ends(epochs)
        fits = earlier is not None and all(m.steps == steps for m in earlier.marks)
        fits = fits and all(c.shape[0] == len(images) for c in earlier.codes)
        self.current = earlier if fits else Snapshots()  # a resumed run goes on with the snapshots it had

    def start(self, model: nn.Module, epoch: int) -> Snapshots:
        """The snapshot before the first step of a run started from scratch; a resumed run's earlier ones."""
        return self.take(model, 1, 0) if epoch == 1 and not self.current else self.current

    def due(self, epoch: int, step: int) -> bool:
        return epoch == 1 and step in self.first_epoch

    def take(self, model: nn.Module, epoch: int, step: int) -> Snapshots:
        mark = Mark(epoch, step, self.steps)
        if not self.current or mark.position > self.current.marks[-1].position:
            self.current = self.current.added(mark, encode_codes(model, self.images))
        return self.current

    def epoch_end(self, model: nn.Module, epoch: int) -> Snapshots | None:
        """The snapshots after this epoch's one (if it gets one), else None."""
        return self.take(model, epoch, self.steps) if epoch in self.ends else None


def _finite(values: torch.Tensor) -> torch.Tensor:
    """float32, with NaN as 0 and everything else clipped into +-CODE_MAX."""
    return torch.nan_to_num(values.float(), nan=0.0).clamp(-CODE_MAX, CODE_MAX).contiguous()


def _ranges(points: np.ndarray, pad: float = 0.06) -> list[tuple[float, float]]:
    """Per axis: from the 0.05th to the 99.95th percentile of the points, widened by `pad` of the span."""
    lo, hi = np.percentile(points, 0.05, axis=0), np.percentile(points, 99.95, axis=0)
    span = np.maximum(hi - lo, 1e-6)
    return [(float(a), float(b)) for a, b in zip(lo - pad * span, hi + pad * span, strict=True)]


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _marks(value: object) -> tuple[Mark, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SNAPSHOTS:
        got = len(value) if isinstance(value, list) else type(value).__name__
        raise SnapshotError(f"{got} snapshot marks (expected 1 to {MAX_SNAPSHOTS})")
    marks = tuple(Mark.from_dict(m) for m in value)
    if any(b.position <= a.position for a, b in zip(marks, marks[1:], strict=False)):
        raise SnapshotError("the snapshots are not in the order they were taken")
    return marks


def _codes(value: object, count: int, dims: int) -> torch.Tensor:
    """A float32 tensor (count, N, dims) with 1 <= N <= N_IMAGES and finite values within +-CODE_MAX."""
    if not isinstance(value, torch.Tensor) or value.dtype != torch.float32 or value.layout != torch.strided:
        raise SnapshotError(f"the codes are {type(value).__name__} {getattr(value, 'dtype', '')}, not float32")
    shape = tuple(value.shape)
    if len(shape) != 3 or shape[0] != count or not 1 <= shape[1] <= N_IMAGES or shape[2] != dims:
        raise SnapshotError(f"the codes have shape {shape} (expected ({count}, 1 to {N_IMAGES}, {dims}))")
    values = value.detach().numpy()  # (numpy's checks: many times faster than torch's on a busy CPU)
    if not np.isfinite(values).all() or np.abs(values).max() > CODE_MAX:
        raise SnapshotError("the codes hold values that are not finite, or absurdly large")
    return value.detach().contiguous()
