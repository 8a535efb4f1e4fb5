"""Load test of the dashboard: N browser sessions train at once against one local server.

    .venv/bin/python scripts/loadtest.py              # 10 sessions
    .venv/bin/python scripts/loadtest.py --quick      # 3 sessions (CI)

Starts `streamlit run dashboard.py` on a free localhost port with fresh data and runs folders
(small synthetic MNIST-format data), opens the sessions in one Chromium (one browser context
each), and in every session moves the sidebar to its own small configuration and presses Train.
Some sessions double-click Train or click it again while it is disabled, two ask for the same
configuration (they must share one job), and some press Stop (one while its job runs, one while
it is queued). Every session also switches pages while the jobs run, and each switch is timed.

Checks (exit status 1 when one fails): every Train press shows its job on the page; every session
ends done or stopped as asked; the server log (convae.jobs lines) shows one job per configuration,
ended done or cancelled, none failed; a stopped job ends within --max-stop-s of the click; every
page switch renders in under --max-render-s; the server log holds no exception (Streamlit's own
traceback for a tab that closed mid-message is counted apart); every finished configuration has one
loadable checkpoint in the runs folder, a stopped one none, and no half-written file is left.
It prints its figures (docs/reliability.md shows a run) and keeps the server log and screenshots of
failing sessions when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

from convae.data import make_synthetic  # noqa: E402
from convae.store import CheckpointError, load_checkpoint  # noqa: E402
from convae.train import TrainConfig  # noqa: E402

PAGES = {  # navigation title -> (section of the top navigation, heading the page draws)
    "Train": ("The assignment", "Train the auto-encoder"),
    "Reconstructions": ("The assignment", "Reconstructions (Figure 1)"),
    "Latent space": ("The assignment", "Latent space"),
    "Mixtures": ("The assignment", "Mixtures of classes (Figure 2)"),
    "Latent walk": ("Explore further", "Walk the latent space"),
    "Compare runs": ("Explore further", "Compare runs"),
}
# A human does not click a page link within a split second of pressing Train; waiting for the page to
# show the job also catches a click that was lost.
ACK_TIMEOUT_S = 20
SETUP_WAIT_S = 20  # for the sidebar to show a change (every change reruns the script)
LOAD_BEFORE = [0.0, 0.0, 0.0]  # the machine's load average when the test started
LOG_PROBLEM = re.compile(r"Traceback|Exception|\bERROR\b|Error:")
JOB_LINE = re.compile(
    r"^(\S+ \S+) INFO convae\.jobs: (job-\d+) (queued|attached \(request \d+\)|running|done|cancelled|failed): (\S+)",
    re.MULTILINE,
)


# ------------------------------------------------------------------------------------ server


class Server:
    """`streamlit run dashboard.py` on a free localhost port; its output goes to a log file."""

    def __init__(
        self,
        data_dir: Path,
        runs_dir: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        script: str = "dashboard.py",
        cwd: Path = PROJECT,
    ) -> None:
        self.data_dir, self.runs_dir, self.log_path = data_dir, runs_dir, log_path
        self.script, self.cwd = script, cwd
        self.port = free_port()
        self.url = f"http://localhost:{self.port}"
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.peak_rss = 0
        self.rss_samples: list[tuple[float, int]] = []
        self._sampling = threading.Event()
        self.cpu_seen: dict[int, tuple[bool, float]] = {}

    def __enter__(self) -> Server:
        env = {
            **os.environ,
            "CONVAE_DATA_DIR": str(self.data_dir),
            "CONVAE_RUNS_DIR": str(self.runs_dir),
            **self.extra_env,
        }
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                self.script,
                "--server.port",
                str(self.port),
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=self.cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within 60 s; see {self.log_path}")
            time.sleep(0.25)
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        proc = psutil.Process(self.proc.pid)
        t0 = time.monotonic()
        while not self._sampling.is_set():
            rss = self.rss()
            self.peak_rss = max(self.peak_rss, rss)
            self.rss_samples.append((time.monotonic() - t0, rss))
            self._count_cpu()
            if not proc.is_running():
                return
            self._sampling.wait(0.2)

    def _count_cpu(self) -> None:
        """Latest CPU seconds of the server's processes and of this script's other children (the
        browser), per process, so that processes that have ended still count."""
        try:
            server = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
            mine = psutil.Process().children(recursive=True)
        except psutil.Error:
            return
        server_pids = {p.pid for p in server}
        for p in mine:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            self.cpu_seen[p.pid] = (p.pid in server_pids, t.user + t.system)  # ended children are counted once

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds used so far by the server and by the browser (and its driver)."""
        server = sum(s for is_server, s in self.cpu_seen.values() if is_server)
        return server, sum(s for is_server, s in self.cpu_seen.values() if not is_server)

    def rss(self) -> int:
        """Resident memory of the server process and its children, in bytes."""
        try:
            proc = psutil.Process(self.proc.pid)
            return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            return 0

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc) -> None:
        self._sampling.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------- browser


