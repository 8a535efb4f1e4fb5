"""Load test of the dashboard: N browser sessions train at once against one local server.

From the repository root:

    .venv/bin/python -m scripts.loadtest              # 10 sessions
    .venv/bin/python -m scripts.loadtest --quick      # 3 sessions
    .venv/bin/python -m scripts.loadtest --quick --no-time-limits --json out.json   # as tests/test_loadtest.py

Starts `streamlit run dashboard.py` on a free localhost port with fresh data and runs folders
(small synthetic MNIST-format data), opens the sessions in one Chromium (one browser context
each), and in every session moves the sidebar to its own small configuration and presses Train.
Some sessions double-click Train or click it again while it is disabled, two ask for the same
configuration (they must share one job), and some press Stop (one while its job runs, one while
it is queued). Every session also switches pages while the jobs run, and each switch is timed.

Checks (exit status 1 when one fails): every Train press shows its job on the page; every session
ends done or stopped as asked; the server log (convae.jobs lines) shows one job per configuration,
ended done or cancelled, none failed; every page switch draws its page; the server log holds no
exception (Streamlit's own traceback for a tab that closed mid-message is counted apart); every
finished configuration has one loadable checkpoint in the runs folder, a stopped one none or the
model of its last finished epoch (marked stopped), and no half-written file is left. Timings are
printed; a page switch over --max-render-s or a Stop whose job ends over --max-stop-s after the
click fails the run too, unless --no-time-limits. The server log and screenshots of failing sessions
are kept when a check fails. docs/reliability.md shows a run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from convae.store import CheckpointError, load_checkpoint
from convae.synthetic import make_synthetic
from convae.train import TrainConfig
from tests.support.chromium import missing_browser
from tests.support.server import Server, log_problems
from tests.support.sessions import Outcome, Plan, drive

JOB_LINE = re.compile(
    r"^(\S+ \S+) INFO convae\.jobs: (job-\d+) (queued|attached \(request \d+\)|running|done|cancelled|failed): (\S+)",
    re.MULTILINE,
)


# ------------------------------------------------------------------------------------- plans


def tiny(q1: int, q2: int, k: int, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(q1=q1, q2=q2, k=k, epochs=epochs, train_size=1000, seed=seed)


def make_plans(sessions: int) -> list[Plan]:
    """Session 0 is stopped while it trains; 1 and 2 ask for one config; the rest vary the clicks."""
    shared = tiny(6, 6, 4, 2, 1)
    plans = [
        Plan(tiny(8, 8, 4, 30, 0), stop="running", browse=("Compare runs",)),
        Plan(shared, click="double", browse=("Latent space",)),
        Plan(shared, browse=("Mixtures",)),
    ]
    extra = [
        Plan(tiny(4, 4, 2, 1, 2), click="repeat", browse=("Reconstructions",)),
        Plan(tiny(4, 8, 3, 1, 3), stop="queued", browse=("Latent walk",)),
        Plan(tiny(8, 4, 2, 2, 4), click="double", browse=("Compare runs",)),
    ]
    browse = ["Reconstructions", "Latent space", "Mixtures", "Latent walk", "Compare runs"]
    i = 0
    while len(plans) + len(extra) < sessions:
        i += 1
        q = (4, 6, 8)[i % 3]
        extra.append(Plan(tiny(q, (8, 4, 6)[i % 3], 1 + i % 8, 1 + i % 2, 10 + i), browse=(browse[i % 5],)))
    return (plans + extra)[:sessions]


# ------------------------------------------------------------------------------------ checks


def job_events(log: str) -> dict[str, list[tuple[str, str, float]]]:
    """Per config key, the (job id, event, time) lines the job manager logged."""
    events: dict[str, list[tuple[str, str, float]]] = {}
    for stamp, job, event, key in JOB_LINE.findall(log):
        when = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        events.setdefault(key, []).append((job, event.split(" ")[0], when))
    return events


def stop_delays(outcomes: list[Outcome], events: dict) -> list[float]:
    """Seconds from each Stop click to the job's end in the server log (both on this machine's clock)."""
    delays = []
    for o in outcomes:
        ends = [t for _, e, t in events.get(o.plan.config.key(), []) if e == "cancelled"]
        if o.stop_at is not None and ends:
            delays.append(ends[0] - o.stop_at)
    return delays


def images_per_s(runs_dir: Path) -> list[float]:
    """Training speed of each stored run: images per second over its epochs (validation included)."""
    speeds = []
    for path in sorted(runs_dir.glob("*.pt")):
        try:
            run = load_checkpoint(path)
        except CheckpointError:
            continue
        seconds = sum(e.get("seconds", 0.0) for e in run.history.epochs)
        if seconds > 0:
            speeds.append(len(run.history.epochs) * (run.config.train_size or 60000) / seconds)
    return speeds


def check(outcomes: list[Outcome], log: str, runs_dir: Path) -> list[str]:
    """What went wrong, whatever the machine's speed: outcomes, jobs, the server log, the runs folder."""
    failures = []
    expected: dict[str, str] = {}
    for o in outcomes:
        want = "cancelled" if o.plan.stop else "done"
        key = o.plan.config.key()
        expected[key] = "cancelled" if want == "cancelled" or expected.get(key) == "cancelled" else want
        if o.final != want:
            failures.append(f"session {o.index} ({key}) ended {o.final!r}, expected {want!r}")

    events = job_events(log)
    for key, want in expected.items():
        jobs = {job for job, _, _ in events.get(key, [])}
        ends = [event for _, event, _ in events.get(key, []) if event in ("done", "cancelled", "failed")]
        if len(jobs) != 1:
            failures.append(f"{key}: {len(jobs)} jobs in the server log, expected exactly one ({sorted(jobs)})")
        if ends != [want]:
            failures.append(f"{key}: the job ended {ends}, expected [{want!r}]")
    unknown = set(events) - set(expected)
    if unknown:
        failures.append(f"jobs nobody asked for: {sorted(unknown)}")
    problems, _ = log_problems(log)
    if problems:
        failures.append(f"the server log holds {len(problems)} error(s), first: {problems[0][:300]}")

    files = sorted(runs_dir.glob("*.pt")) if runs_dir.is_dir() else []
    # Hidden names other than the lock folder are temporary files of a write that did not end.
    leftovers = sorted(p.name for p in runs_dir.glob(".*") if p.name != ".locks") if runs_dir.is_dir() else []
    if leftovers:
        failures.append(f"half-written files left in the runs folder: {leftovers}")
    done_keys = {k for k, v in expected.items() if v == "done"}
    stopped_keys = {k for k, v in expected.items() if v == "cancelled"}
    # A job stopped after an epoch keeps that epoch's model (marked stopped); one stopped in the first, none.
    if not done_keys <= {p.stem for p in files} <= done_keys | stopped_keys:
        failures.append(f"runs folder holds {sorted(p.stem for p in files)}, expected {sorted(done_keys)}")
    for path in files:
        try:
            run = load_checkpoint(path)
        except CheckpointError as e:
            failures.append(f"{path.name} does not load: {e}")
            continue
        if run.config.key() != path.stem:
            failures.append(f"{path.name} holds the config {run.config.key()}")
        if path.stem in stopped_keys and run.complete:
            failures.append(f"{path.name} of a stopped job holds all {run.config.epochs} epochs")
    return failures


