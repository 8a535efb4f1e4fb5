"""How long a class waits for the first page: from `streamlit run dashboard.py` (packages and data in place)
to the shipped model's Train page fully drawn in Chromium (its loss chart, the digits and their
reconstructions, the script finished).

    .venv/bin/python -m scripts.first_page              # 3 fresh servers, one tab each; MNIST in data/

Chromium is started before the clock; each server gets an empty runs folder, so the page shows the
shipped model. Prints, per server, the seconds to its health check, to the page drawn, and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from playwright.async_api import async_playwright

from convae.data import data_root
from tests.support.chromium import launch, missing_browser
from tests.support.pages import PAGES
from tests.support.server import Server

DRAWN_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const chart = main.querySelector('[data-testid="stPlotlyChart"] .main-svg');
  const images = [...main.querySelectorAll('[data-testid="stImage"] img')].filter(i => i.complete && i.naturalWidth);
  return Boolean(chart) && images.length > 0 && !running;
}"""


async def one(browser, data: Path, logs: Path, n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.perf_counter()
        with Server(data, Path(runs), logs / f"first-page-{n}.log") as server:
            ready = time.perf_counter() - t0
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(60_000)
            await page.goto(server.url)
            await page.get_by_role("heading", name=PAGES["Train"][1]).wait_for()
            await page.wait_for_function(DRAWN_JS, polling=50)
            drawn = time.perf_counter() - t0
            await context.close()
    return ready, drawn


async def main_async(args: argparse.Namespace) -> int:
    problem = missing_browser()
    if problem:
        raise SystemExit(problem)
    data = data_root()
    logs = Path(tempfile.mkdtemp(prefix="convae-first-page-"))
    print(f"load average at start {os.getloadavg()[0]:.1f}; server logs in {logs}")
    async with async_playwright() as p:
        browser = await launch(p)
        rows = []
        for n in range(args.runs):
            ready, drawn = await one(browser, data, logs, n)
            rows.append((ready, drawn))
            print(f"server {n + 1}: health check after {ready:.2f} s, Train page drawn after {drawn:.2f} s", flush=True)
        await browser.close()
    print(
        f"median: health {statistics.median(r[0] for r in rows):.2f} s, page drawn "
        f"{statistics.median(r[1] for r in rows):.2f} s (target at most 3 s); load average {os.getloadavg()[0]:.1f}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
