"""Sweeps: what the bottleneck K, and the channels Q1 = Q2, buy in validation loss.

A sweep is a set of stored runs that differ in one setting: K (the same data set, Q1 and Q2), or
Q1 = Q2 (the same data set and K). Runs are grouped by their recipe (epochs, learning rate, batch
size, training images), since a quick demo and the assignment's recipe reach different losses and
must not share one curve. The seed and the output's starting bias are not part of the recipe: several
seeds of one K are several points of the same curve. A run stopped before its last epoch is left out.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from convae.config import TrainConfig
from convae.model import state_dict_shapes
from convae.presets import PRESETS
from convae.store import StoredRun

K_GRID = (1, 2, 3, 4, 6, 8, 10, 16, 24, 32, 48, 64)  # the bottleneck sweep's K values
Q_GRID = (4, 8, 16, 32, 64)  # the channel sweep's Q1 = Q2 values
Q_SWEEP_K = 10  # the channel sweep's K (the assignment's)
KINDS = ("k", "q")


def parameter_count(q1: int, q2: int, k: int) -> int:
    """The number of weights and biases of AutoEncoder(Q1, Q2, K), encoder and decoder together."""
    return sum(math.prod(shape) for shape in state_dict_shapes(q1, q2, k).values())


@dataclass(frozen=True)
class Recipe:
    """How a run was trained, without the architecture, the seed or the output's starting bias."""

    epochs: int
    lr: float
    batch_size: int
    train_size: int | None

    @classmethod
    def of(cls, config: TrainConfig) -> Recipe:
        return cls(config.epochs, config.lr, config.batch_size, config.train_size)

    @property
    def preset(self) -> str | None:
        """The name of the preset with these settings, if any."""
        return next(
            (name for name, p in PRESETS.items() if Recipe(p.epochs, p.lr, p.batch_size, p.train_size) == self), None
        )

    @property
    def label(self) -> str:
        images = "all 60,000 images" if self.train_size is None else f"{self.train_size:,} images"
        settings = (
            f"{self.epochs} epoch{'s' if self.epochs > 1 else ''}, batch {self.batch_size}, lr {self.lr:g}, {images}"
        )
        if self.preset == "assignment":
            return f"the assignment's recipe ({settings})"
        if self.preset is not None:
            return f"{self.preset} preset ({settings}; not the assignment's)"
        return f"custom ({settings})"


@dataclass(frozen=True)
class Sweep:
    """The stored runs of one sweep, grouped by recipe, each group sorted by the swept setting."""

    kind: str  # "k" or "q"
    dataset: str
    fixed: tuple[int, ...]  # (Q1, Q2) for a K sweep, (K,) for a Q sweep
    groups: dict[Recipe, list[StoredRun]]

    @property
    def grid(self) -> tuple[int, ...]:
        return K_GRID if self.kind == "k" else Q_GRID

    def setting(self, run: StoredRun) -> int:
        """The swept setting of a run: its K, or its Q1 (= Q2)."""
        return run.config.k if self.kind == "k" else run.config.q1

    def missing(self, recipe: Recipe) -> list[int]:
        """The grid's values that no run of this recipe has yet."""
        have = {self.setting(r) for r in self.groups.get(recipe, [])}
        return [v for v in self.grid if v not in have]

    def config_for(self, value: int, base: TrainConfig) -> TrainConfig:
        """The config that trains the grid value `value` of this sweep, with `base`'s other settings."""
        if self.kind == "k":
            return replace(base, dataset=self.dataset, q1=self.fixed[0], q2=self.fixed[1], k=value)
        return replace(base, dataset=self.dataset, q1=value, q2=value, k=self.fixed[0])


def find_sweep(runs: Iterable[StoredRun], kind: str, dataset: str, fixed: tuple[int, ...]) -> Sweep:
    """The runs of a K sweep (fixed = (Q1, Q2)) or of a Q1 = Q2 sweep (fixed = (K,)) on one data set."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}.")

    def member(c: TrainConfig) -> bool:
        if c.dataset != dataset:
            return False
        return (c.q1, c.q2) == tuple(fixed) if kind == "k" else c.q1 == c.q2 and c.k == fixed[0]

    groups: dict[Recipe, list[StoredRun]] = {}
    for run in runs:
        if member(run.config) and run.complete:  # a run stopped early did not follow its recipe to the end
            groups.setdefault(Recipe.of(run.config), []).append(run)
    sweep = Sweep(kind, dataset, tuple(fixed), {})
    for recipe in sorted(groups, key=lambda r: (r.preset != "assignment", r.preset is None, r.label)):
        sweep.groups[recipe] = sorted(groups[recipe], key=lambda r: (sweep.setting(r), r.val_loss))
    return sweep


def sweep_for(runs: Iterable[StoredRun], kind: str, config: TrainConfig) -> Sweep:
    """The sweep a config belongs to: its K sweep (its Q1, Q2), or the Q sweep at its K."""
    fixed = (config.q1, config.q2) if kind == "k" else (config.k,)
    return find_sweep(runs, kind, config.dataset, fixed)


CSV_COLUMNS = (
    "dataset",
    "q1",
    "q2",
    "k",
    "parameters",
    "val_loss",
    "train_loss",
    "pca_val_mse",
    "recipe",
    "seed",  # the seed that trained the stored model (the asked one unless a collapse restarted it)
    "mean_init",  # 1 when the output started at the mean brightness (not the assignment's start)
    "restarts",  # collapsed attempts before it
    "seconds",
)


def sweep_csv(sweep: Sweep, pca_mse: dict[int, float] | None = None) -> str:
    """One row per run of a sweep (CSV_COLUMNS): the setting, parameters, losses, PCA's MSE at its K, recipe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for recipe, runs in sweep.groups.items():
        for r in runs:
            c, h = r.config, r.history
            pca = pca_mse.get(c.k) if pca_mse else None
            seed = getattr(h, "seed", None)
            mean_init = getattr(h, "mean_init", None)
            writer.writerow(
                [
                    c.dataset,
                    c.q1,
                    c.q2,
                    c.k,
                    parameter_count(c.q1, c.q2, c.k),
                    f"{r.val_loss:.6f}",
                    f"{r.train_loss:.6f}",
                    "" if pca is None else f"{pca:.6f}",
                    recipe.label,
                    c.seed if seed is None else seed,
                    int(c.mean_init if mean_init is None else mean_init),
                    len(h.restarts),
                    f"{r.seconds:.1f}",
                ]
            )
    return out.getvalue()