try:
    from playwright.async_api import TimeoutError as PlaywrightTimeout
except ImportError:  # reported in main()
    PlaywrightTimeout = TimeoutError


async def launch(playwright):
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


async def open_session(browser, url: str, timeout_s: float = 60):
    t0 = time.perf_counter()
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.websockets_opened = 0  # more than one: the tab lost its connection and reconnected

    def opened(ws) -> None:
        if "/_stcore/stream" in ws.url:
            page.websockets_opened += 1

    page.on("websocket", opened)
    page.set_default_timeout(timeout_s * 1000)
    await page.goto(url)
    await page.get_by_role("heading", name=PAGES["Train"][1]).wait_for()
    await train_button(page).wait_for()
    page.open_s = time.perf_counter() - t0
    return page


async def close_session(page) -> None:
    """Leave the app first, so that the browser closes its connection the way a closed tab does."""
    try:
        await page.goto("about:blank")
    finally:
        await page.context.close()


def sidebar(page):
    return page.locator('[data-testid="stSidebar"]')


def train_button(page):
    return sidebar(page).get_by_role("button", name=re.compile(r"^(Train|Retrain)$"))


def describe(config: TrainConfig) -> str:
    """What the sidebar caption says for this config (ui.describe)."""
    size = "60,000" if config.train_size is None else f"{config.train_size:,}"
    return (
        f"Q1={config.q1}, Q2={config.q2}, K={config.k} · {config.epochs} epochs · lr {config.lr:g} · "
        f"batch {config.batch_size} · {size} images · seed {config.seed}"
    )


async def set_slider(page, key: str, value: int) -> None:
    """Move a sidebar slider with the keyboard: Home (its minimum, 1 here), then ArrowRight."""
    thumb = page.locator(f".st-key-{key} input[type=range]")
    if await thumb.input_value() == str(value):
        return
    await thumb.focus()
    if value == int(await thumb.get_attribute("max")):
        await thumb.press("End")
        return
    await thumb.press("Home")
    for _ in range(value - 1):
        await thumb.press("ArrowRight")


async def set_config(page, config: TrainConfig, attempts: int = 4) -> None:
    """Move the sidebar to `config` (sliders, training images, seed) and wait until it shows it.

    Every change reruns the script and redraws the sidebar. A rerun that starts while keys are still
    being pressed can put a slider back to the value it had, and a drop-down opened during a rerun
    can close again, so each step is checked against the sidebar's caption and tried again.
    """
    caption = sidebar(page).locator('[data-testid="stCaptionContainer"]')
    arch = f"Q1={config.q1}, Q2={config.q2}, K={config.k} · {config.epochs} epochs "
    size = {
        None: "all 60,000 (the assignment's)",
        1000: "1,000 (quick demo subset)",
        5000: "5,000 (quick demo subset)",
        10000: "10,000 (quick demo subset)",
    }[config.train_size]
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            for key in ("q1", "q2", "k", "epochs"):
                await set_slider(page, key, getattr(config, key))
            await caption.filter(has_text=arch).wait_for(timeout=SETUP_WAIT_S * 1000)
            combobox = page.locator(".st-key-train_size [role=combobox]")
            if await combobox.input_value() != size:
                await page.locator(".st-key-train_size button[aria-label=Open]").click()
                await page.get_by_role("option", name=size).click(timeout=SETUP_WAIT_S * 1000)
            seed = page.locator(".st-key-seed input")
            if await seed.input_value() != str(config.seed):
                await seed.fill(str(config.seed))
                await seed.press("Enter")
            await caption.filter(has_text=describe(config)).wait_for(timeout=SETUP_WAIT_S * 1000)
            return
        except PlaywrightTimeout:
            if last:
                raise
            await page.keyboard.press("Escape")


async def click_page_link(page, title: str) -> float:
    """Open a page's section in the top navigation and click its link; the time of the click."""
    section, _ = PAGES[title]
    await page.locator('[data-testid="stTopNavSection"]', has_text=section).click()
    link = page.get_by_role("menuitem", name=re.compile(rf"{re.escape(title)}$"))
    await link.wait_for()
    t0 = time.perf_counter()
    await link.click()
    return t0


