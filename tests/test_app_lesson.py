"""The lesson pages through `streamlit.testing.v1.AppTest`, on small generated data: the bottleneck sweep
(both sweeps, "fill the gaps", a picked point, no data), inside the network (a picked digit, K = 1 and 2,
a blank model, no model, no data), and PCA, the linear baseline, on the Reconstructions, Latent space
and Train pages. Clicks on the charts themselves are in the browser test (test_browser_lesson.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from convae.analysis import class_means, encode
from convae.data import load_splits
from convae.store import RunStore
from convae.sweep import K_GRID, Q_GRID
from convae.train import TrainConfig, evaluate, train
from tests import test_app
from tests.conftest import tiny_config
from tests.test_app import NO_MODEL, RUN_TIMEOUT, assert_clean, config_state, open_page, texts

# The dashboard tests' fixtures: synthetic data and an empty store, the shipped model, K = 1 and 2 runs.
small_k_runs = test_app.small_k_runs

SWEEP, INSIDE = "app_pages/sweep.py", "app_pages/inside.py"


def chart(at: AppTest, key: str) -> dict:
    """The plotly figure (as JSON) of the chart with this key."""
    found = [c for c in at.get("plotly_chart") if c.key == key]
    assert found, f"no chart {key!r} among {[c.key for c in at.get('plotly_chart')]}"
    return json.loads(found[0].proto.spec)


def values(data: list | dict) -> list:
    """A plotly array as a list: plain JSON, or numpy's typed-array encoding ({dtype, bdata})."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"])).tolist()
    return list(data)


def trace_named(fig: dict, start: str) -> dict:
    found = [t for t in fig["data"] if str(t.get("name", "")).startswith(start)]
    assert found, f"no trace named {start!r}*: {[t.get('name') for t in fig['data']]}"
    return found[0]


def store_run(app_env: Path, splits, config: TrainConfig, blank: bool = False) -> None:
    result = train(config, splits, device="cpu")
    if blank:
        with torch.no_grad():
            result.model.decoder.net[-2].bias.fill_(-50.0)  # sigmoid(-50) = 0: a blank output
        result.history.epochs[-1]["val_loss"] = evaluate(result.model, splits.val_images)
    RunStore(app_env, shipped=None).save(
        result, class_means(encode(result.model, splits.val_images), splits.val_labels)
    )


# ------------------------------------------------------------------------------------ sweep


@pytest.mark.usefixtures("shipped")
def test_sweep_page_with_the_shipped_model() -> None:
    at = open_page(SWEEP)
    assert_clean(at)
    assert any("Q1 = 32 and Q2 = 32" in c for c in texts(at.caption))
    fig = chart(at, "sweep-k-setting")
    pca = trace_named(fig, "PCA with K components")
    assert len(pca["x"]) == 64 and pca["y"][0] > pca["y"][-1]  # PCA's error falls with K
    # The shipped recipe runs at Q1 = Q2 = 32 (the seed model, and the shipped sweep's K values if any).
    recipe = sorted(
        (c for c in test_app.shipped_configs() if c.dataset == "mnist" and (c.q1, c.q2) == (32, 32)),
        key=lambda c: c.k,
    )
    shipped_dot = trace_named(fig, "the assignment's recipe")
    assert shipped_dot["x"] == [c.k for c in recipe] and TrainConfig().key() in shipped_dot["customdata"]
    assert trace_named(fig, "the model shown")["x"] == [10]  # the ring on the sidebar's model
    assert fig["layout"]["xaxis"]["type"] == "log"
    by_params = chart(at, "sweep-k-parameters")
    params = trace_named(by_params, "the assignment's recipe")["x"]
    assert params[[c.k for c in recipe].index(10)] == 85835  # Q1 = Q2 = 32, K = 10
    assert at.selectbox(key="sweep_preset").value == "quick"
    assert at.button(key="sweep_fill").label == f"Fill the gaps ({len(K_GRID)} runs)"
    assert any("not the assignment's recipe" in c for c in texts(at.caption))
    assert at.download_button[0].label == "Download this sweep (CSV)"


