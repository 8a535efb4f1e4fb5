"""The latent space as it forms (convae.snapshots): when snapshots are taken, how big they are, that they
go through the store and the kept epochs (damaged ones refused with a message, nothing else lost), and
the Latent space and Inside pages that show them, from a stored run and from a training that runs now."""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import pytest
import streamlit as st
import torch

import convae.jobs
from convae.analysis import encode, pca_2d
from convae.data import load_splits
from convae.model import AutoEncoder
from convae.resume import load_state, save_state
from convae.snapshots import (
    MAX_SNAPSHOTS,
    N_IMAGES,
    Mark,
    Plane,
    Snapshots,
    epoch_ends,
    first_epoch_steps,
    plane,
    stored,
)
from convae.store import RunStore, load_checkpoint
from convae.train import train
from tests.conftest import N_VAL, tiny_config
from tests.test_app import assert_clean, config_state, open_page, texts
from tests.test_app_lesson import chart, store_run, values
from tests.test_jobs import wait_until
from tests.test_resume import interrupted
from ui import formation
from ui.services import services

LATENT, INSIDE = "app_pages/latent.py", "app_pages/inside.py"
# 300 training images at batch 32: 10 steps an epoch, so snapshots after steps 1, 2 and 5 of the first
FIRST = ["before training", "epoch 1, 10%", "epoch 1, 20%", "epoch 1, 50%", "end of epoch 1"]


def labels(snaps) -> list[str]:
    return [m.label for m in snaps.marks]


# ---------------------------------------------------------------------------------- schedule


def test_the_schedule_looks_early_in_the_first_epoch_and_at_every_epoch_end() -> None:
    assert first_epoch_steps(1875) == (19, 94, 375, 938)  # MNIST at batch 32
    assert first_epoch_steps(10) == (1, 2, 5)
    assert first_epoch_steps(1) == ()  # a one-step epoch: only its end
    assert epoch_ends(10) == frozenset(range(1, 11))
    long = epoch_ends(1000)
    assert len(long) == 20 and 1000 in long and 50 in long and 49 not in long
    assert MAX_SNAPSHOTS == 25
    assert Mark(1, 0, 10).label == "before training" and Mark(3, 10, 10).label == "end of epoch 3"


def test_snapshots_of_k_64_stay_small() -> None:
    """The most a run takes (25 snapshots of 2,000 codes of K = 64): 12.8 MB while training, 400 KB stored."""
    gen = torch.Generator().manual_seed(0)
    marks = [Mark(1, s, 1875) for s in (0, 19, 94, 375, 938)] + [Mark(e, 1875, 1875) for e in range(1, 21)]
    codes = [torch.randn(N_IMAGES, 64, generator=gen) * (i + 1) for i in range(len(marks))]
    snaps = Snapshots(tuple(marks), tuple(codes))
    assert len(snaps) == MAX_SNAPSHOTS
    raw, kept = io.BytesIO(), io.BytesIO()
    torch.save(snaps.to_dict(), raw)
    torch.save(stored(snaps), kept)
    assert 12_800_000 < len(raw.getvalue()) < 12_900_000  # in the kept epoch (convae.resume), for resuming
    assert len(kept.getvalue()) < 410_000  # in the checkpoint: 25 x 2,000 x 2 float32 coordinates
    p = plane(snaps)
    assert tuple(p.coords.shape) == (MAX_SNAPSHOTS, N_IMAGES, 2) and p.coords.dtype == torch.float32


def test_the_plane_is_the_final_snapshots_pca_and_its_axes_hold_every_snapshot() -> None:
    gen = torch.Generator().manual_seed(1)
    codes = tuple(torch.randn(500, 5, generator=gen) * s for s in (0.1, 1.0, 3.0))
    snaps = Snapshots(tuple(Mark(1, s, 10) for s in (0, 5, 10)), codes)
    p = plane(snaps)
    final = pca_2d(codes[-1].float())
    torch.testing.assert_close(p.coords[-1], final.coords, atol=1e-4, rtol=1e-4)
    assert p.explained == pytest.approx(tuple(final.explained.tolist()))
    (x0, x1), (y0, y1) = p.limits
    for frame in p.coords.float():
        inside = (frame[:, 0] >= x0) & (frame[:, 0] <= x1) & (frame[:, 1] >= y0) & (frame[:, 1] <= y1)
        assert inside.float().mean() > 0.99
    two = Snapshots(snaps.marks, tuple(c[:, :2] for c in codes))
    assert torch.equal(plane(two).coords, torch.stack(two.codes))  # K = 2: the codes themselves


# ------------------------------------------------------------------------------------ training