async def switch_page(page, title: str) -> float:
    """Open a page through the top navigation; seconds from the click until its heading is drawn."""
    t0 = await click_page_link(page, title)
    await page.get_by_role("heading", name=PAGES[title][1]).wait_for()
    return time.perf_counter() - t0


def acknowledged(page):
    """What the Train page shows once a job was accepted: queued, starting, progress, or its end."""
    texts = [
        "Queued: position",
        "Starting…",
        "images/s",
        "Done: validation MSE",
        "Stopped. Nothing was saved",
        "Training failed",
    ]
    locator = page.get_by_text(texts[0])
    for text in texts[1:]:
        locator = locator.or_(page.get_by_text(text))
    return locator.first


async def click_train(page, how: str) -> None:
    """Press Train once, double-click it, or click it three times (the later clicks hit a disabled button)."""
    button = train_button(page)
    if how == "double":
        await button.dblclick()
    elif how == "repeat":
        await button.scroll_into_view_if_needed()
        box = await button.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        for _ in range(3):
            await page.mouse.click(x, y)
            await asyncio.sleep(0.3)
    else:
        await button.click()


# ---------------------------------------------------------------------------------- scenario


@dataclass
class Plan:
    """What one session does."""

    config: TrainConfig
    click: str = "single"  # single | double | repeat
    stop: str | None = None  # None | "running" (after its first progress) | "queued" (at once)
    browse: tuple[str, ...] = ("Reconstructions",)


@dataclass
class Outcome:
    index: int
    plan: Plan
    final: str = "?"  # done | cancelled | failed | timeout | error: ...
    switches: list[tuple[str, float]] = field(default_factory=list)
    stop_s: float | None = None  # Stop click -> "Stopped." on the Train page
    ack_s: float | None = None  # Train click -> the Train page shows the job
    stop_at: float | None = None  # wall-clock time of the Stop click
    page: object = None
    verbose: bool = False

    def say(self, what: str) -> None:
        if self.verbose:
            stamp = f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d}"
            ws = getattr(self.page, "websockets_opened", 0)
            print(f"{stamp} session {self.index}: {what} [connections: {ws}]", flush=True)


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


class Start:
    """Lets every session get ready, then session 0 press Train first and the others right after it.

    Sessions open and set their sidebars a few at a time (`setup_slots`): the test is about trainings
    and pages under load, not about ten people moving sliders in the same second (every slider step
    reruns the script). All press Train together."""

    def __init__(self, sessions: int, setup_slots: int) -> None:
        self.waiting = sessions
        self.all_ready = asyncio.Event()
        self.first_pressed = asyncio.Event()
        self.setup = asyncio.Semaphore(setup_slots)
        self.on_all_ready = lambda: None

    def ready(self) -> None:
        self.waiting -= 1
        if self.waiting <= 0 and not self.all_ready.is_set():
            self.on_all_ready()
            self.all_ready.set()


async def run_session(
    i: int, plan: Plan, browser, url: str, start: Start, job_timeout_s: float, artifacts: Path, verbose: bool
) -> Outcome:
    out = Outcome(i, plan, verbose=verbose)
    steps = {"ready": False}
    try:
        await _session(i, plan, out, browser, url, start, steps, job_timeout_s)
    except Exception as e:  # recorded as the session's outcome; the checks report it
        out.final = f"error: {type(e).__name__}: " + " | ".join(str(e).splitlines()[:3])[:300]
        out.say(out.final)
        if out.page is not None:
            await out.page.screenshot(path=artifacts / f"session-{i}-error.png", full_page=True)
    finally:
        if not steps["ready"]:  # never leave the other sessions waiting
            start.ready()
        if i == 0:
            start.first_pressed.set()
        if out.page is not None:
            await close_session(out.page)
    return out


