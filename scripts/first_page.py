"""How long a class waits for the first page: from `streamlit run dashboard.py` (packages and data in place)
to the shipped model's Train page fully drawn in Chromium (its loss chart, the digits and their
reconstructions, the script finished).

    .venv/bin/python -m scripts.first_page                          # 3 fresh servers, one tab each; MNIST in data/
    .venv/bin/python -m scripts.first_page --launcher both --open-after 0 5

`--launcher`: `streamlit` (`streamlit run dashboard.py`), `serve` (`python -m ui.serve`, what `make run`
starts: the first page's imports on a thread once the server listens) or `both`, alternating.
`--open-after S`: the tab opens the page S seconds after the server's health check (a teacher who
starts the server, then opens the address). Chromium is started before the clock; each server gets
an empty runs folder, so the page shows the shipped model. Prints, per server, the seconds to its
health check, from the start and from opening the page to the page drawn, and the medians.
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


LAUNCHERS = {"streamlit": ("-m", "streamlit", "run", "dashboard.py"), "serve": ("-m", "ui.serve")}


async def one(browser, data: Path, logs: Path, n: int, launcher: str, open_after: float) -> tuple[float, float, float]:
    """Seconds from the server's start to its health check and to the page drawn, and from opening the page."""
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.perf_counter()
        log = logs / f"first-page-{n}-{launcher}.log"
        with Server(data, Path(runs), log, launcher=LAUNCHERS[launcher]) as server:
            ready = time.perf_counter() - t0
            await asyncio.sleep(open_after)
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(60_000)
            opened = time.perf_counter()
            await page.goto(server.url)
            await page.get_by_role("heading", name=PAGES["Train"][1]).wait_for()
            await page.wait_for_function(DRAWN_JS, polling=50)
            drawn = time.perf_counter()
            await context.close()
    return ready, drawn - t0, drawn - opened


async def main_async(args: argparse.Namespace) -> int:
    problem = missing_browser()
    if problem:
        raise SystemExit(problem)
    data = data_root()
    logs = Path(tempfile.mkdtemp(prefix="convae-first-page-"))
    print(f"load average at start {os.getloadavg()[0]:.1f}; server logs in {logs}")
    async with async_playwright() as p:
        browser = await launch(p)
        launchers = ["streamlit", "serve"] if args.launcher == "both" else [args.launcher]
        rows: dict[tuple[str, float], list[tuple[float, float, float]]] = {}
        for n in range(args.runs):
            for open_after in args.open_after:
                for launcher in launchers if n % 2 == 0 else launchers[::-1]:
                    ready, drawn, from_open = await one(browser, data, logs, n, launcher, open_after)
                    rows.setdefault((launcher, open_after), []).append((ready, drawn, from_open))
                    print(
                        f"run {n + 1}, {launcher}, page opened {open_after:g} s after the health check: health "
                        f"after {ready:.2f} s, Train page drawn {drawn:.2f} s after the start, "
                        f"{from_open:.2f} s after opening it",
                        flush=True,
                    )
        await browser.close()
    for (launcher, open_after), got in rows.items():
        print(
            f"median of {len(got)}, {launcher}, opened {open_after:g} s after the health check: health "
            f"{statistics.median(r[0] for r in got):.2f} s, page drawn {statistics.median(r[1] for r in got):.2f} s "
            f"after the start (target at most 3 s), {statistics.median(r[2] for r in got):.2f} s after opening it"
        )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--launcher", choices=[*LAUNCHERS, "both"], default="serve")
    parser.add_argument("--open-after", type=float, nargs="+", default=[0.0], metavar="S")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