def test_a_run_keeps_its_snapshots_and_hands_them_out_with_copies_of_the_weights(splits) -> None:
    config = tiny_config(k=3, epochs=2, train_size=None)
    events = []
    result = train(config, splits, on_event=events.append, device="cpu")
    snaps = result.snapshots
    assert labels(snaps) == [*FIRST, "end of epoch 2"]
    assert all(c.shape == (N_VAL, 3) and c.dtype == torch.float32 for c in snaps.codes)
    torch.manual_seed(config.seed)  # the untrained model, as train() draws it
    untrained = AutoEncoder(config.q1, config.q2, config.k)
    torch.testing.assert_close(snaps.codes[0], encode(untrained, splits.val_images))
    final = encode(result.model, splits.val_images)
    torch.testing.assert_close(snaps.codes[-1], final)
    assert not torch.allclose(snaps.codes[0], final, atol=0.05)

    with_weights = [p for p in events if p.weights is not None]
    assert [p.weights.label for p in with_weights] == [*FIRST, "end of epoch 2"]
    assert [len(p.snapshots) for p in with_weights] == [1, 2, 3, 4, 5, 6]
    assert all(p.kind == "epoch" for p in with_weights if p.weights.label.startswith("end"))
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(with_weights[-1].weights.state[name], tensor), name  # a copy, taken at the end
    assert with_weights[-1].weights.state["encoder.net.0.weight"] is not result.model.encoder.net[0].weight


def test_a_resumed_run_keeps_the_snapshots_it_had(splits, tmp_path: Path) -> None:
    config = tiny_config(k=3, epochs=3, train_size=None)
    whole = train(config, splits, device="cpu")
    kept = interrupted(config, splits, 1, tmp_path)  # stopped after epoch 1, read back from disk
    assert labels(kept.snapshots) == FIRST
    resumed = train(config, splits, device="cpu", resume=kept)
    assert labels(resumed.snapshots) == labels(whole.snapshots) == [*FIRST, "end of epoch 2", "end of epoch 3"]
    for a, b in zip(resumed.snapshots.codes, whole.snapshots.codes, strict=True):
        torch.testing.assert_close(a, b)


def test_damaged_snapshots_in_a_kept_epoch_are_dropped_and_the_run_goes_on(splits, tmp_path: Path, caplog) -> None:
    config = tiny_config(k=3, epochs=2, train_size=None)
    kept = interrupted(config, splits, 1, tmp_path)
    d = kept.to_dict()
    d["snapshots"]["codes"] = d["snapshots"]["codes"].half()  # float16: not what a run writes
    path = tmp_path / "damaged.resume"
    torch.save(d, path)
    with caplog.at_level(logging.WARNING, logger="convae.resume"):
        state = load_state(path, config)
    assert state.snapshots is None and state.epoch == 1  # the weights, Adam and history are kept
    assert any("snapshots kept with" in r.message and "not float32" in r.message for r in caplog.records)
    resumed = train(config, splits, device="cpu", resume=state)
    assert labels(resumed.snapshots) == ["end of epoch 2"]  # what it took after the damage
    save_state(tmp_path / "again.resume", kept)  # and an intact one reads back whole
    assert labels(load_state(tmp_path / "again.resume", config).snapshots) == FIRST


# --------------------------------------------------------------------------------------- store


@pytest.fixture(scope="module")
def k3_result(splits):
    return train(tiny_config(k=3, epochs=2, train_size=None), splits, device="cpu")


def test_the_store_keeps_the_plane_with_the_run(k3_result, tmp_path: Path) -> None:
    run = RunStore(tmp_path, shipped=None).save(k3_result, torch.zeros(10, 3))
    assert isinstance(run.snapshots, Plane) and run.snapshots_note == ""
    expected = plane(k3_result.snapshots)
    assert run.snapshots.marks == expected.marks and run.snapshots.images == N_VAL
    assert torch.equal(run.snapshots.coords, expected.coords)
    assert run.snapshots.explained == pytest.approx(expected.explained)


