"""Faults a class meets, through `streamlit.testing.v1.AppTest` on small generated data.

A refreshed tab keeps its configuration (it lives in the page's address) and so finds its training
again; an address with values the sidebar cannot show falls back to the defaults for those; Stop
leaves the page showing "Stopped." at once. docs/reliability.md lists the faults tried by hand, and
scripts/loadtest.py (tests/test_loadtest.py) those that need several browsers at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import ui

DASHBOARD = str(Path(__file__).resolve().parent.parent / "dashboard.py")


@pytest.fixture
def app_env(data_root: Path, isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONVAE_DATA_DIR", str(data_root))
    st.cache_resource.clear()
    yield isolated_dirs / "env-runs"
    st.cache_resource.clear()


def sidebar_config(at: AppTest) -> str:
    return [c.value for c in at.sidebar.caption if c.value.startswith("Q1=")][0]


def test_the_address_keeps_the_sidebar_config(app_env: Path) -> None:
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    at.run()
    assert dict(at.query_params) == {}  # the defaults make a plain address
    at.slider(key="q1").set_value(8).run()
    at.slider(key="epochs").set_value(3).run()
    at.selectbox(key="train_size").set_value(1000).run()
    assert not at.exception
    assert dict(at.query_params) == {"q1": "8", "epochs": "3", "train_size": "1000"}

    refreshed = AppTest.from_file(DASHBOARD, default_timeout=60)  # a new session with that address
    refreshed.query_params.update({"q1": "8", "epochs": "3", "train_size": "1000"})
    refreshed.run()
    assert not refreshed.exception
    assert sidebar_config(refreshed).startswith("Q1=8, Q2=32, K=10 · 3 epochs · lr 0.001 · batch 32 · 1,000 images")


def test_values_the_sidebar_cannot_show_are_ignored(app_env: Path) -> None:
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    at.query_params.update({"q1": "999", "k": "-1", "lr": "0.5", "seed": "x", "batch_size": "33", "q2": "16"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert sidebar_config(at).startswith("Q1=32, Q2=16, K=10 · 10 epochs · lr 0.001 · batch 32")


def test_stop_shows_stopped_in_the_same_rerun(app_env: Path) -> None:
    """The Stop button waits (up to a second) for the job to end, so its rerun shows the outcome."""
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    for key, value in {"q1": 128, "q2": 128, "k": 64, "epochs": 30}.items():  # seconds of training
        at.session_state[key] = value
    at.run()
    at.button(key="train_button").click().run()
    jobs = ui.services().jobs
    job_id = at.session_state["job_id"]
    view = jobs.snapshot(job_id)
    assert view is not None and view.state.active
    at.button(key="stop_button").click().run()
    assert jobs.snapshot(job_id).state == "cancelled"
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("Stopped. Nothing was saved") for w in warnings), warnings
    assert not at.button(key="train_button").disabled