@pytest.mark.usefixtures("shipped")
def test_the_channel_sweep() -> None:
    at = open_page(SWEEP)
    at.button_group(key="sweep_kind").set_value("q").run()
    assert_clean(at)
    assert any("Q1 = Q2 and K = 10" in c for c in texts(at.caption))
    fig = chart(at, "sweep-q-setting")
    shipped_q = sorted(
        c.q1 for c in test_app.shipped_configs() if c.dataset == "mnist" and c.k == 10 and c.q1 == c.q2
    )  # the seed model (32) and the shipped channel sweep, if any
    assert trace_named(fig, "the assignment's recipe")["x"] == shipped_q and 32 in shipped_q
    assert any("PCA with 10 components" in a["text"] for a in fig["layout"]["annotations"])  # one level
    assert fig["layout"]["xaxis"]["tickvals"] == list(Q_GRID)
    assert at.button(key="sweep_fill").label == f"Fill the gaps ({len(Q_GRID)} runs)"


@pytest.mark.parametrize("k", [1, 2])
def test_sweep_page_with_small_codes(small_k_runs: dict[int, TrainConfig], k: int) -> None:
    at = open_page(SWEEP, **config_state(small_k_runs[k]))
    assert_clean(at)
    dots = trace_named(chart(at, "sweep-k-setting"), "custom")  # 1 epoch at batch 32: no preset's recipe
    assert dots["x"] == [1, 2]
    assert trace_named(chart(at, "sweep-k-setting"), "the model shown")["x"] == [k]


def test_a_picked_point_selects_its_model(small_k_runs: dict[int, TrainConfig]) -> None:
    """What a click on a dot does (the chart's callback, as the browser calls it): the sidebar moves to
    that run's config, so every page shows it, and the ring follows."""

    def pick(key: str) -> None:
        import streamlit as st

        from ui import sweep

        st.session_state["sweep-k-setting"] = {"selection": {"points": [{"customdata": key}]}}
        sweep.on_pick("sweep-k-setting")

    picker = AppTest.from_function(pick, args=(small_k_runs[1].key(),), default_timeout=RUN_TIMEOUT)
    picker.run()
    assert not picker.exception
    state = {k: picker.session_state[k] for k in ("q1", "q2", "k", "epochs", "seed", "mean_init")}
    assert state == {"q1": 4, "q2": 4, "k": 1, "epochs": 1, "seed": 0, "mean_init": True}
    assert picker.session_state["sweep_picked"] is True

    at = open_page(SWEEP, **config_state(small_k_runs[2]))
    assert trace_named(chart(at, "sweep-k-setting"), "the model shown")["x"] == [2]
    at = open_page(SWEEP, **state, train_size=0)
    assert trace_named(chart(at, "sweep-k-setting"), "the model shown")["x"] == [1]


@pytest.mark.usefixtures("app_env")
def test_fill_the_gaps_trains_every_missing_k_and_the_curve_fills_in() -> None:
    from ui.services import services

    at = open_page(SWEEP, q1=1, q2=1, k=3)
    assert at.button(key="sweep_fill").label == f"Fill the gaps ({len(K_GRID)} runs)"
    at.button(key="sweep_fill").click().run()
    assert_clean(at)
    ids = at.session_state["sweep_jobs"]
    assert len(ids) == len(K_GRID)
    assert at.button(key="sweep_fill").disabled  # no second batch while this one runs
    assert any(i.startswith("Filling the gaps") for i in texts(at.info))
    for job_id in ids:
        view = services().jobs.wait(job_id, timeout=120)
        assert view.state == "done", (view.state, view.error)
        assert (view.config.q1, view.config.q2, view.config.batch_size, view.config.mean_init) == (1, 1, 128, True)
    at.run()
    assert_clean(at)
    dots = trace_named(chart(at, "sweep-k-setting"), "quick preset")
    assert sorted(dots["x"]) == list(K_GRID)
    assert any(f"Filling the gaps: {len(K_GRID)} trained" in i for i in texts(at.info))
    assert at.button(key="sweep_fill").label == "Fill the gaps (0 runs)" and at.button(key="sweep_fill").disabled


