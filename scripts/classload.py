"""Load test of a whole class: N protocol sessions and M Chromium tabs against one local server.

From the repository root:

    .venv/bin/python -m scripts.classload                 # 30 sessions, 3 tabs
    .venv/bin/python -m scripts.classload --quick         # 6 sessions, 1 tab
    .venv/bin/python -m scripts.classload --quick --no-time-limits --json out.json   # as tests/test_classload.py

The sessions speak Streamlit's own websocket protocol (tests/support/st_client.py), so the server is
measured, not a browser on the same two cores; the tabs are Debian's Chromium, end to end. Starts
`streamlit run dashboard.py` on a free port with fresh data and runs folders (synthetic MNIST-format
data) and a random teacher key (CONVAE_TEACHER_KEY), then runs the class of tests/support/classroom.py:
everyone opens pages, the teacher leads with "follow me", half the students train a small configuration
of their own under their name (some press Stop), and the teacher opens the class board.

Measured: for every request, the time from sending it to its script's end (per page, median and 95th
percentile; the first open of the app and the fragments' timed reruns apart), the time for each of the
teacher's moves to reach every follower, the server's peak memory and CPU time (and the browser's and
this client's), the load average. Checks (exit status 1 when one fails): every session's steps ran and
every request's script finished; every trainer's job ended as asked (one job per configuration in the
server log, done or cancelled, none failed); every finished run is stored, loadable, with its trainer's
name, and on the class board; every follower reached every move; no exception in the server log or on a
page. Limits (not checked with --no-time-limits): median page time 1 s, 95th percentile 3 s, follow-me
2 s, server memory 2 GiB. docs/reliability.md shows a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from convae.store import CheckpointError, load_checkpoint
from convae.synthetic import make_synthetic
from scripts.loadtest import job_events
from tests.support.chromium import missing_browser
from tests.support.classroom import FOLLOW_WAIT_S, Classroom, plan_class, run_class
from tests.support.server import Server, log_problems

LIMITS = {"median_page_s": 1.0, "p95_page_s": 3.0, "follow_s": 2.0, "server_rss_bytes": 2 * 2**30}


def spread(values: list[float]) -> dict:
    """Count, median, 95th percentile (nearest rank) and maximum of some durations, in seconds."""
    if not values:
        return {"n": 0}
    v = sorted(values)
    p95 = v[min(len(v) - 1, max(0, round(0.95 * len(v) + 0.5) - 1))]
    return {"n": len(v), "median": round(statistics.median(v), 3), "p95": round(p95, 3), "max": round(v[-1], 3)}


# -------------------------------------------------------------------------------------- results


def timings(cls: Classroom) -> dict:
    """Request -> script end per page (page switches and widget reruns), the first opens, the fragments."""
    per_page: dict[str, list[float]] = {}
    per_kind: dict[str, list[float]] = {}
    opens, fragments = [], []
    for st in cls.students:
        for t in st.session.timings if st.session else []:
            per_kind.setdefault(t.what, []).append(t.seconds)
            if t.fragment:
                fragments.append(t.seconds)
            elif t.what == "open":
                opens.append(t.seconds)
            else:
                per_page.setdefault(t.page, []).append(t.seconds)
    everything = [s for values in per_page.values() for s in values]
    follow = [
        {"move": f"{m.what} {m.target}", **spread([a for a in m.arrivals.values() if a is not None]),
         "followers": len(m.arrivals), "missed": sorted(w for w, a in m.arrivals.items() if a is None)}
        for m in cls.moves
    ]  # fmt: skip
    return {
        "page_s": spread(everything),
        "per_page_s": {page: spread(values) for page, values in sorted(per_page.items())},
        "per_kind_s": {what: spread(values) for what, values in sorted(per_kind.items())},
        "open_s": spread(opens),
        "fragment_rerun_s": spread(fragments),
        "follow_s": follow,
        "tab_switch_s": spread([s for tab in cls.tabs for _, s in tab.switches]),
        "tab_open_s": spread([tab.open_s for tab in cls.tabs if tab.open_s is not None]),
    }


def check(cls: Classroom, log: str, runs_dir: Path) -> list[str]:
    """What went wrong, whatever the machine's speed."""
    failures = []
    for who in [*cls.students, *cls.tabs]:
        label = f"session {who.index} ({who.role})" if hasattr(who, "role") else f"tab {who.index}"
        failures += [f"{label}: {e}" for e in who.errors]
        if getattr(who, "session", None) is not None and who.session.exceptions:
            failures.append(f"{label}: the page showed an exception: {who.session.exceptions[0][:200]}")
    trainers = [s for s in cls.students if s.role == "trainer"]
    expected = {s.config.key(): ("cancelled" if s.stop else "done") for s in trainers}
    for s in trainers:
        if s.final is not None and s.final != expected[s.config.key()]:
            failures.append(
                f"session {s.index} ({s.config.key()}) ended {s.final!r}, expected {expected[s.config.key()]!r}"
            )
    events = job_events(log)
    for key, want in expected.items():
        jobs = {job for job, _, _ in events.get(key, [])}
        ends = [e for _, e, _ in events.get(key, []) if e in ("done", "cancelled", "failed")]
        if len(jobs) != 1 or ends != [want]:
            failures.append(f"{key}: jobs {sorted(jobs)} ended {ends} in the server log, expected one, {want}")
    if set(events) - set(expected):
        failures.append(f"jobs nobody asked for: {sorted(set(events) - set(expected))}")
    problems, _ = log_problems(log)
    if problems:
        failures.append(f"the server log holds {len(problems)} error(s), first: {problems[0][:300]}")

    names = {s.config.key(): s.name for s in trainers}
    for key, want in expected.items():
        path = runs_dir / f"{key}.pt"
        if want == "done" and not path.is_file():
            failures.append(f"{key} finished but is not in the runs folder")
        if not path.is_file():
            continue
        try:
            run = load_checkpoint(path)
        except CheckpointError as e:
            failures.append(f"{path.name} does not load: {e}")
            continue
        if want == "cancelled" and run.complete:
            failures.append(f"{path.name} of a stopped job holds all {run.config.epochs} epochs")
        if cls.features.get("names") and getattr(run, "owner", None) != names[key]:
            failures.append(f"{path.name} is stored with the name {getattr(run, 'owner', None)!r}, not {names[key]!r}")
    leftovers = sorted(p.name for p in runs_dir.glob(".*") if p.name != ".locks") if runs_dir.is_dir() else []
    if leftovers:
        failures.append(f"half-written files left in the runs folder: {leftovers}")
    missing = sorted(set(cls.board.get("expected_names", [])) - set(cls.board.get("names_seen", [])))
    if missing:
        failures.append(f"the class board does not show the runs of {missing}")
    for m in cls.moves:
        missed = sorted(w for w, a in m.arrivals.items() if a is None)
        if missed:
            failures.append(f"the teacher's move '{m.what} {m.target}' did not reach {missed} within {FOLLOW_WAIT_S} s")
    return failures


