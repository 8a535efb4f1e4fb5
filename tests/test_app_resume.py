"""The dashboard's side of runs that did not finish, through `streamlit.testing.v1.AppTest`: Stop after
an epoch keeps that model (labelled, on every page) and Resume ends the run; after a restart the Train
page lists an interrupted run and resumes it with one click; a damaged queue file is reported.

A restart is what a fresh `st.cache_resource` sees: a new job manager on the same runs folder, with
the kept epoch and the queue file a killed server left (tests/test_browser_resume.py kills a real one).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st

import convae.engines as engines
from convae.queue_file import NAME, Entry, QueueFile
from convae.store import RunStore
from tests.conftest import tiny_config
from tests.test_app import assert_clean, config_state, open_page, texts
from tests.test_jobs import wait_until
from tests.test_reliability import slow_steps
from tests.test_resume import interrupted
from ui.services import services

CONFIG = tiny_config(k=3, train_size=None, epochs=3, mean_init=True)  # 300 images: 10 steps an epoch


def test_stop_after_an_epoch_keeps_the_model_and_resume_ends_the_run(app_env: Path, monkeypatch) -> None:
    full_speed = engines.EagerSteps.step
    slow_steps(monkeypatch, 0.15)  # 1.5 s an epoch: Stop lands in the second or a later epoch
    at = open_page("dashboard.py", **config_state(CONFIG))
    at.button(key="train_button").click().run()
    jobs = services().jobs
    job_id = at.session_state["job_id"]
    assert wait_until(lambda: len(jobs.snapshot(job_id).epochs) >= 1, 60)
    at.button(key="stop_button").click().run()
    view = jobs.wait(job_id, 60)
    if view.state == "done":
        pytest.skip("the machine ran the whole run before Stop reached it")
    n = view.stopped_after
    assert view.state == "cancelled" and n is not None and 1 <= n < 3
    at.run()
    assert_clean(at)
    assert any(f"Stopped after epoch {n} of 3: the model of epoch {n} is kept" in w for w in texts(at.warning))
    assert at.button(key="resume_button").label == f"Resume (the last {3 - n} epoch{'s' if 3 - n > 1 else ''})"
    assert at.sidebar.button(key="train_button").label == "Resume"
    assert any(f"Model stopped after epoch {n} of 3" in w for w in texts(at.sidebar.warning))

    monkeypatch.setattr(engines.EagerSteps, "step", full_speed)
    for page in ("app_pages/reconstructions.py", "app_pages/compare.py"):  # a stored run every page can use
        at.switch_page(page).run()
        assert_clean(at)
    assert f"stopped after epoch {n} of 3" in list(at.dataframe[0].value["state"])
    at.switch_page("app_pages/train.py").run()
    at.button(key="resume_button").click().run()
    done = jobs.wait(at.session_state["job_id"], 120)
    assert done.state == "done" and done.resumed_from == n and [e["epoch"] for e in done.epochs] == [1, 2, 3]
    at.run()
    assert_clean(at)
    assert any("Done: validation MSE" in s for s in texts(at.success))
    assert not any(b.key == "resume_button" for b in at.button)  # nothing left to resume
    assert list(app_env.glob("*.resume")) == [] and services().store.get(CONFIG).complete


def test_after_a_restart_the_train_page_offers_to_resume(app_env: Path, splits, tmp_path: Path) -> None:
    """What a server killed after epoch 2 leaves: the kept epoch and its 'running' queue entry."""
    store = RunStore(app_env, shipped=None)
    store.keep_epoch(interrupted(CONFIG, splits, 2, tmp_path))
    dead = QueueFile(app_env)
    dead.write([Entry(CONFIG, "running", False, 1.0)])
    dead.close()
    st.cache_resource.clear()  # the restarted server

    at = open_page("dashboard.py")  # the defaults: the run is listed among those that did not finish
    assert_clean(at)
    assert any(s == "Runs that did not finish" for s in texts(at.subheader))
    assert any("interrupted after epoch 2 of 3" in m for m in texts(at.markdown))
    at.button(key=f"show-kept-{CONFIG.key()}").click().run()  # "Show it" selects its configuration
    assert_clean(at)
    assert any(w.startswith("**Interrupted after epoch 2 of 3.**") for w in texts(at.warning))
    assert any(s == "Loss history so far (epochs 1 to 2 of 3)" for s in texts(at.subheader))
    assert [c.key for c in at.get("plotly_chart")] == ["kept_chart"]
    assert at.sidebar.button(key="train_button").label == "Resume"
    assert any("the run was interrupted after epoch 2 of 3" in w for w in texts(at.sidebar.warning))

    at.button(key="resume_button").click().run()  # one click
    done = services().jobs.wait(at.session_state["job_id"], 120)
    assert done.state == "done" and done.resumed_from == 2 and len(done.epochs) == 3
    at.run()
    assert_clean(at)
    assert any("Done: validation MSE" in s for s in texts(at.success))
    assert services().store.kept_epoch(CONFIG) is None and services().store.get(CONFIG).complete


def test_a_run_cut_off_in_its_first_epoch_says_nothing_was_kept(app_env: Path) -> None:
    dead = QueueFile(app_env)
    dead.write([Entry(CONFIG, "running", False, 1.0)])
    dead.close()
    st.cache_resource.clear()
    at = open_page("dashboard.py", **config_state(CONFIG))
    assert_clean(at)
    assert any("The server stopped during the first epoch" in w for w in texts(at.warning))
    assert at.sidebar.button(key="train_button").label == "Train"


def test_a_damaged_queue_file_is_reported_and_nothing_else_is_lost(app_env: Path, splits, tmp_path: Path) -> None:
    RunStore(app_env, shipped=None).keep_epoch(interrupted(CONFIG, splits, 1, tmp_path))
    (app_env / NAME).write_text('{"format": "convae-queue", "jobs": [')
    at = open_page("dashboard.py")
    assert_clean(at)
    assert any("queue file" in w and "was damaged" in w for w in texts(at.warning))
    assert any("interrupted after epoch 1 of 3" in m for m in texts(at.markdown))  # still listed
    assert (app_env / (NAME + ".damaged")).is_file()