def _damage(what: str, d: dict) -> None:
    s = d["snapshots"]
    if what == "not a table":
        d["snapshots"] = "snapshots"
    elif what == "float16":
        s["coords"] = s["coords"].half()
    elif what == "huge":
        s["coords"][2, 0, 1] = 1e30
    elif what == "nan":
        s["coords"][0, 0, 0] = float("nan")
    elif what == "wide":
        s["coords"] = torch.zeros(len(s["marks"]), 10, 3)
    elif what == "too many images":
        s["coords"] = torch.zeros(len(s["marks"]), N_IMAGES + 1, 2)
    elif what == "order":
        s["marks"] = s["marks"][::-1]
    elif what == "too many":
        s["marks"] = [{"epoch": 1, "step": i, "steps": 100} for i in range(MAX_SNAPSHOTS + 1)]
    elif what == "mark":
        s["marks"][0] = {"epoch": True, "step": 0, "steps": 10}
    elif what == "sparse":
        s["coords"] = s["coords"].to_sparse()
    elif what == "explained":
        s["explained"] = [1.5, 0.2]


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")  # torch's own, for the sparse case
@pytest.mark.parametrize(
    ("what", "reason"),
    [
        ("not a table", "not a table"),
        ("float16", "not float32"),
        ("huge", "absurdly large"),
        ("nan", "not finite"),
        ("wide", "expected (6, 1 to 2000, 2)"),
        ("too many images", "expected (6, 1 to 2000, 2)"),
        ("order", "not in the order"),
        ("too many", "26 snapshot marks"),
        ("mark", "not three whole numbers"),
        ("explained", "fractions between 0 and 1"),
        ("sparse", "not float32"),
    ],
)
def test_damaged_snapshots_in_a_checkpoint_are_refused_and_the_model_is_kept(
    k3_result, tmp_path: Path, what: str, reason: str
) -> None:
    path = RunStore(tmp_path, shipped=None).save(k3_result, torch.zeros(10, 3)).path
    d = torch.load(path, weights_only=True)
    _damage(what, d)
    torch.save(d, path)
    run = load_checkpoint(path)
    assert run.snapshots is None
    assert (
        run.snapshots_note.startswith("The snapshots stored with this model are damaged")
        and reason in run.snapshots_note
    )
    for name, tensor in k3_result.model.state_dict().items():
        assert torch.equal(run.model.state_dict()[name], tensor), name


# ---------------------------------------------------------------------------------- the pages


@pytest.mark.usefixtures("app_env")
def test_the_shipped_model_says_it_has_no_snapshots() -> None:
    at = open_page(LATENT)
    assert_clean(at)
    assert "How the latent space formed" in texts(at.subheader)
    assert any("has no snapshots of its latent space as it formed" in i for i in texts(at.info))
    assert "formation" not in [c.key for c in at.get("plotly_chart")]


def frame(at) -> dict:
    return chart(at, formation.CHART_KEY)


def points(fig: dict) -> list[float]:
    return [x for t in fig["data"][:10] for x in values(t["x"])]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_latent_page_plays_the_snapshots_in_fixed_axes(app_env: Path, data_root: Path, k: int) -> None:
    config = tiny_config(k=k, epochs=2, train_size=None, mean_init=True)
    store_run(app_env, load_splits(data_root), config)
    at = open_page(LATENT, **config_state(config))
    assert_clean(at)
    slider = at.select_slider(key=formation.FRAME_KEY)
    assert slider.options == [*FIRST, "end of epoch 2"] and slider.value == 5  # the options are indices
    last = frame(at)
    title = last["layout"]["xaxis"]["title"]["text"]
    assert title.startswith({1: "z (the 1-D latent code)", 2: "z1 (", 3: "PC 1 of the final snapshot"}[k])
    assert last["layout"]["title"]["text"].startswith("end of epoch 2 · validation MSE 0.")
    assert sum(len(values(t["x"])) for t in last["data"][:10]) == N_VAL  # the snapshot images, by class
    ranges = (last["layout"]["xaxis"]["range"], last["layout"]["yaxis"]["range"])

    slider.set_value(0).run()
    assert_clean(at)
    first = frame(at)
    assert first["layout"]["title"]["text"] == "before training"
    assert points(first) != points(last)
    assert (first["layout"]["xaxis"]["range"], first["layout"]["yaxis"]["range"]) == ranges  # the axes stay
    at.toggle(key=formation.ZOOM_KEY).set_value(True).run()  # fitted to the first snapshot alone: narrower
    fitted = frame(at)["layout"]["xaxis"]["range"]
    assert fitted[1] - fitted[0] < ranges[0][1] - ranges[0][0]
    at.toggle(key=formation.ZOOM_KEY).set_value(False).run()

    # Play from the end starts at the first snapshot and steps one snapshot per run, then stops at the last.
    at.select_slider(key=formation.FRAME_KEY).set_value(5).run()
    at.button(key="formation_play").click().run()
    assert_clean(at)
    assert at.session_state[formation.PLAY_KEY] and at.button(key="formation_play").label == "Pause"
    shown = [frame(at)["layout"]["title"]["text"]]
    for _ in range(10):
        at.run()
        assert_clean(at)
        shown.append(frame(at)["layout"]["title"]["text"].split(" · ")[0])
        if at.session_state[formation.PLAY_KEY]:  # the slider shows where the play is, and cannot be moved
            playing_slider = at.select_slider(key=formation.PLAYING_SLIDER_KEY)
            assert playing_slider.disabled and playing_slider.value == len(shown) - 1
        if not at.session_state[formation.PLAY_KEY]:
            break
    assert shown == [*FIRST, "end of epoch 2"]
    assert at.button(key="formation_play").label == "Play"

    # Pause in the middle keeps that snapshot.
    at.button(key="formation_play").click().run()
    at.run()
    at.button(key="formation_play").click().run()
    assert not at.session_state[formation.PLAY_KEY]
    assert at.select_slider(key=formation.FRAME_KEY).value == 1
    at.run()
    assert frame(at)["layout"]["title"]["text"] == "epoch 1, 10%"