def timing_misses(outcomes: list[Outcome], log: str, max_render_s: float, max_stop_s: float) -> list[str]:
    """Limits on how long things took: slow is not wrong, so the test suite does not check these."""
    misses = []
    for o in outcomes:
        slow = [f"{t} {s:.2f} s" for t, s in o.switches if s > max_render_s]
        if slow:
            misses.append(f"session {o.index}: page switches over {max_render_s} s: {', '.join(slow)}")
    slow_stops = [d for d in stop_delays(outcomes, job_events(log)) if d > max_stop_s]
    if slow_stops:
        misses.append(f"a stopped job ended {max(slow_stops):.2f} s after Stop (limit {max_stop_s} s)")
    return misses


# ----------------------------------------------------------------------------------- results


def results(outcomes: list[Outcome], log: str, runs_dir: Path, peak_rss: int, cpu: list[dict]) -> dict:
    """Everything the run measured, as the JSON output holds it (seconds, bytes, counts)."""
    events = job_events(log)
    finals = [o.final for o in outcomes]
    ends = [e for evs in events.values() for _, e, _ in evs if e in ("done", "cancelled", "failed")]
    return {
        "sessions": [
            {
                "index": o.index,
                "config": o.plan.config.key(),
                "click": o.plan.click,
                "stop": o.plan.stop,
                "final": o.final,
                "switches": [[title, round(s, 3)] for title, s in o.switches],
                "train_to_page_s": None if o.ack_s is None else round(o.ack_s, 3),
                "stop_to_page_s": None if o.stop_s is None else round(o.stop_s, 3),
            }
            for o in outcomes
        ],
        "summary": {
            "sessions": len(outcomes),
            "sessions_done": finals.count("done"),
            "sessions_cancelled": finals.count("cancelled"),
            "sessions_other": len(finals) - finals.count("done") - finals.count("cancelled"),
            "configs": len(events),
            "jobs": len({j for evs in events.values() for j, _, _ in evs}),
            "jobs_done": ends.count("done"),
            "jobs_cancelled": ends.count("cancelled"),
            "jobs_failed": ends.count("failed"),
            "joined": sum(e == "attached" for evs in events.values() for _, e, _ in evs),
        },
        "jobs": {key: sorted({job for job, _, _ in evs}) for key, evs in events.items()},
        "checkpoints": sorted(p.stem for p in runs_dir.glob("*.pt")),
        "timings": {
            "page_switch_s": [round(s, 3) for o in outcomes for _, s in o.switches],
            "train_to_page_s": [round(o.ack_s, 3) for o in outcomes if o.ack_s is not None],
            "stop_to_job_end_s": [round(d, 3) for d in stop_delays(outcomes, events)],
            "stop_to_page_s": [round(o.stop_s, 3) for o in outcomes if o.stop_s is not None],
            "images_per_s": [round(s) for s in images_per_s(runs_dir)],
        },
        "server_peak_rss_bytes": peak_rss,
        "cpu": cpu,
        "websocket_noise": log_problems(log)[1],
    }


