"""The Class board in a real browser (Debian's Chromium, Playwright) against `streamlit run`: a click on a
dot of the scatter and a click on a row of the table each show that model in the sidebar (so on every
page), and a run stored while the page is open appears on it by itself within a few seconds (the time
is printed). The server runs on generated data with tiny stored runs (Q1 = Q2 = 4)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from convae.analysis import class_means, encode
from convae.data import load_splits
from convae.store import RunStore
from convae.synthetic import make_synthetic
from convae.train import TrainResult, train
from tests.conftest import tiny_config
from tests.support.chromium import DATA_TO_SCREEN_JS
from tests.support.server import Server
from tests.test_browser import ARTIFACTS, browser_page, chromium_or_skip, start_or_fail
from tests.test_browser_lesson import DRAWN_JS, POINTS_JS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TINY = {"q1": 4, "q2": 4, "epochs": 1, "mean_init": True, "train_size": None}
ADDRESS = "board?q1=4&q2=4&k=2&epochs=1&mean_init=1"
APPEAR_S = 5.0  # a run stored while the board is open shows within this (the page looks every second)


def save_as(store: RunStore, result: TrainResult, means, seed: int, val: float, owner: str | None) -> None:
    history = copy.deepcopy(result.history)
    history.epochs[-1]["val_loss"] = val
    store.save(replace(result, config=replace(result.config, seed=seed), history=history), means, owner=owner)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, TrainResult, object]]:
    chromium_or_skip()
    root = tmp_path_factory.mktemp("board")
    make_synthetic(root / "data", n_train=1000, n_val=200)
    splits = load_splits(root / "data")
    store = RunStore(root / "runs", shipped=None)
    k3 = train(tiny_config(k=3, **TINY), splits, device="cpu")
    store.save(k3, class_means(encode(k3.model, splits.val_images), splits.val_labels), owner="Kim")
    k2 = train(tiny_config(k=2, **TINY), splits, device="cpu")
    means = class_means(encode(k2.model, splits.val_images), splits.val_labels)
    for seed, val, owner in ((0, 0.05, "Ann"), (1, 0.06, "<b>Bob</b>"), (2, 0.07, None)):
        time.sleep(1.05)  # the table lists the newest first, to the second: seed 2 is its first row
        save_as(store, k2, means, seed, val, owner)
    srv = start_or_fail(Server(root / "data", root / "runs", root / "server.log", env={"OMP_NUM_THREADS": "1"}))
    try:
        yield srv.url, root / "runs", k2, means
    finally:
        srv.__exit__(None, None, None)
    log = srv.log_path.read_text()
    assert "Traceback" not in log, f"The server logged an exception:\n{log[-3000:]}"


def dots(page) -> list[list]:
    """[x, y, run key] of every run on the scatter (the front's and the others')."""
    return page.evaluate(POINTS_JS, [0, "a run"]) + page.evaluate(POINTS_JS, [0, "on the front"])


def test_board_clicks_and_new_runs_in_chromium(server, capsys: pytest.CaptureFixture) -> None:
    from playwright.sync_api import expect

    url, runs, k2, means = server
    ARTIFACTS.mkdir(exist_ok=True)
    with browser_page("board-failure.png") as page:
        sidebar = page.locator('[data-testid="stSidebar"]')
        page.goto(f"{url}/{ADDRESS}")
        page.wait_for_function(DRAWN_JS, arg=["Class board", 1], polling=50)
        expect(sidebar).to_contain_text("Q1=4, Q2=4, K=2 · 1 epoch")
        mine = [d for d in dots(page) if "-q4-4-" in d[2] and "-e1-" in d[2]]  # not the shipped Q1 = 4 run
        assert len(mine) == 4

        # A click on the K = 3 dot: the sidebar, and so every page, shows that model.
        x, y, _ = next(d for d in mine if "-k3-" in d[2])
        page.locator('[data-testid="stPlotlyChart"]').first.scroll_into_view_if_needed()  # below a long table
        page.mouse.click(*page.evaluate(DATA_TO_SCREEN_JS, [0, math.log10(x), y]))  # log x axis
        expect(sidebar).to_contain_text("Q1=4, Q2=4, K=3 · 1 epoch")
        expect(page.get_by_text("Showing Q1=4, Q2=4, K=3 (1 epoch, seed 0) on every page.")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "board-point-picked.png"))

        # A click on the first row (the newest run: K = 2, seed 2), on its selection box.
        grid = page.locator('[data-testid="stDataFrame"]').first
        grid.evaluate("e => e.scrollIntoView({block: 'center'})")  # its first row in view, not only its end
        box = grid.bounding_box()
        page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)
        expect(sidebar).to_contain_text("Q1=4, Q2=4, K=2 · 1 epoch")
        expect(sidebar).to_contain_text("seed 2")
        page.screenshot(path=str(ARTIFACTS / "board-row-picked.png"))
        page.locator('[data-testid="stPlotlyChart"]').first.screenshot(path=str(ARTIFACTS / "board-scatter.png"))

        # A run stored while the page is open appears by itself.
        before = len(dots(page))
        t0 = time.perf_counter()
        save_as(RunStore(runs, shipped=None), k2, means, 3, 0.04, "Dee")
        page.wait_for_function(
            f"() => ({POINTS_JS})([0, 'a run']).length + ({POINTS_JS})([0, 'on the front']).length > {before}",
            polling=100,
            timeout=int(APPEAR_S * 1000) * 4,
        )
        appeared = time.perf_counter() - t0
        assert appeared <= APPEAR_S, f"the new run took {appeared:.1f} s to appear"
    with capsys.disabled():
        print(f"\nclass board: a new run appeared {appeared:.2f} s after it was stored")