def limit_misses(t: dict, peak_rss: int) -> list[str]:
    """The targets this machine missed: slow is not wrong, so the test suite does not check these."""
    misses = []
    page = t["page_s"]
    if page["n"] and page["median"] > LIMITS["median_page_s"]:
        misses.append(f"median page time {page['median']:.2f} s (target {LIMITS['median_page_s']} s)")
    if page["n"] and page["p95"] > LIMITS["p95_page_s"]:
        misses.append(f"95th percentile page time {page['p95']:.2f} s (target {LIMITS['p95_page_s']} s)")
    for f in t["follow_s"]:
        if f["n"] and f["max"] > LIMITS["follow_s"]:
            misses.append(f"follow-me '{f['move']}' reached the last follower after {f['max']:.2f} s (target 2 s)")
    if peak_rss > LIMITS["server_rss_bytes"]:
        misses.append(f"server memory peaked at {peak_rss / 2**30:.2f} GiB (limit 2 GiB)")
    return misses


def sessions_json(cls: Classroom) -> list[dict]:
    return [
        {
            "index": s.index, "role": s.role, "config": s.config.key() if s.config else None, "stop": s.stop,
            "name": s.name, "final": s.final, "open_s": s.open_s and round(s.open_s, 3),
            "switches": [[title, round(sec, 3)] for title, sec in s.switches], "errors": s.errors,
            "requests": len(s.session.timings) if s.session else 0,
            "messages": [s.session.sent, s.session.received, s.session.received_bytes] if s.session else None,
            "unreported_ends": s.session.unreported if s.session else 0,
        }
        for s in cls.students
    ]  # fmt: skip