@pytest.mark.usefixtures("isolated_dirs")
def test_sweep_page_without_data() -> None:
    """No data set provisioned: the stored models are drawn without PCA, the page says why, and no
    training can be queued."""
    import streamlit as st

    st.cache_resource.clear()
    try:
        at = open_page(SWEEP)
        assert_clean(at)
        assert any("PCA's curve needs the training images" in i for i in texts(at.info))
        fig = chart(at, "sweep-k-setting")
        assert not [t for t in fig["data"] if str(t.get("name", "")).startswith("PCA")]
        assert at.button(key="sweep_fill").disabled
    finally:
        st.cache_resource.clear()


# ------------------------------------------------------------------------------ inside view


@pytest.mark.usefixtures("shipped")
def test_inside_page_follows_the_picked_digit() -> None:
    at = open_page(INSIDE)
    assert_clean(at)
    assert texts(at.subheader) == [
        "1 · The first convolution: 32 filters and the maps they make",
        "2 · The second convolution: 32 maps of 7 × 7",
        "3 · The code: K = 10 numbers",
        "4 · The decoder, back up: 7 × 7 → 14 × 14 → 28 × 28",
    ]
    captions = [c for img in at.image for c in img.captions]
    assert "32 filters, 5 × 5 each" in captions and "32 feature maps, 7 × 7 (after the ReLU)" in captions
    assert any(c.startswith("input: image #0") for c in captions)
    assert len(values(chart(at, "inside-code")["data"][0]["y"])) == 10
    assert any("1,568 numbers" in c for c in texts(at.caption))  # Q2 · 7 · 7
    before = chart(at, "inside-code")["data"][0]["y"]
    at.number_input(key="inside_index").set_value(7).run()
    assert_clean(at)
    assert any(c.startswith("input: image #7") for img in at.image for c in img.captions)
    assert chart(at, "inside-code")["data"][0]["y"] != before
    assert len(chart(at, "inside-digits")["layout"]["shapes"]) == 1  # digit 7 is marked in the grid


@pytest.mark.parametrize("k", [1, 2])
def test_inside_page_with_small_codes(small_k_runs: dict[int, TrainConfig], k: int) -> None:
    at = open_page(INSIDE, **config_state(small_k_runs[k]))
    assert_clean(at)
    assert f"3 · The code: K = {k} number{'s' if k > 1 else ''}" in texts(at.subheader)
    code = chart(at, "inside-code")
    assert len(values(code["data"][0]["y"])) == k and len(values(code["data"][1]["y"])) == k  # code, class mean


def test_inside_page_with_a_blank_model(app_env: Path, data_root: Path) -> None:
    config = tiny_config(k=3, train_size=None)
    store_run(app_env, load_splits(data_root), config, blank=True)
    at = open_page(INSIDE, **config_state(config))
    assert_clean(at)
    assert any("blank images" in w for w in texts(at.warning))
    assert len(texts(at.subheader)) == 4  # still drawn: the maps show where the signal dies


@pytest.mark.usefixtures("app_env")
def test_inside_page_without_a_model() -> None:
    at = open_page(INSIDE, k=5)  # not on the shipped sweep's grid
    assert_clean(at)
    assert any(NO_MODEL in i for i in texts(at.info))
    assert not at.get("plotly_chart")


@pytest.mark.usefixtures("isolated_dirs")
def test_inside_page_without_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """No data: the page says it is getting the data set (provisioning is stubbed: no network here)."""
    import streamlit as st

    from ui.services import Provisioner

    monkeypatch.setattr(Provisioner, "start", lambda *_: None)
    st.cache_resource.clear()
    try:
        at = open_page(INSIDE)
        assert_clean(at)
        assert "Getting the MNIST digits data…" in texts(at.subheader)
        assert not at.get("plotly_chart")
    finally:
        st.cache_resource.clear()


# ------------------------------------------------------------------- PCA on the other pages


