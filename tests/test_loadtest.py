"""The load test's quick version: three browser sessions train at once against a real server.

`python -m scripts.loadtest --quick` starts the dashboard on synthetic data, and in Chromium: one
session trains and presses Stop while its job runs, two sessions ask for the same configuration (one
double-clicks Train) and must share one job, and every session switches pages while the jobs run.
This test reads its JSON results: how each session and each job ended, the server log, the runs
folder. How long things took is printed by the script but not checked here (a loaded machine is
slow, not wrong); run the script without --no-time-limits to hold it to its limits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chromium import run_quick_script

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_quick_load_test_passes_its_checks(tmp_path: Path) -> None:
    res, report = run_quick_script("scripts.loadtest", tmp_path, timeout_s=300)

    summary = res["summary"]
    assert (summary["sessions_done"], summary["sessions_cancelled"], summary["sessions_other"]) == (2, 1, 0), report
    # Three sessions, two configs: the two tabs that asked for the same config share one job.
    assert (summary["configs"], summary["jobs"]) == (2, 2), report
    assert (summary["jobs_done"], summary["jobs_cancelled"], summary["jobs_failed"]) == (1, 1, 0), report
    assert summary["joined"] >= 1, report
    assert all(len(jobs) == 1 for jobs in res["jobs"].values()), res["jobs"]

    sessions = res["sessions"]
    stopped = [s for s in sessions if s["stop"]]
    assert [s["final"] for s in stopped] == ["cancelled"], sessions
    done_configs = {s["config"] for s in sessions if not s["stop"]}
    assert len(done_configs) == 1 and all(s["final"] == "done" for s in sessions if not s["stop"]), sessions
    # The finished job saved; the stopped one kept at most the model of its last finished epoch (the
    # script checked that that one is marked stopped, not complete).
    assert done_configs <= set(res["checkpoints"]) <= done_configs | {stopped[0]["config"]}

    # Every session went to a page and back while the jobs ran, and each switch drew its page (timed).
    for s in sessions:
        assert [title for title, _ in s["switches"]][1::2] == ["Train"], s
        assert all(seconds > 0 for _, seconds in s["switches"]), s
    timings = res["timings"]
    assert len(timings["page_switch_s"]) == 2 * len(sessions)
    assert len(timings["stop_to_job_end_s"]) == 1 and len(timings["stop_to_page_s"]) == 1
    assert res["timing_misses"] == []  # not checked with --no-time-limits
