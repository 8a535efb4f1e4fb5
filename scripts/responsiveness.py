"""How quickly the dashboard answers, with the real data and the shipped model (one browser tab).

    .venv/bin/python -m scripts.responsiveness        # from the repository root

Starts the dashboard on a free localhost port (the project's data/ when it holds MNIST, else small
synthetic data; a fresh runs folder, so the model shown is the shipped one in models/mnist-seed/)
and measures, in Chromium:

- opening the app: until the Train page has drawn the shipped model's loss history;
- switching pages with a stored model, first visit (the model's analysis is computed then) and
  later visits (cached): until the page's heading, charts and images are drawn;
- the Latent space page: until the plotly scatter holds all its points (10,000 with MNIST);
- the lesson's pages (Bottleneck sweep, with the shipped sweep; Inside the network, the first
  validation digit): 1.5 s warm;
- pressing Retrain: until the first loss point of the new run is on the live chart (the data is
  already loaded by then, as on any page visit); then a page switch while it trains, and Stop;
- the server's resident memory (psutil, process and children) at rest and during the training.

Prints each figure beside its target and exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from convae.data import check_files
from convae.store import RunStore
from convae.synthetic import make_synthetic
from convae.train import TrainConfig
from tests.support.chromium import launch
from tests.support.pages import PAGES, STOPPED, click_page_link, close_session, open_session, sidebar
from tests.support.server import PROJECT, Server, log_problems

TARGETS = {"train_to_first_point": 1.0, "page_switch": 1.0, "latent_page": 1.5, "lesson_page": 1.5, "rss_gib": 1.5}
LESSON = ("Bottleneck sweep", "Inside the network")  # the lesson's pages: 1.5 s warm (they draw more)
ROUNDS = 2  # page-switch rounds after the first visits

# True once the page has drawn: the script is not running, nothing is stale, every plotly chart and
# image is rendered, and (for the latent page) the scatter holds `points` points.
READY_JS = """([heading, points]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  if (!app || !main || app.getAttribute('data-test-script-state') === 'running') return false;
  if (![...main.querySelectorAll('h1')].some(h => h.textContent.includes(heading))) return false;
  if (main.querySelector('[data-stale="true"]')) return false;
  for (const chart of main.querySelectorAll('[data-testid="stPlotlyChart"]')) {
    if (!chart.querySelector('.main-svg')) return false;
  }
  for (const img of main.querySelectorAll('img')) { if (!img.complete) return false; }
  if (points > 0) {
    const plot = main.querySelector('.st-key-latent .js-plotly-plot');
    if (!plot || !plot._fullData) return false;
    const n = plot._fullData.filter(t => t.name !== 'class means μ')
                            .reduce((s, t) => s + (t.x ? t.x.length : 0), 0);
    if (n < points) return false;
  }
  return true;
}"""

# The live chart's training-loss trace has at least one point.
FIRST_POINT_JS = """() => {
  const plot = document.querySelector('.st-key-live_chart .js-plotly-plot');
  return !!(plot && plot._fullData && plot._fullData.some(t => t.x && t.x.length > 0));
}"""


async def timed_switch(page, title: str, points: int = 0) -> float:
    """Open a page through the navigation; seconds from the click until it has drawn."""
    t0 = await click_page_link(page, title)
    await page.wait_for_function(READY_JS, arg=[PAGES[title][1], points], polling=50, timeout=120_000)
    return time.perf_counter() - t0


async def measure(url: str, server: Server, val_points: int) -> dict:
    from playwright.async_api import async_playwright

    out: dict = {"switch_first": {}, "switch_warm": {}, "latent": [], "during_training": {}}
    async with async_playwright() as pw:
        browser = await launch(pw)
        t0 = time.perf_counter()
        page = await open_session(browser, url, timeout_s=180)
        await page.wait_for_function(READY_JS, arg=[PAGES["Train"][1], 0], polling=50, timeout=180_000)
        out["open"] = time.perf_counter() - t0
        out["rss_idle"] = server.rss()

        tour = ["Reconstructions", "Latent space", "Mixtures", "Latent walk", "Compare runs", *LESSON, "Train"]
        for title in tour:
            points = val_points if title == "Latent space" else 0
            out["switch_first"][title] = await timed_switch(page, title, points)
        for _ in range(ROUNDS):
            for title in tour:
                points = val_points if title == "Latent space" else 0
                seconds = await timed_switch(page, title, points)
                out["switch_warm"].setdefault(title, []).append(seconds)
        out["latent"] = out["switch_warm"]["Latent space"]
        out["rss_after_pages"] = server.rss()

        # Retrain the shipped configuration (into the temporary runs folder) and watch the first point.
        server.peak_rss = 0
        button = sidebar(page).get_by_role("button", name="Retrain")
        t0 = time.perf_counter()
        await button.click()
        await page.wait_for_function(FIRST_POINT_JS, polling=20, timeout=120_000)
        out["first_point"] = time.perf_counter() - t0
        await asyncio.sleep(2)
        for _ in range(ROUNDS):
            for title in ("Reconstructions", "Latent space", "Train"):
                points = val_points if title == "Latent space" else 0
                seconds = await timed_switch(page, title, points)
                out["during_training"].setdefault(title, []).append(seconds)
        await asyncio.sleep(1)
        out["progress_text"] = await page.get_by_text("images/s").first.inner_text()
        out["rss_training"] = server.peak_rss
        t0 = time.perf_counter()
        await sidebar(page).get_by_role("button", name="Stop").click()
        await page.get_by_text(STOPPED).wait_for(timeout=30_000)
        out["stop"] = time.perf_counter() - t0
        await close_session(page)
        await browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (runs, server log)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tmp = Path(tempfile.mkdtemp(prefix="convae-responsiveness-"))
    real = not check_files(PROJECT / "data", "mnist")
    data_dir = PROJECT / "data" if real else make_synthetic(tmp / "data", n_train=2000, n_val=10000)
    shipped = RunStore(tmp / "runs").get(TrainConfig())
    if shipped is None or not shipped.shipped:
        print("No shipped model for the default configuration (models/mnist-seed/): run `make seed` first.")
        return 2
    val_points = 10000  # MNIST's validation images, and as many synthetic ones
    keep = args.keep
    try:
        with Server(data_dir, tmp / "runs", tmp / "server.log") as server:
            figures = asyncio.run(measure(server.url, server, val_points))
            time.sleep(0.5)
            problems, _ = log_problems(server.log_text())
        gib = 2**30
        warm = [
            s for t, times in figures["switch_warm"].items() if t != "Latent space" and t not in LESSON for s in times
        ]
        lesson = max(s for t in LESSON for s in figures["switch_warm"][t])
        latent = max(figures["latent"])
        rss = max(figures["rss_training"], figures["rss_after_pages"]) / gib
        print(f"data: {'MNIST in data/' if real else 'synthetic (no MNIST in data/)'}; model: {shipped.path}")
        print(f"opening the app (Train page drawn):       {figures['open']:.2f} s")
        print("first visit of each page (analysis computed once per model):")
        for title, seconds in figures["switch_first"].items():
            print(f"  {title:<16} {seconds:.2f} s")
        print(f"later visits, {ROUNDS} rounds (max per page):")
        for title, times in figures["switch_warm"].items():
            print(f"  {title:<16} max {max(times):.2f} s, median {statistics.median(times):.2f} s")
        print(
            f"page switch, stored model (not Latent):   max {max(warm):.2f} s   (target <= {TARGETS['page_switch']} s)"
        )
        print(
            f"Latent space, {val_points:,} points drawn:       max {latent:.2f} s   "
            f"(target <= {TARGETS['latent_page']} s)"
        )
        print(f"Bottleneck sweep, Inside the network:    max {lesson:.2f} s   (target <= {TARGETS['lesson_page']} s)")
        print(
            f"Retrain -> first loss point on screen:    {figures['first_point']:.2f} s   "
            f"(target <= {TARGETS['train_to_first_point']} s)"
        )
        print(
            "page switch while it trains:              "
            + ", ".join(f"{t} max {max(s):.2f} s" for t, s in figures["during_training"].items())
        )
        print(f"Stop -> 'Stopped.':                       {figures['stop']:.2f} s")
        print(f"progress line while training:             {figures['progress_text']}")
        print(
            f"server RSS: at rest {figures['rss_idle'] / gib:.2f} GiB, after all pages "
            f"{figures['rss_after_pages'] / gib:.2f} GiB, peak while training {figures['rss_training'] / gib:.2f} "
            f"GiB   (target <= {TARGETS['rss_gib']} GB)"
        )
        missed = []
        if max(warm) > TARGETS["page_switch"]:
            missed.append("page switch")
        if latent > TARGETS["latent_page"]:
            missed.append("latent page")
        if lesson > TARGETS["lesson_page"]:
            missed.append("lesson pages")
        if figures["first_point"] > TARGETS["train_to_first_point"]:
            missed.append("first loss point")
        if rss > TARGETS["rss_gib"]:
            missed.append("memory")
        if problems:
            missed.append(f"server log errors ({problems[0][:200]})")
        print("targets missed: " + (", ".join(missed) if missed else "none"))
        keep = keep or bool(missed)
        if keep:
            print(f"(server log: {tmp / 'server.log'})")
        return 1 if missed else 0
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
