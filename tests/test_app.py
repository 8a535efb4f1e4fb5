"""Every dashboard page through `streamlit.testing.v1.AppTest`, on small generated data.

Covered: the sidebar's controls; each page with the shipped model (the default config) and with no
model for the selected config; a training started with the sidebar's Train button, after which the
sidebar and the pages show the new model; K = 1 and K = 2 models (the pages draw those differently);
the Mixtures page's pair and α; the Draw page with a drawing (the canvas's value set through session
state, as the browser component would send it).

The pages live in `app_pages/`, not `pages/`: a `pages/` folder beside the entry point would make
Streamlit run a page file on its own (no sidebar, no navigation) until dashboard.py has run once.
The sidebar is checked on first runs (state set beforehand), and the pages read the config from
session state through `ui.state.selected_config()`. The browser test
(test_browser.py) covers what AppTest cannot: clicks on charts, the canvas, the live chart.
"""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from convae.analysis import class_means, encode
from convae.data import load_splits
from convae.store import SHIPPED_DIR, RunStore
from convae.train import TrainConfig, train
from tests.conftest import tiny_config

PROJECT = Path(__file__).resolve().parent.parent
DASHBOARD = str(PROJECT / "dashboard.py")
PAGES = [
    "app_pages/reconstructions.py",
    "app_pages/latent.py",
    "app_pages/mixtures.py",
    "app_pages/walk.py",
    "app_pages/draw.py",
    "app_pages/compare.py",
]
ALL_PAGES = ["dashboard.py", *PAGES]  # dashboard.py opens on its default page, Train
RUN_TIMEOUT = 60  # seconds for one script run: generous for a loaded two-core machine
NO_MODEL = "No model for this configuration yet"