def print_report(res: dict) -> None:
    def spread(values: list[float]) -> str:
        if not values:
            return "-"
        return f"max {max(values):.2f} s, median {statistics.median(values):.2f} s ({len(values)})"

    n, t, noise = res["summary"], res["timings"], res["websocket_noise"]
    speeds = t["images_per_s"]
    rows = [
        ("sessions", f"{n['sessions']} at once (one Chromium, a browser context each)"),
        (
            "sessions ended",
            f"{n['sessions_done']} done, {n['sessions_cancelled']} cancelled, {n['sessions_other']} other",
        ),
        (
            "jobs on the server",
            f"{n['jobs']} for {n['configs']} configs: {n['jobs_done']} done, {n['jobs_cancelled']} cancelled, "
            f"{n['jobs_failed']} failed; presses of Train that joined a running job: {n['joined']}",
        ),
        ("page switch", spread(t["page_switch_s"])),
        ("Train -> job on page", spread(t["train_to_page_s"])),
        ("Stop -> job ended", spread(t["stop_to_job_end_s"])),
        ("Stop -> 'Stopped.'", spread(t["stop_to_page_s"])),
        (
            "training speed",
            f"{statistics.median(speeds):,.0f} images/s median over {len(speeds)} runs" if speeds else "-",
        ),
        ("server peak RSS", f"{res['server_peak_rss_bytes'] / 2**20:,.0f} MiB"),
        *[
            (
                f"CPU, {c['phase']}",
                f"server {c['server_s']:.0f} s, browser {c['browser_s']:.0f} s in {c['wall_s']:.0f} s "
                f"on {psutil.cpu_count()} cores",
            )
            for c in res["cpu"]
        ],
        ("load average before", f"{res['load_before']:.1f} (other programs on this machine)"),
        ("checkpoints in store", str(len(res["checkpoints"]))),
        ("Streamlit ws noise", f"{noise} traceback(s) of a tab closing mid-message" if noise else "none"),
        ("total time", f"{res['total_s']:.1f} s"),
    ]
    for name, value in rows:
        print(f"{name + ':':<22} {value}")
    for s in res["sessions"]:
        times = ", ".join(f"{title} {seconds:.2f} s" for title, seconds in s["switches"])
        print(f"  session {s['index']}: {s['config']} click={s['click']} stop={s['stop']} -> {s['final']}; {times}")