async def _session(
    i: int, plan: Plan, out: Outcome, browser, url: str, start: Start, steps: dict, job_timeout_s: float
) -> None:
    async with start.setup:
        page = out.page = await open_session(browser, url)
        out.say(f"page open after {page.open_s:.1f} s")
        await set_config(page, plan.config)
        out.say(f"sidebar shows {plan.config.key()}")
    steps["ready"] = True
    start.ready()
    await start.all_ready.wait()
    if i != 0:  # session 0 trains first, so that its Stop hits a running job
        await start.first_pressed.wait()
    t0 = time.perf_counter()
    await click_train(page, plan.click)
    await acknowledged(page).wait_for(timeout=ACK_TIMEOUT_S * 1000)
    out.ack_s = time.perf_counter() - t0
    out.say(f"pressed Train ({plan.click}); the page showed it after {out.ack_s:.2f} s")
    if i == 0:
        start.first_pressed.set()
    if plan.stop == "running":
        await page.get_by_text("images/s").first.wait_for(timeout=job_timeout_s * 1000)
    if plan.stop:
        stop = sidebar(page).get_by_role("button", name="Stop")
        t0 = time.perf_counter()
        out.stop_at = time.time()
        await stop.click()
        await page.get_by_text("Stopped. Nothing was saved").wait_for()
        out.stop_s = time.perf_counter() - t0
        out.say(f"pressed Stop; 'Stopped.' after {out.stop_s:.2f} s")
    for title in plan.browse:
        out.switches.append((title, await switch_page(page, title)))
        out.switches.append(("Train", await switch_page(page, "Train")))
        out.say(f"switched to {title} and back: {out.switches[-2][1]:.2f} s, {out.switches[-1][1]:.2f} s")
    done = page.get_by_text("Done: validation MSE")
    stopped = page.get_by_text("Stopped. Nothing was saved")
    failed = page.get_by_text("Training failed")
    await done.or_(stopped).or_(failed).first.wait_for(timeout=job_timeout_s * 1000)
    out.final = "done" if await done.count() else "cancelled" if await stopped.count() else "failed"
    out.say(out.final)


async def drive(
    url: str,
    plans: list[Plan],
    job_timeout_s: float,
    artifacts: Path,
    verbose: bool = False,
    setup_slots: int = 3,
    on_all_ready=lambda: None,
) -> list[Outcome]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await launch(pw)
        start = Start(len(plans), setup_slots)
        start.on_all_ready = on_all_ready
        outcomes = await asyncio.gather(
            *(run_session(i, p, browser, url, start, job_timeout_s, artifacts, verbose) for i, p in enumerate(plans))
        )
        await browser.close()
    return list(outcomes)


# ------------------------------------------------------------------------------------ checks


def job_events(log: str) -> dict[str, list[tuple[str, str, float]]]:
    """Per config key, the (job id, event, time) lines the job manager logged."""
    events: dict[str, list[tuple[str, str, float]]] = {}
    for stamp, job, event, key in JOB_LINE.findall(log):
        when = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        events.setdefault(key, []).append((job, event.split(" ")[0], when))
    return events


def log_problems(log: str) -> tuple[list[str], int]:
    """Lines of the server log that show an error, and how many tracebacks were Streamlit's own
    websocket-close noise (starlette's WebSocketDisconnected when a tab goes away mid-message)."""
    blocks = re.split(r"\n(?=\S)", log)  # a traceback's lines are indented, except its first and last
    problems, noise = [], 0
    for i, block in enumerate(blocks):
        if not LOG_PROBLEM.search(block):
            continue
        if "WebSocketDisconnected" in block and "starlette" in "".join(blocks[max(0, i - 3) : i + 3]):
            noise += 1
            continue
        problems.append(block.strip().splitlines()[0])
    return problems, noise


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


def check(outcomes: list[Outcome], log: str, runs_dir: Path, max_render_s: float, max_stop_s: float) -> list[str]:
    failures = []
    expected: dict[str, str] = {}
    for o in outcomes:
        want = "cancelled" if o.plan.stop else "done"
        key = o.plan.config.key()
        expected[key] = "cancelled" if want == "cancelled" or expected.get(key) == "cancelled" else want
        if o.final != want:
            failures.append(f"session {o.index} ({key}) ended {o.final!r}, expected {want!r}")
        slow = [f"{t} {s:.2f} s" for t, s in o.switches if s > max_render_s]
        if slow:
            failures.append(f"session {o.index}: page switches over {max_render_s} s: {', '.join(slow)}")

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
    slow_stops = [d for d in stop_delays(outcomes, events) if d > max_stop_s]
    if slow_stops:
        failures.append(f"a stopped job ended {max(slow_stops):.2f} s after Stop (limit {max_stop_s} s)")
    problems, _ = log_problems(log)
    if problems:
        failures.append(f"the server log holds {len(problems)} error(s), first: {problems[0][:300]}")

    files = sorted(runs_dir.glob("*.pt")) if runs_dir.is_dir() else []
    leftovers = sorted(p.name for p in runs_dir.glob(".*")) if runs_dir.is_dir() else []
    if leftovers:
        failures.append(f"half-written files left in the runs folder: {leftovers}")
    done_keys = {k for k, v in expected.items() if v == "done"}
    if {p.stem for p in files} != done_keys:
        failures.append(f"runs folder holds {sorted(p.stem for p in files)}, expected {sorted(done_keys)}")
    for path in files:
        try:
            run = load_checkpoint(path)
        except CheckpointError as e:
            failures.append(f"{path.name} does not load: {e}")
            continue
        if run.config.key() != path.stem:
            failures.append(f"{path.name} holds the config {run.config.key()}")
    return failures