def open_page(page: str, **state) -> AppTest:
    """Run dashboard.py once (navigation, sidebar), then the page, with the given session state."""
    at = AppTest.from_file(DASHBOARD, default_timeout=RUN_TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page != "dashboard.py":
        at.switch_page(page).run()
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, texts(at.error)


# ----------------------------------------------------------------------------------- sidebar


@pytest.mark.usefixtures("app_env")
def test_sidebar_has_every_control() -> None:
    at = open_page("dashboard.py")
    assert_clean(at)
    sliders = {s.label.split(":")[0]: s for s in at.sidebar.slider}
    assert set(sliders) == {"Q1", "Q2", "K", "Epochs"}
    assert (sliders["Q1"].value, sliders["Q2"].value, sliders["K"].value, sliders["Epochs"].value) == (32, 32, 10, 10)
    assert [s.label for s in at.sidebar.select_slider] == ["Learning rate (Adam)"]
    assert at.sidebar.select_slider[0].value == 1e-3
    assert [s.label for s in at.sidebar.selectbox] == [
        "Data set",
        "Batch size",
        "Training images",
        "If the model collapses into blank images",
    ]
    assert [at.sidebar.button(key=f"preset_{n}").label for n in ("assignment", "quick", "good")] == [
        "Recipe",
        "Quick",
        "Good",
    ]
    assert any("Now: the assignment's recipe" in c for c in texts(at.sidebar.caption))
    assert at.sidebar.selectbox(key="on_collapse").value == "restart"
    assert [n.label for n in at.sidebar.number_input] == ["Seed"]
    buttons = {b.key: b for b in at.sidebar.button}
    assert buttons["train_button"].label in ("Train", "Retrain")
    assert buttons["stop_button"].label == "Stop"
    assert buttons["stop_button"].disabled  # nothing is training


@pytest.mark.usefixtures("app_env")
def test_a_preset_sets_the_training_settings_and_custom_values_show_as_custom() -> None:
    at = open_page("dashboard.py", k=5)
    at.sidebar.button(key="preset_quick").click().run()
    assert_clean(at)
    assert at.sidebar.slider(key="epochs").value == 1
    assert at.sidebar.selectbox(key="batch_size").value == 128
    assert at.sidebar.select_slider(key="lr").value == 3e-3
    assert at.sidebar.checkbox(key="mean_init").value is True
    assert at.sidebar.slider(key="k").value == 5  # the architecture stays the user's
    assert any("Not the assignment's recipe" in c for c in texts(at.sidebar.caption))
    at.sidebar.slider(key="epochs").set_value(2).run()
    assert any("Now: custom settings" in c for c in texts(at.sidebar.caption))
    at.sidebar.button(key="preset_assignment").click().run()
    assert (at.sidebar.slider(key="epochs").value, at.sidebar.selectbox(key="batch_size").value) == (10, 32)
    assert at.sidebar.checkbox(key="mean_init").value is False


@pytest.mark.usefixtures("app_env")
def test_the_collapse_choice_reaches_the_job_and_the_address() -> None:
    at = open_page("dashboard.py")
    at.sidebar.selectbox(key="on_collapse").select("continue").run()
    assert_clean(at)
    assert at.session_state["on_collapse"] == "continue"
    assert "continue" in str(at.query_params.get("on_collapse"))


@pytest.mark.usefixtures("app_env")
def test_sidebar_marks_a_config_that_is_not_the_assignments() -> None:
    at = open_page("dashboard.py", k=3, batch_size=128)
    assert_clean(at)
    assert any("Not the assignment's recipe" in c for c in texts(at.sidebar.caption))
    assert any(NO_MODEL in w for w in texts(at.sidebar.warning))
    assert at.sidebar.button(key="train_button").label == "Train"
    back = [b for b in at.sidebar.button if b.label.startswith("Back to the assignment")]
    assert back, "a non-default config offers the way back"
    back[0].click().run()
    assert_clean(at)
    assert (at.session_state["k"], at.session_state["batch_size"]) == (10, 32)


# ---------------------------------------------------------------------------------- pages


def shipped_configs() -> list[TrainConfig]:
    """The configurations of every model that ships in models/ (read the way the dashboard reads them)."""
    with tempfile.TemporaryDirectory() as empty:
        runs, problems = RunStore(Path(empty), shipped=SHIPPED_DIR).scan()
    assert not problems
    return [r.config for r in runs]


@pytest.mark.usefixtures("shipped")
@pytest.mark.parametrize("page", ALL_PAGES)
def test_page_with_the_shipped_model(page: str) -> None:
    at = open_page(page)
    assert_clean(at)
    assert not any(NO_MODEL in i for i in texts(at.info))
    markdown = " ".join(texts(at.markdown))
    if page == "dashboard.py":
        assert any("shipped with the project" in s for s in texts(at.subheader))
        assert [m.label for m in at.metric][0] == "Validation MSE"
        assert any("validation MSE" in s for s in texts(at.sidebar.success))
    elif page.endswith("reconstructions.py"):
        assert [m.label for m in at.metric][0] == "Validation MSE (all 10,000 images)"
        assert at.metric[2].value == "10 numbers per image"
    elif page.endswith("latent.py"):
        assert any("two directions of largest variance" in c for c in texts(at.caption))
        assert [c.key for c in at.get("plotly_chart")] == ["latent"]  # PCA of the images: drawn when opened
    elif page.endswith("mixtures.py"):
        assert texts(at.subheader)[0] == "From 3 to 8"
        assert at.slider(key="alpha").value == 0.5
        assert len(at.get("plotly_chart")) == 1 and at.download_button[0].label == "Download Figure 2 (PNG)"
    elif page.endswith("walk.py"):
        assert "Nearest class mean" in markdown
        assert any(c.startswith("D(code at (") for img in at.image for c in img.captions)
        assert at.slider(key="grid_n").value == 12
    elif page.endswith("draw.py"):
        assert any("Draw a digit on the black square" in i for i in texts(at.info))
        assert canvas(at) is not None
    elif page.endswith("compare.py"):
        table = at.dataframe[0].value
        shipped = shipped_configs()  # the seed models and any shipped sweep
        assert sorted(table["K"]) == sorted(c.k for c in shipped) and set(table["when"]) == {"shipped"}
        assert sorted(table["data set"]) == sorted(c.dataset for c in shipped)
        assert {"fashion-mnist", "mnist"} <= set(table["data set"])  # both shipped seed models


@pytest.mark.usefixtures("app_env")
@pytest.mark.parametrize("page", ALL_PAGES)
def test_page_without_a_model(page: str) -> None:
    at = open_page(page, k=5)  # no run has K = 5 (not on the shipped sweep's grid)
    assert_clean(at)
    infos = texts(at.info)
    if page.endswith("compare.py"):  # lists every stored run, whatever the sidebar says
        assert not any(NO_MODEL in i for i in infos)
    else:
        assert any(NO_MODEL in i for i in infos), infos
        assert not at.get("plotly_chart")


# ------------------------------------------------------------------------------- training


def test_train_button_trains_and_the_pages_show_the_new_model(app_env: Path) -> None:
    from ui.services import services  # the function the app calls, so the same cached services

    small = {"q1": 4, "q2": 4, "k": 2, "epochs": 1, "mean_init": True}  # learns in one epoch
    at = open_page("dashboard.py", **small)
    assert any(NO_MODEL in w for w in texts(at.sidebar.warning))
    assert any("Q1=4, Q2=4, K=2 · 1 epoch" in c for c in texts(at.sidebar.caption))

    at.button(key="train_button").click().run()
    assert_clean(at)
    view = services().jobs.wait(at.session_state["job_id"], timeout=120)
    assert view is not None and view.state == "done", view and (view.state, view.error)
    assert view.config == TrainConfig(q1=4, q2=4, k=2, epochs=1, mean_init=True)
    assert (app_env / f"{view.config.key()}.pt").is_file()
    at.run()  # the Train page's live panel now reports the finished run
    assert_clean(at)
    assert any(f"Done: validation MSE {view.run.val_loss:.5f}" in s for s in texts(at.success))

    at = open_page("dashboard.py", **small)  # a new tab with the same config
    assert_clean(at)
    success = " ".join(texts(at.sidebar.success))
    assert f"Trained model · 1 epoch · validation MSE **{view.run.val_loss:.4f}**" in success
    assert at.sidebar.button(key="train_button").label == "Retrain"
    assert any("Loss history of the model shown (trained" in s for s in texts(at.subheader))

    at.switch_page("app_pages/reconstructions.py").run()
    assert_clean(at)
    assert at.metric[0].value == f"{view.run.val_loss:.5f}"
    assert at.metric[2].value == "2 numbers per image"
    at.switch_page("app_pages/compare.py").run()
    assert_clean(at)
    assert 2 in list(at.dataframe[0].value["K"])


# ------------------------------------------------------------------ small K, interactions


@pytest.fixture
def small_k_runs(app_env: Path, data_root: Path) -> dict[int, TrainConfig]:
    """Tiny stored models with K = 1 and K = 2 (the pages' special cases), trained in place."""
    splits = load_splits(data_root)
    store = RunStore(app_env, shipped=None)
    configs = {}
    for k in (1, 2):
        result = train(tiny_config(k=k, train_size=None, mean_init=True), splits, device="cpu")
        store.save(result, class_means(encode(result.model, splits.val_images), splits.val_labels))
        configs[k] = result.config
    return configs


def config_state(config: TrainConfig) -> dict:
    return {
        "q1": config.q1,
        "q2": config.q2,
        "k": config.k,
        "epochs": config.epochs,
        "train_size": 0,
        "seed": config.seed,
        "mean_init": config.mean_init,
    }


@pytest.mark.parametrize("k", [1, 2])
def test_pages_draw_a_one_or_two_number_latent_code(small_k_runs: dict[int, TrainConfig], k: int) -> None:
    at = open_page("dashboard.py", **config_state(small_k_runs[k]))
    assert_clean(at)
    assert any("validation MSE" in s for s in texts(at.sidebar.success))  # a model that learned something
    for page in ("app_pages/latent.py", "app_pages/walk.py", "app_pages/mixtures.py", "app_pages/reconstructions.py"):
        at.switch_page(page).run()
        assert_clean(at)
        assert not any(NO_MODEL in i for i in texts(at.info)), page
    at.switch_page("app_pages/walk.py").run()
    if k == 1:  # a slider replaces the plane
        assert at.slider[0].label == "z (the 1-D latent code)"
    else:
        assert at.slider[0].key == "grid_n"


@pytest.mark.usefixtures("shipped")
def test_mixtures_pair_and_alpha() -> None:
    at = open_page("app_pages/mixtures.py", pair=(1, 5))
    assert_clean(at)
    assert texts(at.subheader)[0] == "From 1 to 5"
    before = at.image[1].value
    assert at.image[1].captions == ["α = 0.50"]
    at.slider(key="alpha").set_value(0.7).run()
    assert_clean(at)
    assert at.image[1].captions == ["α = 0.70"]
    assert at.image[1].value != before  # a different image, not only a new caption
    assert [at.image[0].captions, at.image[2].captions] == [["D(μ 1)"], ["D(μ 5)"]]


def canvas(at: AppTest):
    found = [e for e in at.main.get("bidi_component")]
    return found[0] if found else None


def drawing_data_url(points: list[tuple[int, int]]) -> str:
    """A 280 x 280 PNG data URL of a white stroke on black, as the canvas component sends it."""
    img = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    ImageDraw.Draw(img).line(points, fill=(255, 255, 255, 255), width=22, joint="curve")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.usefixtures("shipped")
def test_draw_page_reads_a_drawing() -> None:
    at = open_page("app_pages/draw.py")
    assert_clean(at)
    key = canvas(at).key
    at.session_state[key] = {
        "drawing": {
            "raw": {"objects": [{"type": "path"}], "background": "#000000"},
            "data": drawing_data_url([(90, 60), (190, 60), (120, 230)]),
        },
        "backgroundFit": None,
    }
    at.run()
    assert_clean(at)
    assert not any("Draw a digit on the black square" in i for i in texts(at.info))
    assert any(s.startswith("Nearest class mean: **") for s in texts(at.success))
    assert len(at.get("plotly_chart")) == 1  # the drawing among the validation codes
    at.button[0].click().run()  # Clear: a new, empty canvas
    assert_clean(at)
    assert canvas(at).key != key
    assert any("Draw a digit on the black square" in i for i in texts(at.info))


def test_a_model_that_learned_nothing_is_called_out(app_env: Path, data_root: Path) -> None:
    """A model whose output is blank (validation MSE of an all-black image) gets a warning and advice."""
    from convae.train import evaluate

    splits = load_splits(data_root)
    result = train(tiny_config(k=3, train_size=None), splits, device="cpu")
    with torch.no_grad():
        result.model.decoder.net[-2].bias.fill_(-50.0)  # sigmoid(-50) = 0: a saturated, blank output
    result.history.epochs[-1]["val_loss"] = evaluate(result.model, splits.val_images)
    RunStore(app_env, shipped=None).save(
        result, class_means(encode(result.model, splits.val_images), splits.val_labels)
    )
    at = open_page("dashboard.py", **config_state(result.config))
    assert_clean(at)
    assert any("it learned nothing" in w for w in texts(at.sidebar.warning))
    at.switch_page("app_pages/reconstructions.py").run()
    assert_clean(at)
    assert any("blank images" in w and "seed" in w for w in texts(at.warning))


def test_a_restarted_run_says_so_and_explains_the_collapse(app_env: Path, data_root: Path, monkeypatch) -> None:
    """A run whose first seed collapsed: the Train page names the restart, marks the chart, and explains
    the collapse with the readings of the collapsed start against the one that learned."""
    import convae.train as engine
    from convae.collapse import CollapseWatch

    made = []

    def first_collapses(blank: float) -> CollapseWatch:
        watch = CollapseWatch(blank)
        made.append(watch)
        if len(made) == 1:
            watch.update = lambda v: watch.readings.append(v) or True
        return watch

    monkeypatch.setattr(engine, "CollapseWatch", first_collapses)
    splits = load_splits(data_root)
    config = tiny_config(k=3, train_size=None, epochs=5)  # 300 images, batch 32: step 50 ends epoch 5
    result = train(config, splits, device="cpu")
    RunStore(app_env, shipped=None).save(
        result, class_means(encode(result.model, splits.val_images), splits.val_labels)
    )
    at = open_page("dashboard.py", **config_state(config))
    assert_clean(at)
    assert any("Restarted: seed 0 collapsed at step 50" in i and "seed 1" in i for i in texts(at.info))
    assert [e.label for e in at.expander if e.label == "Why did it collapse?"]
    assert any("sigmoid" in m for m in texts(at.markdown))
