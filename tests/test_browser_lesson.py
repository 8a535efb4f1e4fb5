"""The lesson pages in a real browser (Debian's Chromium, Playwright) against `streamlit run`.

On the bottleneck sweep: click a dot of the K curve and see the sidebar (so every page) switch to that
model and the ring follow it; press "Fill the gaps" and watch the quick runs' points appear one by one
while they train. On "Inside the network": click a digit of the small grid and see that digit traced.
The server runs on generated data with three tiny stored models (Q1 = Q2 = 4, K = 1, 2, 3). Warm draw
times of both pages (page switch to fully drawn) are printed and written to
test-artifacts/lesson-timings.json; screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

import pytest

from convae.analysis import class_means, encode
from convae.data import load_splits
from convae.store import RunStore
from convae.synthetic import make_synthetic
from convae.train import train
from tests.conftest import tiny_config
from tests.support.chromium import DATA_TO_SCREEN_JS
from tests.support.server import Server
from tests.test_browser import ARTIFACTS, STEP_MS, browser_page, chromium_or_skip, go_to, shoot, start_or_fail

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TINY = {"q1": 4, "q2": 4, "epochs": 1, "mean_init": True}  # the stored runs: K = 1, 2, 3
ADDRESS = "sweep?q1=4&q2=4&k=2&epochs=1&mean_init=1"  # the sidebar's config comes from the address

# The points of the trace whose name starts with `name` in the index-th plotly chart: [[x, y, customdata]].
POINTS_JS = """([index, name]) => {
  const g = document.querySelectorAll('.js-plotly-plot')[index];
  const d = g && g._fullData && g._fullData.find(t => String(t.name).startsWith(name));
  if (!d) return [];
  return Array.from(d.x, (x, i) => [x, d.y[i], d.customdata ? d.customdata[i] : null]);
}"""

# True once the page has drawn: no script running, nothing stale, `charts` plotly charts and every image
# rendered.
DRAWN_JS = """([heading, charts]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  if (!app || !main || app.getAttribute('data-test-script-state') === 'running') return false;
  if (![...main.querySelectorAll('h1')].some(h => h.textContent.includes(heading))) return false;
  if (main.querySelector('[data-stale="true"]')) return false;
  for (const c of main.querySelectorAll('[data-testid="stPlotlyChart"]')) {
    if (!c.querySelector('.main-svg')) return false;
  }
  for (const img of main.querySelectorAll('img')) if (!img.complete) return false;
  return [...main.querySelectorAll('.js-plotly-plot')].filter(g => g._fullData).length >= charts;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    chromium_or_skip()
    root = tmp_path_factory.mktemp("lesson")
    make_synthetic(root / "data", n_train=1000, n_val=200)
    splits = load_splits(root / "data")
    store = RunStore(root / "runs", shipped=None)
    for k in (1, 2, 3):
        result = train(tiny_config(k=k, train_size=None, **TINY), splits, device="cpu")
        store.save(result, class_means(encode(result.model, splits.val_images), splits.val_labels))
    srv = start_or_fail(Server(root / "data", root / "runs", root / "server.log", env={"OMP_NUM_THREADS": "1"}))
    try:
        yield srv.url
    finally:
        srv.__exit__(None, None, None)
    log = srv.log_path.read_text()
    assert "Traceback" not in log, f"The server logged an exception:\n{log[-3000:]}"


def warm_draw(page, where: tuple[str, str, str], charts: int) -> float:
    """Seconds from the navigation click until the page has fully drawn (charts and images)."""
    section, path, heading = where
    page.locator('[data-testid="stTopNavSection"]', has_text=section).click()
    link = page.locator(f'a[data-testid="stTopNavDropdownLink"][href$="/{path}"]')
    link.wait_for()
    t0 = time.perf_counter()
    link.click()
    page.wait_for_function(DRAWN_JS, arg=[heading, charts], polling=50, timeout=STEP_MS)
    return round(time.perf_counter() - t0, 2)


def test_sweep_and_inside_pages_in_chromium(server: str, capsys: pytest.CaptureFixture) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    timings: dict[str, float] = {}
    sweep_page = ("Explore further", "sweep", "Bottleneck sweep")
    inside_page = ("Explore further", "inside", "Inside the network")
    with browser_page("lesson-failure.png") as page:
        sidebar = page.locator('[data-testid="stSidebar"]')
        page.goto(f"{server}/{ADDRESS}")
        page.wait_for_function(DRAWN_JS, arg=["Bottleneck sweep", 2], polling=50)
        expect(sidebar).to_contain_text("Q1=4, Q2=4, K=2 · 1 epoch")

        # The three stored runs are dots of one series; the ring marks K = 2, the sidebar's.
        dots = page.evaluate(POINTS_JS, [0, "custom"])
        assert sorted(x for x, _, _ in dots) == [1, 2, 3]
        assert [x for x, _, _ in page.evaluate(POINTS_JS, [0, "the model shown"])] == [2]

        # Click the K = 3 dot: the sidebar, and so every page, now shows that model.
        x, y, _ = next(d for d in dots if d[0] == 3)
        page.mouse.click(*page.evaluate(DATA_TO_SCREEN_JS, [0, math.log10(x), math.log10(y)]))  # log axes
        expect(sidebar).to_contain_text("Q1=4, Q2=4, K=3 · 1 epoch")
        page.wait_for_function(
            f"() => ({POINTS_JS})([0, 'the model shown']).map(p => p[0]).join() === '3'", polling=100
        )
        shoot(page, "lesson-sweep-picked")

        # Fill the gaps with the quick settings: the curve fills in while the runs train.
        page.get_by_role("button", name="Fill the gaps (12 runs)").click()
        expect(page.get_by_text("Filling the gaps:")).to_be_visible()
        first = time.perf_counter()
        page.wait_for_function(f"() => ({POINTS_JS})([0, 'quick preset']).length > 0", polling=100)
        seen_first = len(page.evaluate(POINTS_JS, [0, "quick preset"]))
        page.wait_for_function(f"() => ({POINTS_JS})([0, 'quick preset']).length === 12", polling=200, timeout=240_000)
        timings["fill the gaps: 12 quick runs"] = round(time.perf_counter() - first, 1)
        assert seen_first < 12, "the points should appear while the runs train, not all at once"
        expect(page.get_by_text("Filling the gaps: 12 trained")).to_be_visible()
        expect(page.get_by_role("button", name="Fill the gaps (0 runs)")).to_be_disabled()
        shoot(page, "lesson-sweep-filled")

        # Inside the network, for the model picked above: click digit #13 of the grid.
        timings["switch to Inside the network (first)"] = warm_draw(page, inside_page, 2)
        expect(page.get_by_text("3 · The code: K = 3 numbers")).to_be_visible()
        expect(page.get_by_text("input: image #0")).to_be_visible()
        cell = page.evaluate("""() => { const d = document.querySelectorAll('.js-plotly-plot')[0]._fullData[1];
                                       const i = d.customdata.findIndex(c => c[0] === 1 && c[1] === 3);
                                       return [d.x[i], d.y[i]]; }""")
        page.mouse.click(*page.evaluate(DATA_TO_SCREEN_JS, [0, *cell]))
        expect(page.get_by_text("input: image #13")).to_be_visible()
        expect(page.get_by_label("Validation image #")).to_have_value("13")
        shoot(page, "lesson-inside")

        # Warm draws: each page visited again.
        for _ in range(2):
            timings["switch to Bottleneck sweep (warm)"] = warm_draw(page, sweep_page, 2)
            timings["switch to Inside the network (warm)"] = warm_draw(page, inside_page, 2)
        go_to(page, *sweep_page)
    (ARTIFACTS / "lesson-timings.json").write_text(json.dumps(timings, indent=2))
    with capsys.disabled():
        print("\nlesson pages (s):", ", ".join(f"{k}: {v}" for k, v in timings.items()))
