"""In a real browser: a quick preset from an address with K and seed, Train, and the page says whether
the run had to restart after a collapse. (The restart itself is forced and checked in test_app.py and
test_collapse.py; a real collapse needs MNIST, see docs/collapse.md.)"""

from __future__ import annotations

import re

import pytest

from tests.test_browser import TRAIN_S, browser_page, choose, server, shoot  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_quick_preset_from_the_address_trains_and_says_whether_it_restarted(server: str) -> None:  # noqa: F811
    from playwright.sync_api import expect

    with browser_page() as page:
        page.goto(server + "/?k=5&seed=0")
        page.locator("h1", has_text="Train the auto-encoder").wait_for()
        sidebar = page.locator('[data-testid="stSidebar"]')
        expect(sidebar).to_contain_text("K=5")
        sidebar.get_by_role("button", name="Quick", exact=True).click()
        expect(sidebar).to_contain_text("1 epoch · lr 0.003 · batch 128")
        expect(sidebar).to_contain_text("Not the assignment's recipe")
        sidebar.get_by_role("button", name="Train", exact=True).click()
        expect(page.get_by_text("Done: validation MSE")).to_be_visible(timeout=TRAIN_S * 1000)
        said = page.get_by_text(re.compile(r"No restart: seed 0 learned|Restarted: seed 0 collapsed"))
        expect(said.first).to_be_visible()
        expect(page.get_by_text("learned nothing")).to_have_count(0)
        shoot(page, "quick-preset-done")
