"""The load test's quick version in CI: three browser sessions train at once against a real server.

scripts/loadtest.py --quick starts the dashboard on synthetic data, and in Chromium: one session
trains and presses Stop while its job runs, two sessions ask for the same configuration (one
double-clicks Train) and must share one job, and every session switches pages while the jobs run.
It exits non-zero when a job ends otherwise than asked, a page switch takes over 3 s, the server
logs an error, or the runs folder does not hold exactly one loadable checkpoint per finished job.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.browser


def test_quick_load_test_passes_its_checks(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: .ci/run installs Debian's chromium.")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the script's data, runs and server log
    run = subprocess.run(
        [sys.executable, "scripts/loadtest.py", "--quick"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "all checks passed" in run.stdout, report
    assert "sessions ended:        2 done, 1 cancelled, 0 other" in run.stdout, report
    joined = re.search(r"0 failed; presses of Train that joined a running job: (\d+)", run.stdout)
    assert joined and int(joined.group(1)) >= 1, report  # the second tab joined the first tab's job