def print_report(res: dict) -> None:
    def line(d: dict) -> str:
        return (
            "-"
            if not d.get("n")
            else f"median {d['median']:.2f} s, p95 {d['p95']:.2f} s, max {d['max']:.2f} s ({d['n']})"
        )

    t, c = res["timings"], res["cpu_s"]
    rows = [
        ("class", f"{res['sessions']} protocol sessions (1 teacher), {res['tabs']} Chromium tabs, one server"),
        ("machine", f"{res['machine']}; load average {res['load_before']:.1f} before, "
                    f"{res['load_during'].get('mean', 0):.1f} (max {res['load_during'].get('max', 0):.1f}) during"),
        ("features", ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in res["features"].items())),
        ("page time", line(t["page_s"])),
        *[(f"  {page}", line(d)) for page, d in t["per_page_s"].items()],
        *[(f"  {what} (any page)", line(d)) for what, d in t["per_kind_s"].items() if what not in ("open", "auto")],
        ("first open", line(t["open_s"])),
        ("fragment reruns", line(t["fragment_rerun_s"])),
        *[(f"follow: {f['move']}", line(f) + (f", missed {f['missed']}" * bool(f["missed"]))) for f in t["follow_s"]],
        ("tab page switch", line(t["tab_switch_s"])),
        ("tab open", line(t["tab_open_s"])),
        ("trainers", ", ".join(f"{k} {v}" for k, v in res["outcomes"].items())),
        ("server peak RSS", f"{res['server_peak_rss_bytes'] / 2**20:,.0f} MiB"),
        ("CPU", f"server {c['server']:.0f} s ({c['server'] / res['total_s']:.2f} cores on average), browser "
                f"{c['browser']:.0f} s, protocol client {c['client']:.0f} s in {res['total_s']:.0f} s"),
        ("unreported ends", f"{res['unreported_ends']} runs whose script_finished the server never sent "
                            "(Streamlit drops a replaced ScriptRunner's events; timed to the next run's start)"),
        ("runs guarded", f"{res['guarded_runs']} finished runs whose last messages ui.delivery let through "
                         "(Streamlit would have dropped them)"),
        ("pages kept", f"{res['pages_kept']} fragment reruns that named the page a session had left, sent to "
                       f"the page drawn; {res['ticks_skipped']} such timer ticks not run (ui.delivery)"),
        ("checkpoints", str(len(res["checkpoints"]))),
        ("class board", json.dumps(res["board"])[:200] if res["board"] else "-"),
    ]  # fmt: skip
    for name, value in rows:
        print(f"{name + ':':<24} {value}")
    for s in res["skipped"]:
        print(f"SKIPPED: {s}")


