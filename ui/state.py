"""Per-browser state: the sidebar's session keys, their defaults and ranges, and the address-bar sync.

The defaults are `TrainConfig`'s own (the assignment's); the ranges come from one table, whose
architecture sizes are the core's `SIZE_RANGES`, so that the sliders, the address bar and the
command line accept the same values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import streamlit as st

from convae.config import epochs_text as epochs_text  # re-exported for the ui modules
from convae.data import DATASETS
from convae.model import SIZE_RANGES
from convae.presets import PRESETS, preset_of
from convae.train import TrainConfig

# The TrainConfig fields the sidebar shows, each under a session key of the same name.
KEYS = ("dataset", "q1", "q2", "k", "epochs", "lr", "batch_size", "train_size", "seed", "mean_init", "on_collapse")
ALL_IMAGES = 0  # the widget's value for train_size=None (the whole training set)
MAX_PARAM_CHARS = 64  # a longer address value is ignored unread


def _widget_value(key: str, value: object) -> object:
    return ALL_IMAGES if key == "train_size" and value is None else value


_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
DEFAULTS = {key: _widget_value(key, _FIELD_DEFAULTS[key]) for key in KEYS}

# The one table of the numeric controls' ranges: the sliders draw it, the address bar is checked against it.
RANGES: dict[str, tuple[int, int]] = {
    "q1": SIZE_RANGES["Q1"],
    "q2": SIZE_RANGES["Q2"],
    "k": SIZE_RANGES["K"],
    "epochs": (1, 30),
    "seed": (0, 2**31 - 1),
}
LEARNING_RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
BATCH_SIZES = {
    32: "32 (the assignment's)",
    128: "128 (fast demo, not the assignment's)",
    256: "256 (fast demo, not the assignment's)",
}
TRAIN_SIZES = {
    ALL_IMAGES: "all 60,000 (the assignment's)",
    10000: "10,000 (quick demo subset)",
    5000: "5,000 (quick demo subset)",
    1000: "1,000 (quick demo subset)",
}
ON_COLLAPSE = {
    "restart": "restart with the next seed (same recipe)",
    "stop": "stop and say so",
    "continue": "keep going (to show the class a collapse)",
}
CHOICES = {
    "dataset": DATASETS,
    "lr": LEARNING_RATES,
    "batch_size": BATCH_SIZES,
    "train_size": TRAIN_SIZES,
    "on_collapse": ON_COLLAPSE,
}


def init_state() -> None:
    """Fill the session's sidebar keys: from the address for a new tab, else the defaults."""
    if "_config_read_from_url" not in st.session_state:  # a new tab, or the same tab refreshed
        st.session_state["_config_read_from_url"] = True
        for key, value in config_from_url().items():
            st.session_state.setdefault(key, value)
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


# The sidebar's choices that differ from the defaults also live in the page's address, so that a
# refresh (or a bookmark, or a link sent to a student) shows the same configuration and, while it
# trains, the same live training.


def _parse(text: str, default: object) -> object:
    if isinstance(default, bool):
        return text in ("1", "true", "True")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


def config_from_url() -> dict:
    """The sidebar values in the address; a value the widgets could not show is ignored."""
    return config_from_params(st.query_params.to_dict())


def config_from_params(params: Mapping[str, str]) -> dict:
    """The sidebar values among address parameters, each checked on its own: one the widgets could not
    show (unknown choice, out of range, not a number, over-long) is left out and the others apply."""
    values = {}
    for key, default in DEFAULTS.items():
        text = params.get(key)
        if not isinstance(text, str) or len(text) > MAX_PARAM_CHARS:
            continue
        try:
            value = _parse(text, default)
        except ValueError:
            continue
        if key in CHOICES:
            if value not in CHOICES[key]:
                continue
        elif isinstance(value, int) and not isinstance(value, bool):
            lo, hi = RANGES.get(key, (0, 2**31 - 1))
            if not lo <= value <= hi:
                continue
        values[key] = value
    return values


def _text(value: object) -> str:
    return "1" if value is True else f"{value:g}" if isinstance(value, float) else str(value)


def config_params() -> dict[str, str]:
    """The session's sidebar values that differ from the defaults, as address parameters."""
    init_state()
    return {key: _text(st.session_state[key]) for key, default in DEFAULTS.items() if st.session_state[key] != default}


def config_to_url() -> None:
    """Write the session's values that differ from the defaults into the address (a page's selection
    there, see ui/share.py, stays)."""
    others = {key: value for key, value in st.query_params.to_dict().items() if key not in DEFAULTS}
    wanted = {**config_params(), **others}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def select_params(params: Mapping[str, str]) -> None:
    """Move the sidebar to the configuration of address parameters (defaults for what they leave out or
    the widgets could not show); before the widgets are drawn."""
    for key, value in {**DEFAULTS, **config_from_params(params)}.items():
        st.session_state[key] = value


def current_preset() -> str | None:
    """The preset whose training settings the session has, or None (custom settings)."""
    return preset_of(selected_config())


def apply_preset(name: str) -> None:
    """A preset button's callback: move the training settings to that preset's (the rest stays)."""
    select_config(PRESETS[name].apply(selected_config()))


def reset_to_defaults() -> None:
    for key, value in DEFAULTS.items():
        if key != "dataset":
            st.session_state[key] = value


def select_config(config: TrainConfig) -> None:
    """Move the sidebar to a config (use as a button callback, before the widgets are drawn)."""
    for key in KEYS:
        st.session_state[key] = _widget_value(key, getattr(config, key))


def selected_config() -> TrainConfig:
    """The config the sidebar shows (defaults until the sidebar has been drawn)."""
    init_state()
    s = st.session_state
    return TrainConfig(
        q1=s.q1,
        q2=s.q2,
        k=s.k,
        epochs=s.epochs,
        lr=s.lr,
        batch_size=s.batch_size,
        train_size=s.train_size or None,
        seed=int(s.seed),
        dataset=s.dataset,
        mean_init=bool(s.mean_init),
        on_collapse=s.on_collapse,
    )


def describe(config: TrainConfig) -> str:
    """The one-line summary of a config shown under the sidebar and beside stored runs."""
    size = "60,000" if config.train_size is None else f"{config.train_size:,}"
    return (
        f"Q1={config.q1}, Q2={config.q2}, K={config.k} · {epochs_text(config.epochs)} · lr {config.lr:g} · "
        f"batch {config.batch_size} · {size} images · seed {config.seed}"
        + (" · output starts at the mean" if config.mean_init else "")
    )
