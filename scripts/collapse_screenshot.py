"""A real collapse in the dashboard, on MNIST: Train K = 2 with seed 0 (5,000 images, one epoch of the
assignment's recipe), which collapses and restarts; check that the Train page says so, and save the
"Why did it collapse?" figure for the README. Then a quick-preset run of K = 5, seed 0, and what the
page says about restarts.

    .venv/bin/python -m scripts.collapse_screenshot          # writes docs/screenshots/collapse*.png
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from convae.data import data_root
from tests.support.chromium import CHROMIUM_ARGS, chromium_path, missing_browser
from tests.support.server import PROJECT, Server

WAIT_MS = 300_000


def train_and_wait(page, sidebar) -> float:
    t = time.perf_counter()
    sidebar.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Done: validation MSE").wait_for(timeout=WAIT_MS)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROJECT / "docs" / "screenshots")
    args = parser.parse_args()
    if problem := missing_browser():
        raise SystemExit(f"{problem}.")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="convae-collapse-") as tmp:
        runs = Path(tmp) / "runs"
        with Server(data_root(), runs, Path(tmp) / "server.log") as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            sidebar = page.locator('[data-testid="stSidebar"]')

            page.goto(server.url + "/?k=2&train_size=5000&epochs=1")
            page.locator("h1", has_text="Train the auto-encoder").wait_for()
            seconds = train_and_wait(page, sidebar)
            notes = page.get_by_text(re.compile(r"^Restarted: ")).all_inner_texts()
            print(f"K = 2, seed 0, 5,000 images, 1 epoch: done in {seconds:.0f} s; the page says:")
            print("\n".join(f"  {n}" for n in notes) or "  (no restart)")
            page.screenshot(path=str(args.out / "collapse-train.png"))

            page.goto(server.url + "/?k=2&train_size=5000&epochs=1")  # a new session: the stored run's view
            page.get_by_text("Why did it collapse?").click()
            figure = page.locator('[data-testid="stExpander"]', has_text="Why did it collapse?")
            figure.locator(".js-plotly-plot").wait_for()
            page.mouse.move(3, 500)
            page.wait_for_timeout(800)
            figure.screenshot(path=str(args.out / "collapse.png"))
            print(f"wrote {args.out / 'collapse.png'} and {args.out / 'collapse-train.png'}")

            page.goto(server.url + "/?k=5&seed=0")
            page.locator("h1", has_text="Train the auto-encoder").wait_for()
            sidebar.get_by_role("button", name="Quick", exact=True).click()
            sidebar.get_by_text("1 epoch · lr 0.003 · batch 128").wait_for()
            seconds = train_and_wait(page, sidebar)
            said = page.get_by_text(re.compile(r"^(No restart|Restarted): ")).all_inner_texts()
            done = page.get_by_text("Done: validation MSE").inner_text()
            print(f"K = 5, seed 0, quick preset: {done.splitlines()[0]} ({seconds:.0f} s); the page says: {said}")
            browser.close()


if __name__ == "__main__":
    main()
