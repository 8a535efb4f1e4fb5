"""Blank models: the collapse detector on readings recorded from real MNIST runs, and what a run does
when it collapses (restart with the next seed, stop, or continue), through train() and the job manager."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import convae.collapse as collapse
import convae.train as engine
from convae.collapse import CollapseWatch, Vitals, clean_readings, clean_restarts
from convae.jobs import JobManager, JobState
from convae.store import RunStore, load_checkpoint
from convae.train import Collapsed, History, train
from tests.conftest import tiny_config

RECORDED = Path(__file__).parent / "data" / "collapse_readings.json"


def detected_at(readings: list[dict], blank: float) -> int | None:
    watch = CollapseWatch(blank)
    for r in readings:
        if watch.update(Vitals(**r)):
            return r["step"]
    return None


def recorded_runs() -> list[dict]:
    return json.loads(RECORDED.read_text())


def test_recorded_runs_hold_both_outcomes() -> None:
    """The recording (scripts/collapse_study.py on MNIST) has blank and learning runs to judge."""
    outcomes = [r["outcome"] for r in recorded_runs()]
    assert outcomes.count("blank") >= 10 and outcomes.count("learning") >= 10


@pytest.mark.parametrize("run", recorded_runs(), ids=lambda r: f"K{r['k']}-seed{r['seed']}-{r['outcome']}")
def test_detector_calls_every_recorded_run_right(run: dict) -> None:
    """No miss (every run that ended blank is called a collapse by step 400) and no false alarm."""
    step = detected_at(run["readings"], run["blank_loss"])
    if run["outcome"] == "blank":
        assert step is not None and step <= collapse.LAST_CHECK
    else:
        assert step is None


def test_one_bright_reading_does_not_clear_a_collapse_for_long() -> None:
    blank = 0.112
    dark = [Vitals(s, 0.112, 0.01, -70.0, 1e-8) for s in (50, 75)]
    flash = Vitals(100, 0.112, 0.9, -70.0, 1e-8)  # one bright pixel flickers
    later = [Vitals(s, 0.112, 0.01, -70.0, 1e-8) for s in (125, 150, 175)]
    watch = CollapseWatch(blank)
    calls = [watch.update(v) for v in [*dark, flash, *later]]
    assert calls == [False, False, False, False, False, True]


def test_a_learning_run_with_a_high_loss_but_bright_output_is_not_blank() -> None:
    """Early on a run that learns can still have the all-black loss: its bright pixels tell it apart."""
    watch = CollapseWatch(0.112)
    assert not any(watch.update(Vitals(s, 0.111, 0.6, -20.0, 1e-3)) for s in (50, 75, 100, 125, 150))


class Collapses:
    """Stands in for CollapseWatch: its first `n` instances (attempts) call a collapse at their first reading."""

    def __init__(self, n: int) -> None:
        self.n, self.made = n, 0

    def __call__(self, blank_loss: float) -> CollapseWatch:
        self.made += 1
        watch = CollapseWatch(blank_loss)
        if self.made <= self.n:
            watch.update = lambda v: watch.readings.append(v) or True  # type: ignore[method-assign]
        return watch


CONFIG = {"train_size": 240, "batch_size": 4, "epochs": 1}  # 60 steps: one reading, at step 50


def test_a_collapsed_run_restarts_with_the_next_seed_and_the_same_recipe(splits, monkeypatch) -> None:
    monkeypatch.setattr(engine, "CollapseWatch", Collapses(1))
    events = []
    result = train(tiny_config(**CONFIG), splits, on_event=events.append, device="cpu")
    (restart,) = [e for e in events if e.kind == "restart"]
    assert restart.note == result.history.restarts[0]["note"]
    assert "seed 0 collapsed at step 50" in restart.note and "restarted with seed 1" in restart.note
    assert result.history.seed == 1 and result.history.mean_init is False
    assert result.config.seed == 0  # stored under the configuration asked for
    assert len(result.history.restarts[0]["vitals"]) == 1

    # The restarted run is exactly the recipe with seed 1: the same losses as a run asked for with seed 1.
    monkeypatch.setattr(engine, "CollapseWatch", CollapseWatch)
    direct = train(tiny_config(**CONFIG, seed=1), splits, device="cpu")
    for name in ("train_loss", "val_loss"):
        assert result.history.epochs[0][name] == direct.history.epochs[0][name]
    for (name, p), q in zip(result.model.state_dict().items(), direct.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_after_several_collapsed_seeds_the_restart_starts_at_the_mean_brightness(splits, monkeypatch) -> None:
    monkeypatch.setattr(engine, "CollapseWatch", Collapses(engine.DEFAULT_START_SEEDS))
    result = train(tiny_config(**CONFIG), splits, device="cpu")
    notes = [r["note"] for r in result.history.restarts]
    assert len(notes) == engine.DEFAULT_START_SEEDS
    assert all("mean brightness" not in n for n in notes[:-1]) and "mean brightness" in notes[-1]
    assert result.history.seed == engine.DEFAULT_START_SEEDS and result.history.mean_init is True


def test_stop_on_collapse_says_what_to_do(splits, monkeypatch) -> None:
    monkeypatch.setattr(engine, "CollapseWatch", Collapses(1))
    with pytest.raises(Collapsed, match=r"learned nothing: seed 0 collapsed at step 50.*another seed"):
        train(tiny_config(**CONFIG, on_collapse="stop"), splits, device="cpu")


def test_continue_keeps_training_the_collapsed_run(splits, monkeypatch) -> None:
    monkeypatch.setattr(engine, "CollapseWatch", Collapses(1))
    result = train(tiny_config(**CONFIG, on_collapse="continue"), splits, device="cpu")
    assert result.history.restarts == [] and result.history.seed == 0
    assert len(result.history.vitals) == 1


def test_endless_collapses_give_up_with_a_reason(splits, monkeypatch) -> None:
    monkeypatch.setattr(engine, "CollapseWatch", Collapses(100))
    with pytest.raises(Collapsed, match=f"after {engine.MAX_RESTARTS} restarts"):
        train(tiny_config(**CONFIG), splits, device="cpu")


@pytest.mark.usefixtures("isolated_dirs")
def test_the_job_manager_restarts_and_the_store_keeps_the_notes(tmp_path, data_root, monkeypatch) -> None:
    monkeypatch.setattr(engine, "CollapseWatch", Collapses(1))
    monkeypatch.setattr(engine, "REPORT_EVERY_S", 0.0)  # a point of the curve at every step, however fast
    store = RunStore(tmp_path / "runs", shipped=None)
    jobs = JobManager(store, data_dir=data_root, max_concurrent=1, device="cpu")
    job = jobs.submit(tiny_config(**CONFIG))
    view = jobs.wait(job, timeout=60)
    assert view.state is JobState.DONE, view.error
    assert len(view.restarts) == 1 and "restarted with seed 1" in view.restarts[0]
    assert view.steps and view.steps[0] < view.steps[-1]  # the live curve is the restarted run's, from its start
    saved = load_checkpoint(view.run.path)
    assert saved.history.restarts[0]["note"] == view.restarts[0] and saved.history.seed == 1
    assert saved.config == tiny_config(**CONFIG)


def test_readings_and_restarts_from_a_file_are_checked_and_bounded() -> None:
    good = {"step": 50, "loss": 0.11, "brightest": 0.01, "logit_mean": -70.0, "encoder_grad": 1e-8}
    readings = [good, {"step": "x"}, "junk", {**good, "loss": True}, *[good] * 100]
    cleaned = clean_readings(readings)
    assert cleaned[0] == good and len(cleaned) <= collapse.MAX_READINGS
    assert all(isinstance(r["loss"], float) and not isinstance(r["loss"], bool) for r in cleaned)
    restarts = clean_restarts([{"seed": 0, "step": 50, "next_seed": 1, "note": "<b>x</b>" * 1000}, {"seed": "a"}, 7])
    assert len(restarts) == 1 and len(restarts[0]["note"]) == collapse.MAX_NOTE and restarts[0]["vitals"] == []
    history = History.from_dict({"epochs": [], "restarts": "nonsense", "vitals": None, "seed": "0"})
    assert history.restarts == [] and history.vitals == [] and history.seed is None


def test_readings_of_a_real_run_are_finite(splits) -> None:
    result = train(tiny_config(**CONFIG, on_collapse="continue"), splits, device="cpu")
    (reading,) = result.history.vitals
    assert reading["step"] == 50 and 0 <= reading["brightest"] <= 1
    assert all(math.isfinite(reading[k]) for k in ("loss", "logit_mean", "encoder_grad"))
