"""Faults a class meets, through `streamlit.testing.v1.AppTest` on small generated data.

A refreshed tab keeps its configuration (it lives in the page's address) and so finds its training
again; an address with values the sidebar cannot show falls back to the defaults for those; Stop
ends the job and the page says what was kept. docs/reliability.md lists the faults tried by hand, and
scripts/loadtest.py (tests/test_loadtest.py) those that need several browsers at once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import convae.engines as engines
from ui.services import services

DASHBOARD = str(Path(__file__).resolve().parent.parent / "dashboard.py")


def sidebar_config(at: AppTest) -> str:
    return [c.value for c in at.sidebar.caption if c.value.startswith("Q1=")][0]


@pytest.mark.usefixtures("app_env")
def test_the_address_keeps_the_sidebar_config() -> None:
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


@pytest.mark.usefixtures("app_env")
def test_values_the_sidebar_cannot_show_are_ignored() -> None:
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    at.query_params.update({"q1": "999", "k": "-1", "lr": "0.5", "seed": "x", "batch_size": "33", "q2": "16"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert sidebar_config(at).startswith("Q1=32, Q2=16, K=10 · 10 epochs · lr 0.001 · batch 32")


def slow_steps(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every training step takes at least `seconds`: the test, not the machine, decides where Stop lands."""
    real = engines.EagerSteps.step

    def slow(self, step: int) -> int:
        time.sleep(seconds)
        return real(self, step)

    monkeypatch.setattr(engines.EagerSteps, "step", slow)


def test_stop_in_the_first_epoch_keeps_nothing_and_says_so(app_env: Path, monkeypatch) -> None:
    """Stop cancels the running job; in its first epoch nothing is kept, and the page says so, with Train
    enabled. (A Stop after an epoch keeps that epoch's model: tests/test_app_resume.py.)

    How soon (the Stop button waits up to a second, so the click's own rerun usually shows it) depends
    on the machine's load: scripts/responsiveness.py and scripts/loadtest.py print that time."""
    slow_steps(monkeypatch, 0.5)  # 10 steps of 0.5 s: the first epoch lasts 5 s at least
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    for key, value in {"q1": 4, "q2": 4, "k": 2, "epochs": 3}.items():
        at.session_state[key] = value
    at.run()
    at.button(key="train_button").click().run()
    jobs = services().jobs
    job_id = at.session_state["job_id"]
    view = jobs.snapshot(job_id)
    assert view is not None and view.state.active
    at.button(key="stop_button").click().run()
    view = jobs.wait(job_id, timeout=60)
    assert view.state == "cancelled" and view.stopped_after is None and view.epochs == []
    at.run()  # the page once the job has ended, however long that took
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("Stopped during the first epoch: nothing was kept") for w in warnings), warnings
    assert not at.button(key="train_button").disabled
    assert at.button(key="train_button").label == "Train"  # nothing to resume
    assert list(app_env.rglob("*.pt")) == [] and list(app_env.rglob("*.resume")) == []