@pytest.mark.usefixtures("shipped")
def test_reconstructions_compare_with_pca() -> None:
    at = open_page("app_pages/reconstructions.py")
    assert_clean(at)
    assert "The linear baseline: PCA with 10 components" in texts(at.subheader)
    labels = [m.label for m in at.metric]
    assert "PCA with 10 components, validation MSE" in labels and "PCA components needed to do as well" in labels
    rows = chart(at, "pca_rows")
    assert rows["layout"]["yaxis"]["ticktext"] == ["original", "auto-encoder", "PCA, 10 comp."]
    pairs = chart(at, "fig1")
    at.toggle(key="fig1_pca").set_value(True).run()
    assert_clean(at)
    triples = chart(at, "fig1")
    assert all(" · PCA " in t for t in triples["data"][1]["text"])
    assert triples["data"][0]["source"] != pairs["data"][0]["source"]  # a wider picture: three per digit
    assert any("In each triple" in c for c in texts(at.caption))


@pytest.mark.usefixtures("shipped")
def test_latent_page_offers_the_pca_plane() -> None:
    at = open_page("app_pages/latent.py")
    assert_clean(at)
    assert [e.label for e in at.expander][0].startswith("Compare: PCA of the images")
    assert [c.key for c in at.get("plotly_chart")] == ["latent"]  # folded: not drawn until opened
    at.session_state["latent_pca_open"] = True
    at.run()
    plane = chart(at, "pca_plane")
    assert (
        sum(len(values(t["x"])) for t in plane["data"] if t.get("mode") == "markers") == 100
    )  # every validation image
    assert "PC 1 of the images" in plane["layout"]["xaxis"]["title"]["text"]


def test_latent_page_puts_the_pca_plane_beside_a_two_number_code(small_k_runs: dict[int, TrainConfig]) -> None:
    at = open_page("app_pages/latent.py", **config_state(small_k_runs[2]))
    assert_clean(at)
    assert not at.expander  # side by side, not folded away
    assert any("best *linear* code of 2 numbers" in m for m in texts(at.markdown))
    plane = chart(at, "pca_plane")
    assert (
        sum(len(values(t["x"])) for t in plane["data"] if t.get("mode") == "markers") == 100
    )  # every validation image
    chart(at, "latent")


@pytest.mark.usefixtures("app_env")
def test_loss_chart_draws_the_pca_line() -> None:
    """The Train page's loss chart takes PCA's MSE for the config (ui.baseline.pca_mse_for) as a line."""

    def draw() -> None:
        import streamlit as st

        from convae.train import TrainConfig
        from ui.baseline import pca_mse_for
        from ui.charts import loss_figure

        mse = pca_mse_for(TrainConfig(k=5))
        st.session_state["mse"] = mse
        st.plotly_chart(loss_figure([1, 2], [0.1, 0.05], [], 2, baseline=mse, k=5), key="loss")

    at = AppTest.from_function(draw, default_timeout=RUN_TIMEOUT)
    at.run()
    assert not at.exception
    mse = at.session_state["mse"]
    assert 0 < mse < 0.2
    fig = chart(at, "loss")
    assert fig["layout"]["shapes"][0]["y0"] == pytest.approx(mse)
    assert fig["layout"]["annotations"][0]["text"] == f"PCA with 5 components: {mse:.4f}"


def test_tiled_maps_share_one_scale_and_show_the_gaps() -> None:
    from ui.images import tiled_maps

    maps = torch.zeros(3, 7, 7)
    maps[0] += 2.0  # the strongest map: white end of the scale
    maps[1] += 1.0
    pic = tiled_maps(maps, tile=14, cols=2)
    assert pic.shape == (2 * 14 + 4, 2 * 14 + 4, 3)
    assert tuple(pic[0, 0]) == (252, 253, 191) and tuple(pic[20, 0]) == (0, 0, 4)  # map 2 did not respond
    assert tuple(pic[0, 16]) != tuple(pic[0, 0])  # map 1 is half as bright on the shared scale
    assert tuple(pic[0, 14]) == (190, 190, 190)  # the grey gap
    weights = torch.tensor([[[1.0, -1.0]], [[0.1, -0.1]]])
    per_map = tiled_maps(weights, tile=2, diverging=True, per_map=True)
    assert tuple(per_map[0, 0]) == tuple(per_map[0, 6])  # each filter on its own scale: the same colours