# ---------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=30, help="protocol sessions, the teacher included (at least 4)")
    ap.add_argument("--tabs", type=int, default=3, help="Chromium tabs beside them")
    ap.add_argument("--quick", action="store_true", help="6 sessions and 1 tab, the students joining within 3 s")
    ap.add_argument("--ramp-s", type=float, default=15.0, help="the students join over this many seconds")
    ap.add_argument("--job-timeout-s", type=float, default=300.0, help="how long a trainer waits for its job")
    ap.add_argument("--no-time-limits", action="store_true", help="print the timings, do not fail on the targets")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the results and checks as JSON to PATH")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (data, runs, server log)")
    args = ap.parse_args(argv)
    sessions, tabs, ramp = (6, 1, 3.0) if args.quick else (max(4, args.sessions), max(0, args.tabs), args.ramp_s)
    problem = missing_browser() if tabs else None
    if problem:
        print(f"{problem}.", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    load_before, t_start = os.getloadavg()[0], time.perf_counter()
    me = psutil.Process()
    client_cpu0 = sum(me.cpu_times()[:2])
    tmp = Path(tempfile.mkdtemp(prefix="convae-classload-"))
    data_dir, runs_dir = make_synthetic(tmp / "data", n_train=1000, n_val=200), tmp / "runs"
    key = secrets.token_urlsafe(12)
    cls = plan_class(sessions, tabs, key)
    cls.artifacts = tmp
    keep = args.keep
    try:
        loads, done = [], threading.Event()
        threading.Thread(target=_sample_load, args=(loads, done), daemon=True).start()
        with Server(data_dir, runs_dir, tmp / "server.log", env={"CONVAE_TEACHER_KEY": key}) as server:
            asyncio.run(run_class(cls, server.url, ramp, args.job_timeout_s))
            done.set()
            time.sleep(0.5)  # the last log lines
            log, peak = server.log_text(), server.peak_rss
            server_cpu, browser_cpu = server.cpu_seconds()
        t = timings(cls)
        finals = [s.final or "none" for s in cls.students if s.role == "trainer"]
        res = {
            "sessions": sessions, "tabs": tabs, "ramp_s": ramp, "features": cls.features, "skipped": cls.skipped,
            "machine": f"{platform.processor() or platform.machine()} {_cpu_model()}, {psutil.cpu_count()} cores",
            "load_before": load_before, "load_after": os.getloadavg()[0],
            "load_during": {"mean": round(statistics.fmean(loads), 1), "max": round(max(loads), 1)} if loads else {},
            "timings": t, "students": sessions_json(cls),
            "tab_results": [{"index": x.index, "open_s": x.open_s, "switches": x.switches, "errors": x.errors}
                            for x in cls.tabs],
            "moves": [{"what": m.what, "target": m.target, "arrivals": m.arrivals} for m in cls.moves],
            "outcomes": {f: finals.count(f) for f in sorted(set(finals))},
            "jobs": {k: sorted({j for j, _, _ in evs}) for k, evs in job_events(log).items()},
            "checkpoints": sorted(p.stem for p in runs_dir.glob("*.pt")), "board": cls.board,
            "server_peak_rss_bytes": peak,
            "cpu_s": {"server": server_cpu, "browser": browser_cpu, "client": sum(me.cpu_times()[:2]) - client_cpu0},
            "websocket_noise": log_problems(log)[1], "total_s": time.perf_counter() - t_start,
            "unreported_ends": sum(s.session.unreported for s in cls.students if s.session),
            "guarded_runs": log.count("a finished run's last messages were sent"),
            "pages_kept": log.count("a fragment's rerun named a page the session had left"),
            "ticks_skipped": log.count("a fragment's timer named a page the session had left"),
        }  # fmt: skip
        res["failures"] = check(cls, log, runs_dir)
        res["timing_misses"] = [] if args.no_time_limits else limit_misses(t, peak)
        res["passed"] = not res["failures"] and not res["timing_misses"]
        print_report(res)
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))
        if not res["passed"]:
            for heading, lines in (("FAILED", res["failures"]), ("TARGETS MISSED", res["timing_misses"])):
                if lines:
                    print(f"\n{heading}:")
                    for entry in lines:
                        print(f"  - {entry}")
            print(f"(server log, screenshots of tabs that missed a move: {tmp})")
            keep = True
            return 1
        print("\nall checks passed" + (" (timings not checked)" if args.no_time_limits else ""))
        return 0
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _sample_load(loads: list[float], done: threading.Event) -> None:
    """The 1-minute load average every 5 s while the class runs (other programs share these cores)."""
    while not done.wait(5.0):
        loads.append(os.getloadavg()[0])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    sys.exit(main())
