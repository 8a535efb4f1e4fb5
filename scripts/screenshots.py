"""Screenshots of every dashboard page for the README, on the real data and the shipped model.

    .venv/bin/python -m scripts.screenshots                  # writes docs/screenshots/<page>.png
    .venv/bin/python -m scripts.screenshots --out /tmp/shots --no-extra-runs

(from the repository root.)

Starts `streamlit run dashboard.py` on a free localhost port (data from data/ or $CONVAE_DATA_DIR;
a fresh, temporary run store, so that only the shipped model and the runs made here appear), opens
it in Debian's Chromium (Playwright) with a 1500 x 1000 viewport, and on each page does what shows it
best: a point of the latent space clicked, a cell of Figure 2 selected and α moved, a point of the
latent walk clicked, a '3' drawn on the canvas, a digit of the inside view clicked, PCA beside the
auto-encoder (pca-reconstructions.png, and pca-latent.png at K = 2). Unless --no-extra-runs, it first
trains two quick demo runs (K = 8 and K = 16 on 1,000 images) so that the Compare page has something
to compare, and runs with the quick preset at K = 2, 4, 16 and 64 for the sweep page (and the K = 2
picture); about five minutes in all. Prints how long each page took to draw, including the latent
space with all 10,000 codes.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convae.data import data_root
from tests.support.chromium import CHROMIUM_ARGS, DATA_TO_SCREEN_JS, chromium_path, missing_browser
from tests.support.server import PROJECT, Server

WAIT_MS = 120_000
# Quick demos beside the shipped K = 10 model. (With seed 0 and 1,000 images, K = 2, 3, 4, 6 and 32 stay
# stuck on a blank output, the sigmoid saturated at 0; K = 8 and 16 learn.)
EXTRA_RUNS = [
    ["--k", "8", "--train-size", "1000", "--epochs", "10"],
    ["--k", "16", "--train-size", "1000", "--epochs", "10"],
]
# The quick preset (convae.presets) at a few K, for the sweep page and the K = 2 latent picture.
QUICK = ["--epochs", "1", "--batch-size", "128", "--lr", "0.003", "--mean-init"]
SWEEP_RUNS = [["--k", str(k), *QUICK] for k in (2, 4, 16, 64)]
QUICK_K2 = "k=2&epochs=1&batch_size=128&lr=0.003&mean_init=1"  # the sidebar's address for the K = 2 run

# True once the latent scatter holds all 10,000 validation codes (its first ten traces, one per class).
ALL_CODES_DRAWN_JS = """() => { const g = document.querySelector('.js-plotly-plot');
  return !!g && !!g._fullData && g._fullData.slice(0, 10).reduce((n, d) => n + (d._length || 0), 0) >= 10000; }"""

# A typical dot of class `cls` that no class-mean star covers: the nearest to its class mean among the
# dots at least 25 pixels from every star.
TYPICAL_DOT_JS = """(cls) => {
  const g = document.querySelector('.js-plotly-plot'), fl = g._fullLayout;
  const d = g._fullData[cls], m = g._fullData.find(t => String(t.name).startsWith('class means'));
  const px = (x, y) => [fl.xaxis.l2p(x), fl.yaxis.l2p(y)];
  const stars = Array.from(m.x, (x, i) => px(x, m.y[i])), [cu, cv] = stars[cls];
  let best = 0, bestDist = Infinity;
  for (let i = 0; i < d._length; i++) {
    const [u, v] = px(d.x[i], d.y[i]);
    if (Math.min(...stars.map(([a, b]) => Math.hypot(u - a, v - b))) < 25) continue;
    const dist = Math.hypot(u - cu, v - cv);
    if (dist < bestDist) { bestDist = dist; best = i; }
  }
  return [d.x[best], d.y[best]];
}"""


def train_extra_runs(runs: Path) -> None:
    for args in EXTRA_RUNS + SWEEP_RUNS:
        name = "-".join(a.strip("-") for a in args)
        if list((runs / name).glob("*.pt")):
            continue  # kept from an earlier call with --runs
        cmd = [sys.executable, "-m", "convae", "train", *args, "--out", str(runs / name)]
        print("training a quick demo run:", " ".join(cmd[1:]), flush=True)
        # One intra-op thread for the small 1,000-image runs: a small model trains fastest so on a small,
        # shared machine. The quick-preset runs (60,000 images) use torch's default.
        env = {**os.environ, "OMP_NUM_THREADS": "1"} if args in EXTRA_RUNS else None
        subprocess.run(cmd, cwd=PROJECT, check=True, stdout=subprocess.DEVNULL, env=env)


def go_to(page, section: str, path: str, heading: str) -> float:
    """Switch page through the top navigation; seconds until its heading shows."""
    t = time.perf_counter()
    page.locator('[data-testid="stTopNavSection"]', has_text=section).click()
    page.locator(f'a[data-testid="stTopNavDropdownLink"][href$="/{path}"]').click()
    page.locator("h1", has_text=heading).wait_for()
    return time.perf_counter() - t


def charts_drawn(page, n: int) -> None:
    """Wait until the page holds at least n plotly charts with their data drawn."""
    page.wait_for_function(
        "(n) => [...document.querySelectorAll('.js-plotly-plot')].filter(g => g._fullData).length >= n", arg=n
    )


def click_data_point(page, chart: int, x: float, y: float) -> None:
    page.mouse.click(*page.evaluate(DATA_TO_SCREEN_JS, [chart, x, y]))


def three_stroke(box: dict) -> list[tuple[float, float]]:
    """A '3' in one stroke: two arcs, open on the left, in canvas pixels."""
    pts = []
    for cx, cy, r, a0, a1 in ((0.5, 0.33, 0.17, -160, 90), (0.5, 0.67, 0.19, -90, 160)):
        for i in range(25):
            a = math.radians(a0 + (a1 - a0) * i / 24)
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return [(box["x"] + u * box["width"], box["y"] + v * box["height"]) for u, v in pts]


def shoot(page, out: Path, name: str) -> None:
    page.mouse.move(3, 500)  # no hover label or canvas toolbar in the picture
    page.wait_for_timeout(800)
    page.screenshot(path=str(out / f"{name}.png"))
    print(f"wrote {out / f'{name}.png'}", flush=True)


def lesson_pages(page, url: str, out: Path, timings: dict[str, float]) -> None:
    """The sweep, the inside view (digit #13 clicked), and PCA beside the auto-encoder."""
    timings["Bottleneck sweep"] = go_to(page, "Explore further", "sweep", "Bottleneck sweep")
    charts_drawn(page, 2)
    shoot(page, out, "sweep")

    timings["Inside the network"] = go_to(page, "Explore further", "inside", "Inside the network")
    charts_drawn(page, 2)
    cell = page.evaluate("""() => { const d = document.querySelectorAll('.js-plotly-plot')[0]._fullData[1];
        const i = d.customdata.findIndex(c => c[0] === 1 && c[1] === 3); return [d.x[i], d.y[i]]; }""")
    click_data_point(page, 0, *cell)
    page.get_by_text("input: image #13").wait_for()
    shoot(page, out, "inside")

    go_to(page, "The assignment", "reconstructions", "Reconstructions (Figure 1)")
    page.get_by_role("heading", name="The linear baseline: PCA with 10 components").scroll_into_view_if_needed()
    charts_drawn(page, 2)
    shoot(page, out, "pca-reconstructions")

    page.goto(f"{url}/latent?{QUICK_K2}")  # the quick K = 2 run: its plane beside PCA's
    charts_drawn(page, 2)
    shoot(page, out, "pca-latent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROJECT / "docs" / "screenshots")
    parser.add_argument("--no-extra-runs", action="store_true", help="do not train the quick demo runs")
    parser.add_argument(
        "--runs", type=Path, default=None, help="keep the demo runs in this folder (trained only if missing)"
    )
    args = parser.parse_args()
    problem = missing_browser()
    if problem:
        raise SystemExit(f"{problem}.")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="convae-shots-") as tmp:
        runs = args.runs or Path(tmp) / "runs"
        if not args.no_extra_runs:
            train_extra_runs(runs)
        with Server(data_root(), runs, Path(tmp) / "server.log") as server, sync_playwright() as p:
            url = server.url
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(WAIT_MS)

            t = time.perf_counter()
            page.goto(url)
            page.get_by_text("Loss history of the model shown").wait_for()
            page.locator(".js-plotly-plot").first.wait_for()
            timings["Train (first load)"] = time.perf_counter() - t
            shoot(page, args.out, "train")

            t = go_to(page, "The assignment", "reconstructions", "Reconstructions (Figure 1)")
            page.locator(".js-plotly-plot").first.wait_for()
            timings["Reconstructions"] = t
            shoot(page, args.out, "reconstructions")

            t = time.perf_counter()
            go_to(page, "The assignment", "latent", "Latent space")
            page.wait_for_function(ALL_CODES_DRAWN_JS)
            timings["Latent space, 10,000 points drawn"] = time.perf_counter() - t
            # Click a '2' near its class mean: its image, reconstruction and code appear beside the plot.
            x, y = page.evaluate(TYPICAL_DOT_JS, 2)
            click_data_point(page, 0, x, y)
            page.get_by_text("Its latent code").wait_for()
            shoot(page, args.out, "latent")

            timings["Mixtures"] = go_to(page, "The assignment", "mixtures", "Mixtures of classes (Figure 2)")
            charts_drawn(page, 1)
            cell = page.evaluate("""() => { const d = document.querySelector('.js-plotly-plot')._fullData[1];
                const i = d.customdata.findIndex(c => c[0] === 4 && c[1] === 9); return [d.x[i], d.y[i]]; }""")
            click_data_point(page, 0, *cell)
            page.get_by_role("heading", name="From 4 to 9").wait_for()
            alpha = page.get_by_role("slider", name="α: how much of 9")
            alpha.focus()
            for _ in range(4):
                alpha.press("ArrowRight")
            page.get_by_text("α = 0.70").wait_for()
            shoot(page, args.out, "mixtures")

            timings["Latent walk"] = go_to(page, "Explore further", "walk", "Walk the latent space")
            charts_drawn(page, 1)
            # Click the lattice point nearest to the middle of the class means of 4 and 9.
            target = page.evaluate("""() => { const all = document.querySelector('.js-plotly-plot')._fullData;
                const m = all.find(t => String(t.name).startsWith('class means'));
                const c = all.find(t => t.name === 'click target');
                const mx = (m.x[4] + m.x[9]) / 2, my = (m.y[4] + m.y[9]) / 2;
                let best = 0, bd = Infinity;
                for (let i = 0; i < c._length; i++) {
                  const dd = (c.x[i] - mx) ** 2 + (c.y[i] - my) ** 2; if (dd < bd) { bd = dd; best = i; }
                }
                return [c.x[best], c.y[best]]; }""")
            click_data_point(page, 0, *target)
            page.locator('[data-testid="stImage"]', has_text=f"D(code at ({target[0]:.2f}").wait_for()
            shoot(page, args.out, "walk")

            timings["Draw a digit"] = go_to(page, "Explore further", "draw", "Draw a digit")
            canvas = page.locator("canvas.upper-canvas")
            canvas.wait_for()
            stroke = three_stroke(canvas.bounding_box())
            page.mouse.move(*stroke[0])
            page.mouse.down()
            for point in stroke[1:]:
                page.mouse.move(*point)
            page.mouse.up()
            page.get_by_text("Nearest class mean:").wait_for()
            page.locator(".js-plotly-plot").first.wait_for()
            shoot(page, args.out, "draw")

            timings["Compare runs"] = go_to(page, "Explore further", "compare", "Compare runs")
            page.locator(".js-plotly-plot").first.wait_for()
            shoot(page, args.out, "compare")

            lesson_pages(page, url, args.out, timings)
            browser.close()
        log = (Path(tmp) / "server.log").read_text()
        if "Traceback" in log:
            print("The server logged an exception:\n" + log[-3000:], file=sys.stderr)
            raise SystemExit(1)
    print("seconds to draw each page:")
    for name, seconds in timings.items():
        print(f"  {name:<36} {seconds:6.2f}")


if __name__ == "__main__":
    main()