def report(
    outcomes: list[Outcome],
    log: str,
    runs_dir: Path,
    peak_rss: int,
    phases: list[tuple[float, float, float]],
    total_s: float,
) -> None:
    def spread(values: list[float]) -> str:
        if not values:
            return "-"
        return f"max {max(values):.2f} s, median {statistics.median(values):.2f} s ({len(values)})"

    events = job_events(log)
    finals = [o.final for o in outcomes]
    ends = [e for evs in events.values() for _, e, _ in evs if e in ("done", "cancelled", "failed")]
    attached = sum(e == "attached" for evs in events.values() for _, e, _ in evs)
    speeds = images_per_s(runs_dir)
    _, noise = log_problems(log)
    rows = [
        ("sessions", f"{len(outcomes)} at once (one Chromium, a browser context each)"),
        (
            "sessions ended",
            f"{finals.count('done')} done, {finals.count('cancelled')} cancelled, "
            f"{len(finals) - finals.count('done') - finals.count('cancelled')} other",
        ),
        (
            "jobs on the server",
            f"{len({j for evs in events.values() for j, _, _ in evs})} for {len(events)} configs: "
            f"{ends.count('done')} done, {ends.count('cancelled')} cancelled, "
            f"{ends.count('failed')} failed; "
            f"presses of Train that joined a running job: {attached}",
        ),
        ("page switch", spread([s for o in outcomes for _, s in o.switches])),
        ("Train -> job on page", spread([o.ack_s for o in outcomes if o.ack_s is not None])),
        ("Stop -> job ended", spread(stop_delays(outcomes, events))),
        ("Stop -> 'Stopped.'", spread([o.stop_s for o in outcomes if o.stop_s is not None])),
        (
            "training speed",
            f"{statistics.median(speeds):,.0f} images/s median over {len(speeds)} runs" if speeds else "-",
        ),
        ("server peak RSS", f"{peak_rss / 2**20:,.0f} MiB"),
        *[
            (
                f"CPU, {name}",
                f"server {server:.0f} s, browser {browser:.0f} s in {wall:.0f} s on {psutil.cpu_count()} cores",
            )
            for name, (wall, server, browser) in zip(("opening, sidebars", "jobs, pages"), phases, strict=False)
        ],
        ("load average before", f"{LOAD_BEFORE[0]:.1f} (other programs on this machine)"),
        ("checkpoints in store", str(len(list(runs_dir.glob("*.pt"))))),
        ("Streamlit ws noise", f"{noise} traceback(s) of a tab closing mid-message" if noise else "none"),
        ("total time", f"{total_s:.1f} s"),
    ]
    for name, value in rows:
        print(f"{name + ':':<22} {value}")
    for o in outcomes:
        times = ", ".join(f"{t} {s:.2f} s" for t, s in o.switches)
        print(
            f"  session {o.index}: {o.plan.config.key()} click={o.plan.click} stop={o.plan.stop} -> {o.final}; {times}"
        )


# -------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10, help="browser sessions at once (at least 3)")
    ap.add_argument("--quick", action="store_true", help="3 sessions (for CI)")
    ap.add_argument("--max-render-s", type=float, default=3.0, help="slowest page switch allowed")
    ap.add_argument("--max-stop-s", type=float, default=1.0, help="slowest Stop allowed (click to job's end)")
    ap.add_argument("--job-timeout-s", type=float, default=240.0, help="how long a session waits for its job")
    ap.add_argument("--verbose", action="store_true", help="print what each session does, as it does it")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (data, runs, server log)")
    args = ap.parse_args(argv)
    sessions = 3 if args.quick else max(3, args.sessions)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium).", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    LOAD_BEFORE[:] = os.getloadavg()
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
        phases = [(t1 - t0, c1[0] - c0[0], c1[1] - c0[1]) for (t0, c0), (t1, c1) in zip(marks, marks[1:], strict=False)]
        failures = check(outcomes, log, runs_dir, args.max_render_s, args.max_stop_s)
        report(outcomes, log, runs_dir, peak, phases, time.perf_counter() - t_start)
        if failures:
            print("\nFAILED:")
            for f in failures:
                print(f"  - {f}")
            print(f"(server log, screenshots: {tmp})")
            keep = True
            return 1
        print("\nall checks passed")
        return 0
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
