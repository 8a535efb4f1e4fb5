"""Named training settings: the assignment's recipe, and quicker ones for a class that cannot wait.

A preset sets how long and how fast a run trains (epochs, batch size, learning rate, training images)
and whether the output starts at the mean brightness: at the quick presets' larger learning rate
more runs collapse with PyTorch's default start. The architecture, seed and data set stay the user's.
The quick presets are not the assignment's recipe and are labelled so wherever they are offered;
docs/presets.md has what each reaches per K and how long it takes (`python -m scripts.presets_table`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from convae.config import TrainConfig

FIELDS = ("epochs", "batch_size", "lr", "train_size", "mean_init")


@dataclass(frozen=True)
class Preset:
    name: str
    short: str  # a button's text
    label: str
    epochs: int
    batch_size: int
    lr: float
    train_size: int | None
    mean_init: bool

    def apply(self, config: TrainConfig) -> TrainConfig:
        return dataclasses.replace(config, **{f: getattr(self, f) for f in FIELDS})

    def matches(self, config: TrainConfig) -> bool:
        return all(getattr(config, f) == getattr(self, f) for f in FIELDS)


_D = TrainConfig()
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "assignment",
            "Recipe",
            "the assignment's recipe",
            _D.epochs,
            _D.batch_size,
            _D.lr,
            _D.train_size,
            _D.mean_init,
        ),
        Preset("quick", "Quick", "quick look (about 20 s; not the assignment's)", 1, 128, 3e-3, None, True),
        Preset("good", "Good", "good enough (about 1 min; not the assignment's)", 3, 128, 3e-3, None, True),
    )
}


def preset_of(config: TrainConfig) -> str | None:
    """The name of the preset whose settings the config has, or None (custom settings)."""
    return next((name for name, p in PRESETS.items() if p.matches(config)), None)


def apply_preset(config: TrainConfig, name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}.")
    return PRESETS[name].apply(config)
