"""End to end in a real browser: Debian's Chromium, driven by Playwright, against `streamlit run`.

One test walks a class's session: choose a small config in the sidebar, press Train and watch the
live loss chart gain points, wait for the run, then visit every page through the top navigation and
use it: click a point of the latent space, click a cell of Figure 2 and move the α slider, click the
plane of the latent walk, draw on the canvas. Screenshots go to test-artifacts/ (git-ignored);
timings are printed and written to test-artifacts/e2e-timings.json.

Without Chromium or Playwright the test is skipped, except when CI is set, where it fails. The
server trains on small generated data; every wait is for a condition, with generous limits, so
that a slow, loaded two-core machine passes too.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from convae.synthetic import make_synthetic
from tests.support.chromium import CHROMIUM_ARGS, DATA_TO_SCREEN_JS, chromium_or_skip
from tests.support.server import Server

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parent.parent
ARTIFACTS = PROJECT / "test-artifacts"
STEP_MS = 60_000  # limit for one page to react (a loaded two-core machine can be slow)
TRAIN_S = 240  # limit for the small training to finish


def start_or_fail(srv: Server) -> Server:
    """`srv` started; the test fails with the end of its log when it does not start."""
    try:
        return srv.__enter__()
    except RuntimeError as e:
        srv.__exit__(None, None, None)
        pytest.fail(f"The server did not start ({e}):\n{srv.log_path.read_text()[-3000:]}")


@contextlib.contextmanager
def browser_page(failure_png: str | None = None, viewport: tuple[int, int] = (1500, 1000)) -> Iterator[Page]:
    """A page of a headless Chromium (tests.support.chromium), STEP_MS for each step and `expect`; when
    the block fails, a screenshot of the page as `failure_png` in ARTIFACTS. The browser is closed on the
    way out; `page.context.browser` opens more contexts."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_or_skip(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.set_default_timeout(STEP_MS)
            expect.set_options(timeout=STEP_MS)
            try:
                yield page
            except Exception:
                if failure_png:
                    ARTIFACTS.mkdir(exist_ok=True)
                    page.screenshot(path=str(ARTIFACTS / failure_png))
                raise
        finally:
            browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`streamlit run dashboard.py` on a free port (tests.support.server), on generated data
    (1,000 training images, so that the sidebar's "1,000" subset works) and an empty run store;
    yields its URL."""
    chromium_or_skip()
    root = tmp_path_factory.mktemp("e2e")
    make_synthetic(root / "data", n_train=1000, n_val=200)
    # One intra-op thread: a small model trains many times faster than with threads that contend
    # with each other (and with the browser) on a small, shared machine.
    srv = start_or_fail(Server(root / "data", root / "runs", root / "server.log", env={"OMP_NUM_THREADS": "1"}))
    try:
        yield srv.url
    finally:
        srv.__exit__(None, None, None)
    log = srv.log_path.read_text()
    assert "Traceback" not in log, f"The server logged an exception:\n{log[-3000:]}"


# ------------------------------------------------------------------------------- helpers

LOSS_POINTS_JS = """() => {
  for (const g of document.querySelectorAll('.js-plotly-plot')) {
    const d = g._fullData && g._fullData[0];
    if (d && String(d.name).startsWith('training loss')) return d._length ?? d.x.length;
  }
  return -1;
}"""


# A dot of trace `cls` of the latent scatter that no class-mean star covers: the farthest (on screen) from
# every star, among the dots inside the plot area.
FREE_DOT_JS = """(cls) => {
  const g = document.querySelector('.js-plotly-plot'), fl = g._fullLayout;
  const d = g._fullData[cls], m = g._fullData.find(t => String(t.name).startsWith('class means'));
  const px = (x, y) => [fl.xaxis.l2p(x), fl.yaxis.l2p(y)];
  const stars = Array.from(m.x, (x, i) => px(x, m.y[i]));
  let best = 0, bestGap = -1;
  for (let i = 0; i < d._length; i++) {
    const [u, v] = px(d.x[i], d.y[i]);
    if (u < 5 || v < 5 || u > fl.xaxis._length - 5 || v > fl.yaxis._length - 5) continue;
    const gap = Math.min(...stars.map(([a, b]) => Math.hypot(u - a, v - b)));
    if (gap > bestGap) { bestGap = gap; best = i; }
  }
  return [d.x[best], d.y[best]];
}"""


def timed(timings: dict[str, float], name: str, action: Callable[[], object]) -> None:
    t = time.perf_counter()
    action()
    timings[name] = round(time.perf_counter() - t, 2)


IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') === 'running') return false;
  return !document.querySelector('[data-stale="true"]');
}"""


def set_slider(page, label: str, keys: list[str], expected: str) -> None:
    """Move a Streamlit slider with the keyboard (as a person may), then wait for its value. First wait until
    the page is drawn, as a person does: while a run is still drawing the sidebar, the front end may reuse
    the focused slider's element for another slider, and the keys land there (seen once: Q1 went to 1)."""
    page.wait_for_function(IDLE_JS, polling=50, timeout=STEP_MS)
    thumb = page.get_by_role("slider", name=label)
    thumb.focus()
    for key in keys:
        thumb.press(key)
    page.wait_for_function(
        "([label, v]) => [...document.querySelectorAll('input[type=range]')]"
        ".some(e => e.getAttribute('aria-label') === label && e.getAttribute('aria-valuetext') === v)",
        arg=[label, expected],
        timeout=STEP_MS,
    )


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox (again if a rerun closed its list before the click)."""
    box = page.get_by_role("combobox", name=label)
    for _ in range(10):
        box.click()
        try:
            page.get_by_role("option", name=option).click(timeout=3000)
        except Exception:  # the list closed or never opened: try again
            box.press("Escape")
            continue
        if box.input_value() == option:
            return
    raise AssertionError(f"could not choose {option!r} in {label!r}")


def go_to(page, section: str, path: str, heading: str) -> None:
    """Switch page through the top navigation (the session, and so the sidebar's config, stays)."""
    page.locator('[data-testid="stTopNavSection"]', has_text=section).click()
    page.locator(f'a[data-testid="stTopNavDropdownLink"][href$="/{path}"]').click()
    page.locator("h1", has_text=heading).wait_for(timeout=STEP_MS)


def switch(page, timings: dict[str, float], name: str, where: tuple[str, str, str], ready) -> None:
    """go_to(page, *where), then wait for the locator `ready`; the time taken goes to timings as
    "switch <name>"."""
    timed(timings, f"switch {name}", lambda: (go_to(page, *where), ready.wait_for()))


def image_src(page, caption: str | re.Pattern) -> str:
    """The src of the st.image whose caption matches (its media URL changes with its pixels)."""
    figure = page.locator('[data-testid="stImage"]', has=page.get_by_text(caption))
    figure.first.wait_for(timeout=STEP_MS)
    return figure.first.locator("img").get_attribute("src")


def shoot(page, name: str) -> None:
    page.mouse.move(5, 5)  # no hover label or canvas toolbar in the picture
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"e2e-{name}.png"))


