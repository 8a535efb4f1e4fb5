"""The training configuration: everything that defines a run, with the assignment's defaults."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from convae.collapse import ON_COLLAPSE
from convae.data import DATASETS
from convae.model import check_sizes


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are the assignment's."""

    q1: int = 32
    q2: int = 32
    k: int = 10
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32
    val_batch_size: int = 100
    train_size: int | None = None  # None: the full training set; else the first N images
    seed: int = 0
    dataset: str = "mnist"
    # Not the assignment's: start the output at the mean pixel instead of 0.5 (see AutoEncoder.start_at_mean).
    mean_init: bool = False
    # What a run does when it collapses into blank images early on (convae.collapse): "restart" with
    # the next seed (the recipe unchanged), "stop", or "continue". Not part of key(): it only decides
    # what happens to a run that would learn nothing.
    on_collapse: str = "restart"

    def __post_init__(self) -> None:
        check_sizes(self.q1, self.q2, self.k)
        _check_int("epochs", self.epochs, 1, 1000, "Use 1 to 1000 (the assignment uses 10).")
        _check_int("batch_size", self.batch_size, 1, 65536, "Use 1 or more (the assignment uses 32).")
        _check_int("val_batch_size", self.val_batch_size, 1, 65536, "Use 1 or more (the assignment uses 100).")
        _check_int("seed", self.seed, 0, 2**63 - 1, "Use a whole number of 0 or more.")
        if self.train_size is not None:
            _check_int("train_size", self.train_size, 1, 10**9, "Use a positive number of images, or none for all.")
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, (int, float))
            or not math.isfinite(self.lr)
            or not 0 < self.lr <= 1
        ):
            raise ValueError(
                f"lr (learning rate) must be a number in (0, 1], got {self.lr!r}. The assignment uses 0.001."
            )
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}.")
        if self.on_collapse not in ON_COLLAPSE:
            raise ValueError(f"on_collapse must be one of {', '.join(ON_COLLAPSE)}, got {self.on_collapse!r}.")

    @property
    def is_assignment_recipe(self) -> bool:
        """True when batch size and learning rate are the assignment's (32 and 0.001)."""
        return self.batch_size == 32 and self.lr == 1e-3 and self.val_batch_size == 100

    def key(self) -> str:
        """A short, file-name-safe identity of the run (same key: same model, same results)."""
        size = "all" if self.train_size is None else str(self.train_size)
        return (
            f"{self.dataset}-q{self.q1}-{self.q2}-k{self.k}-e{self.epochs}-lr{self.lr:g}"
            f"-b{self.batch_size}-n{size}-s{self.seed}" + ("-mi" if self.mean_init else "")
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _check_int(name: str, value: object, lo: int, hi: int, advice: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}. {advice}")


def epochs_text(n: int) -> str:
    """'1 epoch', '10 epochs': how the pages and messages say a number of epochs."""
    return f"{n} epoch" if n == 1 else f"{n} epochs"
