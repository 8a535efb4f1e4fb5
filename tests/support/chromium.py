"""How Chromium is started: Debian's chromium, driven by Playwright with `executable_path` (never a
browser that Playwright downloads itself), headless, with the flags below and a fresh profile each time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# The screen position of a data point (x, y) of the index-th plotly chart on the page.
DATA_TO_SCREEN_JS = """([index, x, y]) => {
  const g = document.querySelectorAll('.js-plotly-plot')[index];
  const fl = g._fullLayout, r = g.getBoundingClientRect();
  return [r.left + fl.xaxis._offset + fl.xaxis.l2p(x), r.top + fl.yaxis._offset + fl.yaxis.l2p(y)];
}"""


def chromium_path() -> str:
    """The Chromium executable: $CONVAE_CHROMIUM, else `chromium` on the PATH, else Debian's path."""
    return os.environ.get("CONVAE_CHROMIUM") or shutil.which("chromium") or CHROMIUM


def missing_browser() -> str | None:
    """Why the browser tools cannot run here (no Chromium, no playwright package), or None."""
    path = chromium_path()
    if not Path(path).is_file():
        return f"Chromium not found ({path}); install Debian's chromium package (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements.txt)"
    return None


async def launch(playwright):
    """Start Chromium headless through an `async_playwright()` instance."""
    return await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def chromium_or_skip() -> str:
    """The Chromium executable; skip without it (or without playwright), but fail under CI, where .ci/run
    installs it."""
    import pytest

    problem = missing_browser()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}: CI is set, so the browser tests must run.")
        pytest.skip(problem)
    return chromium_path()


def run_quick_script(module: str, tmp_path: Path, timeout_s: float) -> tuple[dict, str]:
    """`python -m <module> --quick --no-time-limits --json …` from the project folder (its data, runs and
    server log under `tmp_path`); its JSON results, once its own checks passed, and its output. Needs
    Chromium (chromium_or_skip)."""
    import json
    import subprocess
    import sys

    from tests.support.server import PROJECT

    chromium_or_skip()
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--no-time-limits", "--json", str(out)],
        cwd=PROJECT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    report = run.stdout + run.stderr
    assert out.is_file(), report
    res = json.loads(out.read_text())
    assert res["failures"] == [], report
    assert run.returncode == 0 and res["passed"], report
    return res, report
