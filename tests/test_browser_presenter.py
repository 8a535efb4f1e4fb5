"""The presenter and shareable views in a real browser (Debian's Chromium, Playwright): two browser
contexts, a teacher and a student, against one `streamlit run` started with a teacher key.

The teacher enters the key and turns on "follow me"; each move (a cell of Mixtures, α, another page, a
dot of the latent space) reaches the student within 2 s of the teacher's page showing it: for another
page, the student's tab is on that page (its address) within 2 s, and the time until that page has
drawn is recorded beside it, as it depends on the page and the machine's load. The student leaves and
comes back. "Pause training for students" disables the student's Train button with the reason, without
the student doing anything. The teacher's "Copy link" opened in a third context shows the same page,
cell and α. Presentation mode enlarges the type and folds the sidebar once (the teacher can open it
again). The pages show the shipped model (the default config) on generated data; the times are printed
and written to test-artifacts/presenter-timings.json.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from convae.synthetic import make_synthetic
from tests.support.chromium import CHROMIUM_ARGS, DATA_TO_SCREEN_JS
from tests.support.server import Server
from tests.test_browser import ARTIFACTS, FREE_DOT_JS, STEP_MS, chromium_or_skip, go_to, start_or_fail

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KEY = "owl-7-lantern"
# The promise is 2 s (timed by scripts.classload); this test asserts that a move arrives at all, on a machine
# that may be doing other work too.
FOLLOW_LIMIT_S = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    chromium_or_skip()
    root = tmp_path_factory.mktemp("presenter")
    make_synthetic(root / "data", n_train=300, n_val=200)
    env = {"OMP_NUM_THREADS": "1", "CONVAE_TEACHER_KEY": KEY}
    srv = start_or_fail(Server(root / "data", root / "runs", root / "server.log", env=env))
    try:
        yield srv
    finally:
        srv.__exit__(None, None, None)
    log = srv.log_path.read_text()
    assert "Traceback" not in log, f"The server logged an exception:\n{log[-3000:]}"
    assert KEY not in log, "the teacher key appeared in the server's log"


def open_tab(browser, url: str):
    page = browser.new_context(viewport={"width": 1400, "height": 950}).new_page()
    page.set_default_timeout(STEP_MS)
    page.goto(url)
    page.locator("h1", has_text="Train the auto-encoder").wait_for()
    return page


def toggle(page, key: str):
    return page.locator(f".st-key-{key} input")


def set_toggle(page, key: str, on: bool) -> None:
    box = toggle(page, key)
    box.wait_for(state="attached")
    if box.is_checked() != on:
        page.locator(f".st-key-{key} label").click()
    page.wait_for_function(
        "([key, on]) => { const e = document.querySelector(`.st-key-${key} input`); return e && e.checked === on; }",
        arg=[key, on],
    )


def train_button(page):
    return page.locator('[data-testid="stSidebar"]').get_by_role("button", name=re.compile(r"^(Train|Retrain)$"))


def followed_within(student, heading: str, since: float) -> float:
    """Seconds from `since` until the student's page shows `heading` (a heading of the main area)."""
    student.get_by_role("heading", name=heading, exact=True).wait_for(timeout=STEP_MS)
    return round(time.perf_counter() - since, 2)


def moved_within(student, path: str, heading: str, since: float) -> tuple[float, float]:
    """Seconds from `since` until the student's address is the page's (the move: the server switched the
    student's session to that page) and until the page has drawn its heading (the page's own cost too)."""
    student.wait_for_url(re.compile(rf"/{path}(\?|$)"), timeout=STEP_MS)
    moved = round(time.perf_counter() - since, 2)
    return moved, followed_within(student, heading, since)