# ---------------------------------------------------------------------------------- test


def test_a_class_session_in_chromium(server: str, capsys: pytest.CaptureFixture) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    timings: dict[str, float] = {}
    with browser_page("e2e-failure.png") as page:
        timed(
            timings,
            "first page load",
            lambda: (page.goto(server), page.locator("h1", has_text="Train the auto-encoder").wait_for()),
        )
        sidebar = page.locator('[data-testid="stSidebar"]')

        # A small configuration: K = 3, 8 epochs of 1,000 images (some seconds of training).
        set_slider(page, "K: size of the latent code", ["Home", "ArrowRight", "ArrowRight"], "3")
        set_slider(page, "Epochs", ["ArrowLeft"] * 2, "8")
        choose(page, "Training images", "1,000 (quick demo subset)")
        expect(sidebar).to_contain_text("Q1=32, Q2=32, K=3 · 8 epochs · lr 0.001 · batch 32 · 1,000 images")
        expect(sidebar).to_contain_text("No model for this configuration yet")

        # Train: the live chart gains points while the run goes on.
        train = sidebar.get_by_role("button", name="Train", exact=True)
        t0 = time.perf_counter()
        train.click()
        page.wait_for_function(f"({LOSS_POINTS_JS})() > 0", polling=50, timeout=STEP_MS)
        timings["Train pressed -> first loss point on screen"] = round(time.perf_counter() - t0, 2)
        first = page.evaluate(LOSS_POINTS_JS)
        expect(page.get_by_text(re.compile(r"Epoch \d+/8 · step"))).to_be_visible()
        page.wait_for_function(f"({LOSS_POINTS_JS})() > {first}", polling=50, timeout=STEP_MS)
        later = page.evaluate(LOSS_POINTS_JS)
        still_training = page.get_by_text("Done: validation MSE").count() == 0
        shoot(page, "train-live")
        assert later > first >= 1
        assert still_training, "the run ended before a second look at the chart: give it more epochs"

        page.get_by_text("Done: validation MSE").wait_for(timeout=TRAIN_S * 1000)
        timings["Train pressed -> run done"] = round(time.perf_counter() - t0, 2)
        expect(sidebar).to_contain_text("Trained model · 8 epochs · validation MSE")
        done_points = page.evaluate(LOSS_POINTS_JS)
        assert done_points >= later
        shoot(page, "train")

        # Reconstructions of the new model.
        switch(
            page,
            timings,
            "to Reconstructions",
            ("The assignment", "reconstructions", "Reconstructions (Figure 1)"),
            page.get_by_text("Validation MSE (all 10,000 images)"),
        )
        expect(page.get_by_text("3 numbers per image")).to_be_visible()
        shoot(page, "reconstructions")

        # Latent space: click a dot, see its image, reconstruction and code.
        switch(
            page,
            timings,
            "to Latent space",
            ("The assignment", "latent", "Latent space"),
            page.locator(".js-plotly-plot").first,  # the codes; a PCA plane of the images below
        )
        # A dot of class 0, the one farthest from every class-mean star (a star would take the click).
        x, y = page.evaluate(FREE_DOT_JS, 0)
        page.mouse.click(*page.evaluate(DATA_TO_SCREEN_JS, [0, x, y]))
        page.get_by_text(re.compile(r"its reconstruction \(MSE")).wait_for()
        expect(page.get_by_text("Its latent code")).to_be_visible()
        shoot(page, "latent")

        # Mixtures: click cell (row 1, column 5), then move α with the keyboard.
        switch(
            page,
            timings,
            "to Mixtures",
            ("The assignment", "mixtures", "Mixtures of classes (Figure 2)"),
            page.get_by_text("From 3 to 8"),
        )
        cell = page.evaluate("""() => { const d = document.querySelector('.js-plotly-plot')._fullData[1];
                                       const i = d.customdata.findIndex(c => c[0] === 1 && c[1] === 5);
                                       return [d.x[i], d.y[i]]; }""")
        page.mouse.click(*page.evaluate(DATA_TO_SCREEN_JS, [0, *cell]))
        page.get_by_role("heading", name="From 1 to 5").wait_for()
        before = image_src(page, "α = 0.50")
        alpha = page.get_by_role("slider", name="α: how much of 5")
        alpha.focus()
        alpha.press("ArrowRight")
        alpha.press("ArrowRight")
        after = image_src(page, "α = 0.60")
        assert after != before, "the middle image did not change with α"
        shoot(page, "mixtures")

        # Latent walk: click the plane away from its centre; the decoded image changes.
        switch(
            page,
            timings,
            "to Latent walk",
            ("Explore further", "walk", "Walk the latent space"),
            page.locator(".js-plotly-plot"),
        )
        before = image_src(page, re.compile(r"^D\(code at"))
        target = page.evaluate("""() => { const d = document.querySelector('.js-plotly-plot')._fullData
                                            .find(t => t.name === 'click target');
                                         const i = 41 * 8 + 8; return [d.x[i], d.y[i]]; }""")
        page.mouse.click(*page.evaluate(DATA_TO_SCREEN_JS, [0, *target]))
        page.wait_for_function(
            "(before) => [...document.querySelectorAll('[data-testid=stImage]')].some(f => "
            "f.textContent.startsWith('D(code at') && f.querySelector('img').getAttribute('src') !== before)",
            arg=before,
        )
        shoot(page, "walk")

        # Draw a digit: a '7' in one stroke.
        switch(
            page,
            timings,
            "to Draw a digit",
            ("Explore further", "draw", "Draw a digit"),
            page.get_by_text("Draw a digit on the black square."),
        )
        box = page.locator("canvas.upper-canvas").bounding_box()
        stroke = [(0.3, 0.2), (0.72, 0.2), (0.45, 0.85)]
        page.mouse.move(box["x"] + stroke[0][0] * box["width"], box["y"] + stroke[0][1] * box["height"])
        page.mouse.down()
        for (ax, ay), (bx, by) in zip(stroke, stroke[1:], strict=False):
            for t in range(1, 13):
                page.mouse.move(
                    box["x"] + (ax + (bx - ax) * t / 12) * box["width"],
                    box["y"] + (ay + (by - ay) * t / 12) * box["height"],
                )
        page.mouse.up()
        page.get_by_text("Nearest class mean:").wait_for()
        expect(page.get_by_text("its reconstruction")).to_be_visible()
        shoot(page, "draw")

        # Compare runs: the new run beside the shipped one.
        switch(
            page,
            timings,
            "to Compare runs",
            ("Explore further", "compare", "Compare runs"),
            page.get_by_role("heading", name=re.compile("^Loss curves")),
        )
        expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
        shoot(page, "compare")

        switch(
            page,
            timings,
            "back to Train",
            ("The assignment", "", "Train the auto-encoder"),
            page.get_by_text("Done: validation MSE"),
        )  # this tab's run, finished
        page.wait_for_function(f"({LOSS_POINTS_JS})() >= 0", polling=50, timeout=STEP_MS)  # chart drawn
        assert page.evaluate(LOSS_POINTS_JS) == done_points

    (ARTIFACTS / "e2e-timings.json").write_text(json.dumps(timings, indent=2))
    with capsys.disabled():
        print("\nend-to-end timings (s):", ", ".join(f"{k}: {v}" for k, v in timings.items()))