# -------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10, help="browser sessions at once (at least 3)")
    ap.add_argument("--quick", action="store_true", help="3 sessions")
    ap.add_argument("--max-render-s", type=float, default=3.0, help="slowest page switch allowed")
    ap.add_argument("--max-stop-s", type=float, default=1.0, help="slowest Stop allowed (click to job's end)")
    ap.add_argument(
        "--no-time-limits", action="store_true", help="print the timings but do not fail on them (the test suite's way)"
    )
    ap.add_argument("--job-timeout-s", type=float, default=240.0, help="how long a session waits for its job")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the results and checks as JSON to PATH")
    ap.add_argument("--verbose", action="store_true", help="print what each session does, as it does it")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (data, runs, server log)")
    args = ap.parse_args(argv)
    sessions = 3 if args.quick else max(3, args.sessions)
    problem = missing_browser()
    if problem:
        print(f"{problem}.", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    load_before = os.getloadavg()[0]
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="convae-loadtest-"))
    data_dir, runs_dir = make_synthetic(tmp / "data", n_train=1000, n_val=200), tmp / "runs"
    plans = make_plans(sessions)
    keep = args.keep
    try:
        with Server(data_dir, runs_dir, tmp / "server.log") as server:
            if args.verbose:
                print(f"server up after {time.perf_counter() - t_start:.1f} s: {server.url}", flush=True)
            marks = [(time.perf_counter(), server.cpu_seconds())]  # start, all sidebars set, end

            def all_ready() -> None:
                marks.append((time.perf_counter(), server.cpu_seconds()))

            outcomes = asyncio.run(
                drive(server.url, plans, args.job_timeout_s, tmp, args.verbose, on_all_ready=all_ready)
            )
            time.sleep(0.5)  # the last log lines
            marks.append((time.perf_counter(), server.cpu_seconds()))
            log = server.log_text()
            peak = server.peak_rss
        cpu = [
            {"phase": name, "wall_s": t1 - t0, "server_s": c1[0] - c0[0], "browser_s": c1[1] - c0[1]}
            for name, (t0, c0), (t1, c1) in zip(("opening, sidebars", "jobs, pages"), marks, marks[1:], strict=False)
        ]
        res = results(outcomes, log, runs_dir, peak, cpu)
        res["failures"] = check(outcomes, log, runs_dir)
        limits = None if args.no_time_limits else (args.max_render_s, args.max_stop_s)
        res["timing_misses"] = timing_misses(outcomes, log, *limits) if limits else []
        res["passed"] = not res["failures"] and not res["timing_misses"]
        res["load_before"], res["total_s"] = load_before, time.perf_counter() - t_start
        print_report(res)
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))
        if not res["passed"]:
            for heading, lines in (("FAILED", res["failures"]), ("TOO SLOW", res["timing_misses"])):
                if lines:
                    print(f"\n{heading}:")
                    for line in lines:
                        print(f"  - {line}")
            print(f"(server log, screenshots: {tmp})")
            keep = True
            return 1
        print("\nall checks passed" + (" (timings not checked)" if not limits else ""))
        return 0
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