def test_the_class_follows_the_presenter_and_a_copied_link_opens_the_same_view(server: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    timings: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_or_skip(), args=CHROMIUM_ARGS)
        expect.set_options(timeout=STEP_MS)
        try:
            teacher, student = open_tab(browser, server.url), open_tab(browser, server.url)
            t_side = teacher.locator('[data-testid="stSidebar"]')

            # A wrong key: the same message, no toggles. Then the key.
            t_side.get_by_text("Teacher", exact=True).click()
            key_box = teacher.locator(".st-key-teacher_key_input input")
            key_box.fill(KEY[:-1])
            key_box.press("Enter")
            expect(t_side.get_by_text("That is not the teacher key.")).to_be_visible()
            expect(toggle(teacher, "follow_me")).to_have_count(0)
            key_box.fill(KEY)
            key_box.press("Enter")
            expect(toggle(teacher, "follow_me")).to_have_count(1)
            assert KEY not in teacher.url
            expect(toggle(student, "follow_teacher")).to_have_count(0)  # nobody leads yet

            set_toggle(teacher, "follow_me", True)
            expect(toggle(student, "follow_teacher")).to_be_checked()  # on by default while the teacher leads

            # Move 1: the teacher opens Mixtures and clicks cell (1, 5).
            go_to(teacher, "The assignment", "mixtures", "Mixtures of classes (Figure 2)")
            teacher.get_by_text("From 3 to 8").wait_for()
            cell = teacher.evaluate("""() => { const d = document.querySelector('.js-plotly-plot')._fullData[1];
                                              const i = d.customdata.findIndex(c => c[0] === 1 && c[1] === 5);
                                              return [d.x[i], d.y[i]]; }""")
            teacher.mouse.click(*teacher.evaluate(DATA_TO_SCREEN_JS, [0, *cell]))
            teacher.get_by_role("heading", name="From 1 to 5").wait_for()
            timings["cell"] = followed_within(student, "From 1 to 5", time.perf_counter())

            # Move 2: α, with the keyboard.
            alpha = teacher.get_by_role("slider", name="α: how much of 5")
            alpha.focus()
            alpha.press("ArrowRight")
            alpha.press("ArrowRight")
            teacher.get_by_text("α = 0.60").wait_for()
            t0 = time.perf_counter()
            student.get_by_text("α = 0.60").wait_for()
            timings["alpha"] = round(time.perf_counter() - t0, 2)
            teacher.wait_for_timeout(300)  # the run that drew it has published it (the address, too)

            # The copied link, opened on "another device" (a context of its own).
            t_side.get_by_role("button", name="Copy link").click()
            link = teacher.locator('[data-testid="stPopoverBody"] code').inner_text().strip()
            assert link.startswith(server.url + "/mixtures?"), link
            assert "pair=1,5" in link and "alpha=0.6" in link and KEY not in link
            teacher.keyboard.press("Escape")
            other = browser.new_context(viewport={"width": 1400, "height": 950}).new_page()
            other.set_default_timeout(STEP_MS)
            other.goto(link)
            other.get_by_role("heading", name="From 1 to 5").wait_for()
            expect(other.get_by_text("α = 0.60")).to_be_visible()
            expect(other.get_by_role("slider", name="α: how much of 5")).to_have_attribute("aria-valuetext", "0.60")
            other.context.close()

            # The student leaves; the teacher moves on; the student stays, then comes back.
            set_toggle(student, "follow_teacher", False)
            go_to(student, "Explore further", "compare", "Compare runs")  # a page of the student's own choice
            go_to(teacher, "Explore further", "walk", "Walk the latent space")
            teacher.wait_for_timeout(2500)
            expect(student.locator("h1", has_text="Compare runs")).to_be_visible()
            expect(toggle(student, "follow_teacher")).not_to_be_checked()
            t0 = time.perf_counter()
            set_toggle(student, "follow_teacher", True)
            timings["come back"], timings["come back, drawn"] = moved_within(
                student, "walk", "Walk the latent space", t0
            )

            # Move 3: a page switch while following.
            go_to(teacher, "The assignment", "latent", "Latent space")
            timings["page"], timings["page, drawn"] = moved_within(
                student, "latent", "Latent space", time.perf_counter()
            )

            # Move 4: the teacher clicks a dot of the latent space; the student sees the same image.
            teacher.locator(".js-plotly-plot").first.wait_for()
            x, y = teacher.evaluate(FREE_DOT_JS, 0)
            teacher.mouse.click(*teacher.evaluate(DATA_TO_SCREEN_JS, [0, x, y]))
            picked = teacher.get_by_text(re.compile(r"^image #\d+: ")).first
            picked.wait_for()
            caption = picked.inner_text().strip()
            t0 = time.perf_counter()
            student.get_by_text(caption, exact=True).wait_for()
            timings["latent dot"] = round(time.perf_counter() - t0, 2)

            # Pause: the student's Train button says why, without the student doing anything.
            s_train = train_button(student)
            expect(s_train).to_be_enabled()
            set_toggle(teacher, "pause_students", True)
            t0 = time.perf_counter()
            expect(s_train).to_be_disabled()
            timings["pause"] = round(time.perf_counter() - t0, 2)
            expect(student.get_by_text("The teacher has paused training for students.")).to_be_visible()
            expect(train_button(teacher)).to_be_enabled()
            set_toggle(teacher, "pause_students", False)
            expect(s_train).to_be_enabled()

            # Presentation mode: larger type, the sidebar folded.
            set_toggle(teacher, "presentation_mode", True)
            teacher.wait_for_function("() => getComputedStyle(document.documentElement).fontSize === '20px'")
            expect(t_side).to_have_attribute("data-collapsed", "true")
            teacher.screenshot(path=str(ARTIFACTS / "presenter-presentation-mode.png"))
            teacher.locator('[data-testid="stExpandSidebarButton"]').click()  # the teacher opens it again
            expect(t_side).to_have_attribute("data-collapsed", "false")
            set_toggle(teacher, "pause_students", True)  # a rerun does not fold it again
            set_toggle(teacher, "pause_students", False)
            expect(t_side).to_have_attribute("data-collapsed", "false")
            set_toggle(teacher, "presentation_mode", False)
            teacher.wait_for_function("() => getComputedStyle(document.documentElement).fontSize !== '20px'")
            student.screenshot(path=str(ARTIFACTS / "presenter-student.png"))
        finally:
            browser.close()
    (ARTIFACTS / "presenter-timings.json").write_text(json.dumps(timings, indent=2))
    print("follow-me times (s):", timings)
    # The promise is about the move; how long a page then takes to draw is the page's (and the machine's).
    # The 2 s promise is measured by the class load test (a benchmark, not a timed test); here a move
    # must arrive, and the times are kept in test-artifacts/presenter-timings.json.
    slow = {move: s for move, s in timings.items() if "drawn" not in move and s > FOLLOW_LIMIT_S}
    assert not slow, f"the student followed later than {FOLLOW_LIMIT_S} s: {slow}"
