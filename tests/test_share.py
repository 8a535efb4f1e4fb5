"""Shareable views: a page's selection and the sidebar's configuration in the address (ui/share.py,
ui/state.py). Every parameter is checked on its own: one that is out of range, not a number or too
long is ignored and the others still apply. The pages are opened through AppTest as a new tab with
that address would open them; a real browser opening a copied link is tests/test_browser_presenter.py.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_app import DASHBOARD, RUN_TIMEOUT, assert_clean, texts
from ui import share
from ui.state import DEFAULTS, config_from_params

# Per address name: values that must be ignored, and one valid value with what it becomes.
BAD = {
    "pair": ["10,1", "-1,3", "3", "3,8,1", "a,b", "3.5,2", "", "9" * 70],
    "alpha": ["1.5", "-0.1", "nan", "inf", "x", "0x1p-1", "1e400", "0.5" * 30],
    "point": ["-1", "10000", "1.5", "abc", "", "1e3"],
    "at": ["1", "1,2,3", "nan,0", "0,inf", "20000,0", "x,y"],
    "grid": ["4", "21", "12.5", "twelve"],
    "digit": ["-3", "10000", "3.0", " ", "\u0663"],  # the last: an Arabic-Indic 3
    "pca": ["2", "yes", ""],
}
GOOD = {
    "pair": ("1,5", (1, 5)),
    "alpha": ("0.72", 0.7),  # rounded to the slider's step
    "point": ("123", 123),
    "at": ("1.23456,-0.5", (1.2346, -0.5)),
    "grid": ("7", 7),
    "digit": ("42", 42),
    "pca": ("1", True),
}
BAD_CONFIG = {
    "dataset": "cifar",
    "q1": "999",
    "q2": "0",
    "k": "-1",
    "epochs": "1e3",
    "lr": "0.5",
    "batch_size": "33",
    "train_size": "7",
    "seed": "x",
    "on_collapse": "explode",
}


def by_name(name: str) -> share.Selection:
    return next(s for s in share.SELECTIONS if s.name == name)


def test_the_table_covers_every_selection_and_names_are_unique() -> None:
    assert set(BAD) == set(GOOD) == {s.name for s in share.SELECTIONS}
    names = [s.name for s in share.SELECTIONS]
    assert len(names) == len(set(names))
    assert not set(names) & set(DEFAULTS)  # no clash with the configuration's names


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_invalid_value_is_ignored_and_a_valid_one_is_read(name: str) -> None:
    sel = by_name(name)
    for text in BAD[name]:
        assert share.parse(sel, text) is None, (name, text)
    text, value = GOOD[name]
    assert share.parse(sel, text) == value


@pytest.mark.parametrize("name", sorted(BAD))
def test_one_parameter_out_of_range_leaves_the_others_applied(name: str) -> None:
    sel = by_name(name)
    params = {other: GOOD[other][0] for other in GOOD} | {name: BAD[name][0]}
    found = share.selection_from_params(sel.page, params)
    expected = {s.key: GOOD[s.name][1] for s in share.selections(sel.page) if s.name != name}
    assert found == expected


@pytest.mark.parametrize("key", sorted(BAD_CONFIG))
def test_one_config_value_out_of_range_leaves_the_others_applied(key: str) -> None:
    good = {"q1": "8", "q2": "16", "k": "3", "epochs": "2", "seed": "5", "train_size": "1000", "lr": "0.003"}
    found = config_from_params({**good, key: BAD_CONFIG[key]})
    assert key not in found
    assert {k: str(v) if not isinstance(v, float) else f"{v:g}" for k, v in found.items()} == {
        k: v for k, v in good.items() if k != key
    }


def test_over_long_config_values_are_ignored() -> None:
    assert config_from_params({"seed": "1" * 65, "q1": "8"}) == {"q1": 8}


# ----------------------------------------------------------------------------- in the app


def new_tab(page: str, params: dict[str, str], url: str | None = None) -> AppTest:
    """A new session opened at `page` with an address holding `params` (as a copied link opens)."""
    at = AppTest.from_file(DASHBOARD, default_timeout=RUN_TIMEOUT)
    at.query_params.update(params)
    if url:
        at.context["url"] = url
    at.switch_page(page)
    return at.run()


def link(at: AppTest) -> str:
    return [c.value for c in at.sidebar.code][-1]


@pytest.mark.usefixtures("app_env", "shipped_default")
def test_a_mixtures_link_opens_the_same_cell_alpha_and_config() -> None:
    at = new_tab("app_pages/mixtures.py", {"pair": "1,5", "alpha": "0.7"}, url="http://class.example:8501/mixtures")
    assert_clean(at)
    assert texts(at.subheader)[0] == "From 1 to 5"
    assert at.slider(key="alpha").value == pytest.approx(0.7)
    assert at.image[1].captions == ["α = 0.70"]
    shared = urlsplit(link(at))
    assert (shared.scheme, shared.netloc, shared.path) == ("http", "class.example:8501", "/mixtures")
    assert dict(parse_qsl(shared.query)) == {"pair": "1,5", "alpha": "0.7"}
    assert dict(at.query_params) == {"pair": "1,5", "alpha": "0.7"}  # the address bar holds the view too

    again = new_tab("app_pages/mixtures.py", dict(parse_qsl(shared.query)))  # the link, opened elsewhere
    assert texts(again.subheader)[0] == "From 1 to 5"
    assert again.slider(key="alpha").value == pytest.approx(0.7)


@pytest.mark.usefixtures("app_env", "shipped_default")
def test_an_address_with_every_parameter_out_of_range_opens_the_defaults_without_an_error() -> None:
    bad = {name: values[0] for name, values in BAD.items()} | BAD_CONFIG | {"junk": "<b>x</b>"}
    at = new_tab("app_pages/mixtures.py", bad)
    assert_clean(at)
    assert texts(at.subheader)[0] == "From 3 to 8"
    assert at.slider(key="alpha").value == 0.5
    assert [c.value for c in at.sidebar.caption if c.value.startswith("Q1=")][0].startswith("Q1=32, Q2=32, K=10")
    assert dict(at.query_params) == {}  # the ignored values are gone from the address
    assert link(at) == "/mixtures"  # no host known (AppTest has no browser): a path to add to the address


@pytest.mark.usefixtures("app_env", "shipped_default")
def test_mixed_good_and_bad_values_apply_the_good_ones() -> None:
    params = {"pair": "2,7", "alpha": "nan", "q1": "999", "epochs": "3"}
    at = new_tab("app_pages/mixtures.py", params)
    assert_clean(at)
    assert at.sidebar.slider(key="epochs").value == 3
    assert at.sidebar.slider(key="q1").value == 32
    assert at.session_state["pair"] == (2, 7)  # kept for the page, which waits for a model of 3 epochs
    assert "alpha" not in at.session_state
    assert dict(at.query_params) == {"epochs": "3", "pair": "2,7"}


@pytest.mark.usefixtures("app_env", "shipped_default")
def test_inside_and_latent_links_show_that_digit_and_an_index_beyond_the_data_is_ignored() -> None:
    at = new_tab("app_pages/inside.py", {"digit": "42"})
    assert_clean(at)
    assert at.number_input(key="inside_index").value == 42
    assert any("image #42" in c for img in at.image for c in img.captions)
    assert dict(at.query_params) == {"digit": "42"}

    beyond = new_tab("app_pages/inside.py", {"digit": "5000"})  # in range for MNIST, not for this data (100)
    assert_clean(beyond)
    assert beyond.number_input(key="inside_index").value == 0

    latent = new_tab("app_pages/latent.py", {"point": "17"})
    assert_clean(latent)
    assert any(c.startswith("image #17:") for img in latent.image for c in img.captions)
    assert dict(latent.query_params) == {"point": "17"}
    far = new_tab("app_pages/latent.py", {"point": "500"})
    assert_clean(far)
    assert not [c for img in far.image for c in img.captions if c.startswith("image #")]


@pytest.mark.usefixtures("app_env", "shipped_default")
def test_a_walk_link_decodes_the_same_point_and_a_far_point_is_ignored() -> None:
    at = new_tab("app_pages/walk.py", {"at": "0.5,-0.25", "grid": "6"})
    assert_clean(at)
    assert at.image[0].captions == ["D(code at (0.50, -0.25))"]
    assert at.slider(key="grid_n").value == 6
    assert dict(at.query_params) == {"at": "0.5,-0.25", "grid": "6"}
    far = new_tab("app_pages/walk.py", {"at": "9000,9000"})
    assert_clean(far)
    assert far.image[0].captions != ["D(code at (9000.00, 9000.00))"]
    assert "at" not in dict(far.query_params)


@pytest.fixture
def shipped_default(app_env) -> None:  # noqa: ARG001 (ordering: the environment first)
    """The default config's shipped model, which the pages above show."""
    from convae.store import SHIPPED_DIR, RunStore
    from convae.train import TrainConfig

    if RunStore(shipped=SHIPPED_DIR).get(TrainConfig()) is None:
        pytest.fail(f"No shipped model for the default config under {SHIPPED_DIR}; run `make seed`.")
