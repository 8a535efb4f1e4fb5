"""Many browser tabs at once against one server, each following a plan: the load test's driver.

Every session opens its own browser context, moves the sidebar to its plan's configuration, and once
all are ready presses Train (session 0 first, so that its Stop hits a running job), maybe Stop, then
switches pages while the jobs run and waits for its job's end. What it saw goes into an Outcome.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import async_playwright

from convae.train import TrainConfig
from tests.support.chromium import launch
from tests.support.pages import (
    STOPPED,
    acknowledged,
    click_train,
    close_session,
    open_session,
    set_config,
    sidebar,
    switch_page,
)

# A human does not click a page link within a split second of pressing Train; waiting for the page to
# show the job also catches a click that was lost.
ACK_TIMEOUT_S = 20


@dataclass
class Plan:
    """What one session does."""

    config: TrainConfig
    click: str = "single"  # single | double | repeat
    stop: str | None = None  # None | "running" (after its first progress) | "queued" (at once)
    browse: tuple[str, ...] = ("Reconstructions",)


@dataclass
class Outcome:
    """What one session saw: how its job ended, its page switches, and how long things took."""

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
        await page.get_by_text(STOPPED).wait_for()
        out.stop_s = time.perf_counter() - t0
        out.say(f"pressed Stop; 'Stopped.' after {out.stop_s:.2f} s")
    for title in plan.browse:
        out.switches.append((title, await switch_page(page, title)))
        out.switches.append(("Train", await switch_page(page, "Train")))
        out.say(f"switched to {title} and back: {out.switches[-2][1]:.2f} s, {out.switches[-1][1]:.2f} s")
    done = page.get_by_text("Done: validation MSE")
    stopped = page.get_by_text(STOPPED)
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
    """Run every plan in a session of its own, all in one Chromium at once; the outcomes in plan order."""
    async with async_playwright() as pw:
        browser = await launch(pw)
        start = Start(len(plans), setup_slots)
        start.on_all_ready = on_all_ready
        outcomes = await asyncio.gather(
            *(run_session(i, p, browser, url, start, job_timeout_s, artifacts, verbose) for i, p in enumerate(plans))
        )
        await browser.close()
    return list(outcomes)
