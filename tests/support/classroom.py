"""A class at one server: protocol sessions (tests/support/st_client.py) and a few Chromium tabs, the class
load test's driver (scripts/classload.py).

Session 0 is the teacher, the others students; every second student trains. In order:

1. the teacher opens the app, then the students, spread over `ramp_s` seconds, and the tabs;
2. every session and tab opens two pages and comes back to Train (each switch timed);
3. the teacher enters the teacher key and switches "Follow me" on: every student (the toggle "Follow the
   teacher" is on by default) and tab comes to the teacher's view;
4. the trainers switch following off, type a name, move the sidebar to a small configuration of their own
   and press Train; some press Stop while their job runs, some at once; each waits on its Train page for
   its job's end. Meanwhile the teacher moves (page, K, page...) and each move is timed until every
   follower shows it; one follower leaves, looks at another page and comes back;
5. the teacher opens the class board, which must list every finished run with its trainer's name.

Steps that need a part of the dashboard it does not have (no name input, no teacher key input, no class
board) are skipped and listed in `Classroom.skipped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import async_playwright

from convae.train import TrainConfig
from tests.support.chromium import launch
from tests.support.pages import PAGES, STOPPED, click_page_link, close_session, describe, open_session
from tests.support.st_client import Session

DONE = re.compile(r"Done: validation MSE")
FAILED = re.compile(r"Training failed")
TRAIN_SIZE_LABEL = "1,000 (quick demo subset)"
BROWSE = ["Reconstructions", "Latent space", "Mixtures", "Latent walk", "Compare runs"]
# The teacher's moves: (what, page or K). Pages are ones whose heading the tabs know (tests/support/pages.py).
MOVES = [("page", "Reconstructions"), ("k", 4), ("page", "Mixtures"), ("page", "Latent space"), ("page", "Train")]
FOLLOW_WAIT_S = 30  # a follower that has not shown a move by then never will: a failure (the target is 2 s)
ODD_NAME = "<b>Zoë</b> *3* 🚀"  # must come back as typed: plain text, never Markdown or HTML


@dataclass
class Student:
    """One protocol session: its plan and what it saw."""

    index: int
    role: str  # teacher | trainer | follower
    config: TrainConfig | None = None
    stop: str | None = None  # None | "running" | "at once"
    name: str | None = None
    final: str | None = None  # done | cancelled | failed (trainers)
    open_s: float | None = None
    switches: list[tuple[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    session: Session | None = None


@dataclass
class Tab:
    """One Chromium tab: its page switches and follow-me arrivals, end to end."""

    index: int
    open_s: float | None = None
    switches: list[tuple[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    page: object = None


@dataclass
class Move:
    """One move of the teacher and when each follower showed it (seconds after the teacher's click)."""

    what: str
    target: object
    arrivals: dict[str, float | None] = field(default_factory=dict)


@dataclass
class Classroom:
    students: list[Student]
    tabs: list[Tab]
    teacher_key: str
    moves: list[Move] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    features: dict[str, bool] = field(default_factory=dict)
    board: dict = field(default_factory=dict)
    artifacts: Path | None = None  # where a tab that missed a move leaves its screenshot


def plan_class(sessions: int, tabs: int, teacher_key: str) -> Classroom:
    """Session 0 teaches; every second student trains a configuration of its own (seeds apart), the first
    of each five stopped while it trains, the second at once (both 30 epochs, so that Stop finds the job
    queued or running: a one-epoch job of 1,000 images can end before the Stop click reaches the server)."""
    students = [Student(0, "teacher")]
    trainers = 0
    for i in range(1, sessions):
        if i % 2:
            q = (4, 6, 8)[trainers % 3]
            stop = {0: "running", 1: "at once"}.get(trainers % 5)
            config = TrainConfig(
                q1=q, q2=(8, 4, 6)[trainers % 3], k=2 + trainers % 7, epochs=30 if stop else 1,
                train_size=1000, seed=100 + i,
            )  # fmt: skip
            name = ODD_NAME if trainers == 2 else f"Student {i}"
            students.append(Student(i, "trainer", config, stop, name))
            trainers += 1
        else:
            students.append(Student(i, "follower"))
    return Classroom(students, [Tab(j) for j in range(tabs)], teacher_key)


def _outcome(s: Session) -> str | None:
    if s.has_text(DONE):
        return "done"
    if s.has_text(STOPPED):
        return "cancelled"
    return "failed" if s.has_text(FAILED) else None


async def _guard(who, coro) -> None:
    """Run one step of a session; an error is recorded with the session (the checks report it), not raised."""
    try:
        await coro
    except Exception as e:
        who.errors.append(f"{type(e).__name__}: " + " | ".join(str(e).splitlines()[:3])[:300])


# ----------------------------------------------------------------------------- protocol sessions


async def _open(st: Student, url: str, delay: float, timeout_s: float) -> None:
    await asyncio.sleep(delay)
    st.session = Session(url, timeout_s=timeout_s)
    st.open_s = await st.session.connect()


async def _browse(st: Student, pages: list[str]) -> None:
    for title in [*pages, "Train"]:
        st.switches.append((title, await st.session.switch_page(title)))


async def _train(st: Student, cls: Classroom, job_timeout_s: float) -> None:
    s = st.session
    if cls.features.get("presenter"):  # leave the teacher: the toggle shows once the teacher leads
        await s.wait_for(lambda s: s.widget("follow_teacher") is not None, 15, "the 'Follow the teacher' toggle")
        await s.set("follow_teacher", False)
    if s.page != "Train":
        await s.switch_page("Train")
    if cls.features.get("names"):
        await s.set("student_name", st.name)
    c = st.config
    for key, value in [("q1", c.q1), ("q2", c.q2), ("k", c.k), ("epochs", c.epochs), ("seed", c.seed)]:
        if s.widget(key).value != value:
            await s.set(key, value)
    if s.widget("train_size").value != TRAIN_SIZE_LABEL:
        await s.set("train_size", TRAIN_SIZE_LABEL)
    # a correctness wait, not a timing (the page times are measured apart): as long as the other waits here
    try:
        await s.wait_for(lambda s: s.has_text(re.escape(describe(c))), 30, f"the sidebar showing {c.key()}")
    except TimeoutError as e:  # say what it showed instead, and which widgets hold what
        shown = [t for t in s.texts() if t.startswith("Q1=")][:2]
        held = {k: getattr(s.widget(k), "value", None) for k in ("q1", "q2", "k", "epochs", "seed", "train_size")}
        raise TimeoutError(f"{e}; it shows {shown}, the widgets hold {held}, page {s.page}") from None
    await s.click("train_button")
    if st.stop == "running":
        await s.wait_for(lambda s: s.has_text("images/s"), job_timeout_s, "the job's progress")
    if st.stop:
        await s.wait_for(lambda s: not s.widget("stop_button").disabled, 20, "an enabled Stop button")
        await s.click("stop_button")
    await s.wait_for(lambda s: _outcome(s) is not None, job_timeout_s, "the job's end on the Train page")
    st.final = _outcome(s)


async def _rejoin(st: Student, cls: Classroom) -> None:
    """A follower leaves the teacher, opens another page, and follows again: timed until it is back."""
    s = st.session
    await s.wait_for(lambda s: s.widget("follow_teacher") is not None, 15, "the 'Follow the teacher' toggle")
    await s.set("follow_teacher", False)
    st.switches.append(("Compare runs", await s.switch_page("Compare runs")))
    teacher = cls.students[0].session
    t0 = time.perf_counter()
    await s.set("follow_teacher", True)
    await s.wait_for(lambda s: s.page == teacher.page, FOLLOW_WAIT_S, "coming back to the teacher's page")
    cls.moves.append(Move("rejoin", teacher.page, {f"session {st.index}": time.perf_counter() - t0}))


async def _lead(cls: Classroom, followers: list[Student], pause_s: float, timeout_s: float = FOLLOW_WAIT_S) -> None:
    """The teacher's moves, each timed from the teacher's request until every follower (session or tab)
    shows it. The followers are watched from before the request, so that a follower that shows the move
    while the teacher's own page is still running is timed when it does."""
    teacher = cls.students[0].session
    for what, target in MOVES:
        move = Move(what, target)
        cls.moves.append(move)

        def shows(s: Session, what=what, target=target) -> bool:
            w = s.widget(what) if what != "page" else None
            return s.page == target if what == "page" else w is not None and w.value == target

        t0 = time.perf_counter()
        waits = [
            _arrival(move, t0, f"session {f.index}", f.session.wait_for(shows, timeout_s, f"the move {what} {target}"))
            for f in followers
        ]
        waits += [
            _arrival(move, t0, f"tab {t.index}", _tab_shows(t, what, target, timeout_s, cls.artifacts))
            for t in cls.tabs
            if t.page
        ]
        watching = asyncio.gather(*waits)
        if what == "page":
            await teacher.switch_page(target)
        else:
            await teacher.set(what, target)
        await watching
        await asyncio.sleep(pause_s)


async def _arrival(move: Move, t0: float, who: str, waiting) -> None:
    """When a follower showed the move (None: not within the time allowed)."""
    try:
        await waiting
        move.arrivals[who] = time.perf_counter() - t0
    except Exception:
        move.arrivals[who] = None


# ---------------------------------------------------------------------------------------- tabs


async def _tab_open(tab: Tab, browser, url: str, delay: float) -> None:
    await asyncio.sleep(delay)
    t0 = time.perf_counter()
    tab.page = await open_session(browser, url)
    tab.open_s = time.perf_counter() - t0


def _heading(tab: Tab, title: str):
    return tab.page.get_by_role("heading", name=PAGES[title][1], exact=True)


async def _tab_browse(tab: Tab, pages: list[str]) -> None:
    """Each switch timed from the click on the page's link until its heading is drawn."""
    for title in [*pages, "Train"]:
        t0 = await click_page_link(tab.page, title)
        await _heading(tab, title).wait_for()
        tab.switches.append((title, time.perf_counter() - t0))


def _describe(message: bytes | str) -> str:
    """A message from the server in a few words: its kind, and for a run's start its page and fragments."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    if isinstance(message, str):
        return f"text {len(message)}"
    msg = ForwardMsg()
    try:
        msg.ParseFromString(message)
    except Exception:  # noqa: BLE001  (a report: any message it cannot read is named so)
        return f"unreadable {len(message)}"
    kind = msg.WhichOneof("type") or "?"
    if kind == "new_session":
        ns = msg.new_session
        return f"new_session page={ns.page_script_hash[:6]} run={str(msg.metadata.run).strip()[:80]!r}"
    if kind == "script_finished":
        return f"script_finished {msg.script_finished} run={str(msg.metadata.run).strip()[:80]!r}"
    if kind == "delta":
        return f"delta {msg.metadata.delta_path[:3]} page={msg.metadata.active_script_hash[:6]} {len(message)}"
    return f"{kind} {len(message)}"


async def _tab_shows(tab: Tab, what: str, target, timeout_s: float, artifacts: Path | None) -> None:
    if what == "page":
        locator = _heading(tab, target)
    else:
        locator = tab.page.locator('[data-testid="stSidebar"]').get_by_text(re.compile(rf"\bK={target} ·")).first
    t0 = time.perf_counter()
    try:
        await locator.wait_for(timeout=timeout_s * 1000)
    except Exception:
        if artifacts is not None:
            with contextlib.suppress(Exception):
                name = f"tab-{tab.index}-missed-{what}-{target}"
                await tab.page.screenshot(path=artifacts / f"{name}.png")
                frames = [
                    (round(t - t0, 2), _describe(m)) for t, m in getattr(tab.page, "frames_in", []) if t >= t0 - 5
                ]
                state = await tab.page.evaluate(
                    "() => ({script: document.querySelector('[data-testid=stApp]')?.getAttribute("
                    "'data-test-script-state'), main: document.querySelector('[data-testid=stMain]')?.innerText"
                    ".slice(0, 300), url: location.href})"
                )
                report = {"state": state, "frames_after_move": frames[:400], "console": tab.page.console_lines[-40:]}
                (artifacts / f"{name}.json").write_text(json.dumps(report, indent=1))
        raise


# ----------------------------------------------------------------------------------------- class


async def run_class(
    cls: Classroom, url: str, ramp_s: float, job_timeout_s: float, request_timeout_s: float = 60, pause_s: float = 2
) -> Classroom:
    """Everything above, in order; what each session and tab saw goes into `cls`."""
    rng = random.Random(0)
    teacher, students = cls.students[0], cls.students[1:]
    await _guard(teacher, _open(teacher, url, 0, request_timeout_s))
    if teacher.session is None or teacher.errors:
        raise RuntimeError(f"the teacher's session did not open: {teacher.errors}")
    t = teacher.session
    cls.features = {
        "names": t.widget("student_name") is not None,
        "presenter": t.widget("teacher_key_input") is not None,
        "class_board": "Class board" in t.pages,
    }
    for feature, step in [
        ("names", "names typed before Train, and checked in the store and on the class board"),
        ("presenter", "the teacher's key, follow-me and its timing, leaving and coming back"),
        ("class_board", "the class board's list of runs"),
    ]:
        if not cls.features[feature]:
            cls.skipped.append(f"{step}: this dashboard has no {feature.replace('_', ' ')} (skipped)")

    async with async_playwright() as pw:
        browser = await launch(pw) if cls.tabs else None
        gap = ramp_s / max(1, len(students))
        await asyncio.gather(
            *(_guard(s, _open(s, url, i * gap, request_timeout_s)) for i, s in enumerate(students)),
            *(_guard(tab, _tab_open(tab, browser, url, i * ramp_s / len(cls.tabs))) for i, tab in enumerate(cls.tabs)),
        )
        live = [s for s in cls.students if s.session is not None and not s.errors]
        await asyncio.gather(
            *(_guard(s, _browse(s, rng.sample(BROWSE, 2))) for s in live),
            *(_guard(tab, _tab_browse(tab, rng.sample(BROWSE, 2))) for tab in cls.tabs if tab.page),
        )
        live = [s for s in live if not s.errors]
        trainers = [s for s in live if s.role == "trainer"]
        followers = [s for s in live if s.role == "follower"]
        steps = [_guard(s, _train(s, cls, job_timeout_s)) for s in trainers]
        if cls.features["presenter"]:
            await _guard(teacher, t.set("teacher_key_input", cls.teacher_key))
            await _guard(teacher, t.set("follow_me", True))
            if t.widget("follow_me") is None or not t.widget("follow_me").value:
                teacher.errors.append("the teacher key did not make this session the presenter")
            else:
                rejoin = followers[-1:] if len(followers) > 1 else []
                steps.append(_guard(teacher, _lead(cls, [f for f in followers if f not in rejoin], pause_s)))
                steps += [_guard(f, _rejoin(f, cls)) for f in rejoin]
        await asyncio.gather(*steps)
        if cls.features["class_board"]:
            await _guard(teacher, _check_board(cls, t))
        for s in cls.students:
            if s.session is not None:
                await s.session.close()
        for tab in cls.tabs:
            if tab.page is not None:
                await _guard(tab, close_session(tab.page))
        if browser is not None:
            await browser.close()
    return cls


async def _check_board(cls: Classroom, t: Session) -> None:
    """The class board lists every finished run with its trainer's name (it refreshes by itself)."""
    expected = {s.name for s in cls.students if s.role == "trainer" and s.final == "done"}
    if not cls.features["names"]:
        expected = set()
    await t.switch_page("Class board")

    def names_seen(s: Session) -> set[str]:
        cells = {str(v) for df in s.dataframes() for col in df.columns for v in df[col].tolist()}
        return expected & cells

    try:
        await t.wait_for(lambda s: names_seen(s) == expected and s.dataframes(), 10, "the class board's runs")
    finally:
        tables = t.dataframes()
        cls.board = {
            "expected_names": sorted(expected),
            "names_seen": sorted(names_seen(t)),
            "tables": [{"columns": [str(c) for c in df.columns], "rows": len(df)} for df in tables],
        }