def test_the_latent_page_says_when_stored_snapshots_are_damaged(app_env: Path, data_root: Path) -> None:
    config = tiny_config(k=3, epochs=1, train_size=None, mean_init=True)
    store_run(app_env, load_splits(data_root), config)
    path = app_env / f"{config.key()}.pt"
    d = torch.load(path, weights_only=True)
    d["snapshots"]["coords"][1, 2, 0] = float("inf")
    torch.save(d, path)
    at = open_page(LATENT, **config_state(config))
    assert_clean(at)
    assert any("The snapshots stored with this model are damaged" in w for w in texts(at.warning))
    assert any("has no snapshots" in i for i in texts(at.info))
    assert "latent" in [c.key for c in at.get("plotly_chart")]  # the rest of the page is there


@pytest.mark.usefixtures("app_env")
def test_the_pages_follow_a_training_that_runs_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """A training held after its first epoch: the latent page shows the snapshots so far, the inside page
    follows its weights; once it ends both show the stored run."""
    gate, real = threading.Event(), convae.jobs.train

    def held(config, splits, on_event, *args, **kw):
        def events(p) -> None:
            on_event(p)
            if p.kind == "epoch" and p.epoch == 1:
                gate.wait(60)

        return real(config, splits, events, *args, **kw)

    monkeypatch.setattr(convae.jobs, "train", held)
    config = tiny_config(k=3, epochs=2, train_size=None, mean_init=True)
    at = open_page("dashboard.py", **config_state(config))
    at.button(key="train_button").click().run()
    jobs = services().jobs
    job_id = at.session_state["job_id"]
    try:
        assert wait_until(lambda: len(jobs.snapshot(job_id).epochs) == 1, 60)
        view = jobs.snapshot(job_id)
        assert view.state == "running" and labels(view.snapshots) == FIRST
        assert view.weights.label == "end of epoch 1"

        at.switch_page(LATENT).run()
        assert_clean(at)
        assert "How the latent space formed (training now)" in texts(at.subheader)
        newest = at.select_slider(key=formation.PLAYING_SLIDER_KEY)  # following the newest: moved by the page
        assert newest.options == FIRST and newest.value == 4 and newest.disabled
        assert "PC 1 of the newest snapshot" in frame(at)["layout"]["xaxis"]["title"]["text"]
        at.toggle(key=formation.FOLLOW_NEWEST_KEY).set_value(False).run()  # browse the snapshots so far
        assert_clean(at)
        at.select_slider(key=formation.FRAME_KEY).set_value(0).run()
        assert frame(at)["layout"]["title"]["text"] == "before training"

        at.switch_page(INSIDE).run()
        assert_clean(at)
        follow = at.toggle(key="inside_follow")
        assert follow.label == "Follow the training" and follow.value  # no stored model yet: on
        assert any("the weights as they were **end of epoch 1**" in i for i in texts(at.info))
        assert len(texts(at.subheader)) == 4
        assert len(values(chart(at, "inside-code")["data"][0]["y"])) == 3
        live_filters = [img for img in at.image if "filters, 5 × 5 each" in img.captions[0]]
        assert live_filters
    finally:
        gate.set()
    done = jobs.wait(job_id, 60)
    assert done.state == "done", done.error
    at.run()  # the fragment sees the job gone and the page shows the stored model
    assert_clean(at)
    assert not at.get("toggle") or not at.toggle(key="inside_follow").value
    assert len(texts(at.subheader)) == 4
    at.switch_page(LATENT).run()
    assert_clean(at)
    assert "How the latent space formed" in texts(at.subheader)
    assert at.select_slider(key=formation.FRAME_KEY).options == [*FIRST, "end of epoch 2"]
    st.cache_resource.clear()
