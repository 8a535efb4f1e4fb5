"""scripts.page_cost: one protocol session times every page switch against a fresh server."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from scripts.page_cost import PAGES
from tests.support.server import PROJECT


@pytest.mark.slow
def test_page_cost_times_every_page() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "scripts.page_cost", "--rounds", "1"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for page in [*PAGES, "every page"]:
        line = re.search(rf"^{page} +median +(\d+) ms, fastest +(\d+) ms, slowest +(\d+) ms$", run.stdout, re.M)
        assert line, run.stdout
        median, fastest, slowest = map(int, line.groups())
        assert 0 < fastest <= median <= slowest < 60_000


def test_page_cost_refuses_no_rounds() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "scripts.page_cost", "--rounds", "0"], cwd=PROJECT, capture_output=True, text=True
    )
    assert run.returncode == 2 and "--rounds must be at least 1" in run.stderr
