"""Shared fixtures: a small generated MNIST-format data set and a tiny model trained on it.

Nothing here reads the real MNIST files or the network: the data are written by
`convae.synthetic.make_synthetic` into pytest's temporary folders.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from convae.analysis import class_means, encode
from convae.data import load_splits
from convae.synthetic import make_synthetic
from convae.train import TrainConfig, TrainResult, train

# The models here are tiny: one intra-op thread is many times faster than several threads
# that spin against each other (and against other processes) on a small shared machine.
torch.set_num_threads(1)

N_TRAIN = 300
N_VAL = 100  # Figure 1 needs 100 validation images; 10 of each class


def tiny_config(**changes) -> TrainConfig:
    """A config small enough to train in well under a second on one CPU core."""
    base = {"q1": 4, "q2": 4, "k": 2, "epochs": 1, "train_size": 200, "seed": 0}
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding small, valid MNIST IDX files (300 training, 100 validation images)."""
    return make_synthetic(tmp_path_factory.mktemp("data"), n_train=N_TRAIN, n_val=N_VAL)


@pytest.fixture(scope="session")
def splits(data_root: Path):
    return load_splits(data_root)


@pytest.fixture(scope="session")
def trained(splits) -> TrainResult:
    """A tiny auto-encoder (Q1=Q2=4, K=2) trained for one epoch on 200 synthetic images."""
    return train(tiny_config(), splits, device="cpu")


@pytest.fixture(scope="session")
def means(trained: TrainResult, splits) -> torch.Tensor:
    """Class means (Eq. 2) of the tiny model on the synthetic validation set, (10, 2)."""
    return class_means(encode(trained.model, splits.val_images), splits.val_labels)


@pytest.fixture
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point CONVAE_DATA_DIR and CONVAE_RUNS_DIR at empty temporary folders, so that no test can
    read the project's data/ or write its runs/ by falling back on a default."""
    monkeypatch.setenv("CONVAE_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("CONVAE_RUNS_DIR", str(tmp_path / "env-runs"))
    return tmp_path


@pytest.fixture
def app_env(data_root: Path, isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """For the dashboard's tests: the synthetic data, an empty runs folder (returned), no teacher key, and
    fresh `st.cache_resource` objects (`ui.services.services()` reads the environment when first created)."""
    import streamlit as st

    monkeypatch.setenv("CONVAE_DATA_DIR", str(data_root))
    monkeypatch.delenv("CONVAE_TEACHER_KEY", raising=False)
    st.cache_resource.clear()
    yield isolated_dirs / "env-runs"
    st.cache_resource.clear()


@pytest.fixture
def shipped(app_env: Path) -> None:
    """The shipped model of the default config must exist: the dashboard promises it on first launch."""
    from convae.store import SHIPPED_DIR, RunStore

    if RunStore(root=app_env, shipped=SHIPPED_DIR).get(TrainConfig()) is None:
        pytest.fail(f"No shipped model for the default config under {SHIPPED_DIR}; run `make seed`.")
