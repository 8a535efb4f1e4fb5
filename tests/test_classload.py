"""The protocol client (tests/support/st_client.py) and the class load test (scripts/classload.py).

The client's test drives a tiny two-page app (tests/support/tiny_app.py) on a real server: every kind
of widget the client sets, a button, a value the server pushes, a fragment on a timer, a page switch,
a table. The load test's quick version runs `python -m scripts.classload --quick` (six protocol
sessions and one Chromium tab on one server) and reads its JSON: how each job ended, the runs stored,
the server log, every page's script finished. How long things took is printed, not checked here.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.support.chromium import run_quick_script
from tests.support.server import Server, log_problems
from tests.support.st_client import ProtocolError, Session


def test_client_drives_a_tiny_app(tmp_path: Path) -> None:
    with Server(tmp_path, tmp_path / "runs", tmp_path / "server.log", script="tests/support/tiny_app.py") as server:
        timings = asyncio.run(_drive_tiny_app(server.url))
        log = server.log_text()
    assert log_problems(log) == ([], 0), log
    assert {t.what for t in timings} == {"open", "set", "click", "rerun", "auto", "page"}
    assert all(t.seconds > 0 for t in timings)
    assert all(t.fragment == (t.what == "auto") for t in timings)


async def _drive_tiny_app(url: str):
    async with Session(url, timeout_s=30) as s:
        assert s.page == "Home" and set(s.pages) == {"Home", "Other page"}
        assert {w.key: (w.type, w.value) for w in s.widgets()} == {
            "sidebar_name": ("text_input", ""),
            "name": ("text_input", ""),
            "n": ("slider", 3),
            "follow": ("toggle", False),
            "colour": ("selectbox", "red"),
            "rate": ("select_slider", "0.3"),
            "seed": ("number_input", 5),
            "go": ("button", False),
            "max": ("button", False),
        }

        def line() -> str:
            return next(t for t in s.texts() if t.startswith("name="))

        assert line() == "name= n=3 follow=False colour=red rate=0.3 seed=5 clicks=0"
        for key, value in [
            ("n", 7),
            ("colour", "blue"),
            ("rate", "1"),
            ("seed", 42),
            ("name", "Ann"),
            ("follow", True),
        ]:
            await s.set(key, value)
        assert line() == "name=Ann n=7 follow=True colour=blue rate=1 seed=42 clicks=0"
        await s.click("go")
        assert line().endswith("clicks=1")
        await s.rerun()  # a click is sent once; the values set are sent with every rerun
        assert line() == "name=Ann n=7 follow=True colour=blue rate=1 seed=42 clicks=1"
        await s.click("max")  # its callback sets n on the server, which pushes the value to the tab
        assert "n=10" in line() and s.widget("n").value == 10
        await s.rerun()  # ... and the tab sends it back from then on, not its own 7
        assert "n=10" in line()

        for key, value in [("colour", "purple"), ("nope", 1), ("n", "ten"), ("n", 11), ("seed", -1)]:
            with pytest.raises((ProtocolError, ValueError)):
                await s.set(key, value)
        with pytest.raises(ProtocolError, match="not a button"):
            await s.click("n")
        assert line() == "name=Ann n=10 follow=True colour=blue rate=1 seed=42 clicks=1"

        # The fragment's timer reruns it every 0.2 s, as the front end would.
        assert list(s.fragment_timers.values()) == [pytest.approx(0.2)]

        def ticks() -> int:
            return int(next(t for t in s.texts() if t.startswith("ticks="))[len("ticks=") :])

        before = ticks()
        await s.wait_for(lambda _: ticks() >= before + 3, 15, "three reruns of the fragment")
        assert line().endswith("clicks=1")  # fragment reruns leave the rest of the page alone

        await s.set("sidebar_name", "Bob")
        await s.switch_page("Other page")
        assert s.page == "Other page" and s.fragment_timers == {}
        assert [(w.key, w.value) for w in s.widgets()] == [("sidebar_name", "Bob")]  # the page's widgets went
        assert "Other" in s.texts() and not any(t.startswith("ticks=") for t in s.texts())
        [table] = s.dataframes()
        assert table["who"].tolist() == ["<b>Ann</b>"]
        await s.switch_page("")  # by its address: the default page
        assert s.page == "Home" and s.fragment_timers and s.widget("sidebar_name").value == "Bob"
        assert s.exceptions == []
        timings = list(s.timings)

    async with Session(url, page="other", timeout_s=30) as s:  # opened at a page's address
        assert s.page == "Other page" and s.dataframes()
    return timings


@pytest.mark.browser
@pytest.mark.slow
def test_quick_class_load_passes_its_checks(tmp_path: Path) -> None:
    res, report = run_quick_script("scripts.classload", tmp_path, timeout_s=400)

    # Six sessions: the teacher, three trainers (one stopped while its job runs, one at once), two followers.
    students = res["students"]
    assert [s["role"] for s in students] == [
        "teacher",
        "trainer",
        "follower",
        "trainer",
        "follower",
        "trainer",
    ] and len(res["tab_results"]) == 1
    assert all(s["errors"] == [] and s["requests"] > 0 for s in students), students
    trainers = [s for s in students if s["role"] == "trainer"]
    assert [(s["stop"], s["final"]) for s in trainers] == [
        ("running", "cancelled"),
        ("at once", "cancelled"),
        (None, "done"),
    ]
    assert all(len(jobs) == 1 for jobs in res["jobs"].values()) and len(res["jobs"]) == 3, res["jobs"]
    done = trainers[2]["config"]
    assert done in res["checkpoints"] and trainers[1]["config"] not in res["checkpoints"]
    # Every request's script ended (a request without one is a session error, above), and was timed.
    timings = res["timings"]
    assert timings["open_s"]["n"] == 6 and timings["page_s"]["n"] >= 6 * 3 and timings["fragment_rerun_s"]["n"] > 0
    if res["features"]["names"]:  # the odd name, as typed, stored with the run and on the class board
        assert trainers[2]["name"] == "<b>Zoë</b> *3* 🚀"
        if res["features"]["class_board"]:
            assert res["board"]["names_seen"] == [trainers[2]["name"]], res["board"]
    if res["features"]["presenter"]:  # every follower (one session, one tab) showed every move
        assert len(res["moves"]) == 6 and all(None not in m["arrivals"].values() for m in res["moves"]), res["moves"]
    assert res["timing_misses"] == []  # not checked with --no-time-limits


def test_the_logs_websocket_close_noise_is_told_from_errors() -> None:
    """Starlette's traceback when a tab closes mid-message (kept from a class run) is noise; any other
    traceback after "Exception in ASGI application" is an error."""
    noise = (Path(__file__).parent / "data" / "asgi_close_noise.log").read_text()
    stamp = "2026-11-27 18:44:59,235 INFO convae.jobs: job-15 done\n"
    assert log_problems(stamp + noise + stamp) == ([], 1)
    error = (
        'Exception in ASGI application\nTraceback (most recent call last):\n  File "a.py", line 1\nValueError: boom\n'
    )
    problems, count = log_problems(stamp + error + stamp + noise)
    assert count == 1 and problems[0] == "Exception in ASGI application"


def test_a_protocol_student_who_left_and_opened_a_page_is_not_moved(tmp_path: Path) -> None:
    """As in a browser (tests/test_browser_presenter.py): a student turns 'Follow the teacher' off and opens
    a page; the teacher's next move leaves the student where they are, sidebar included."""
    from convae.synthetic import make_synthetic

    data = make_synthetic(tmp_path / "data", n_train=200, n_val=100)
    env = {"CONVAE_TEACHER_KEY": "a-key-for-the-test"}
    with Server(data, tmp_path / "runs", tmp_path / "server.log", env=env) as server:
        student_k = asyncio.run(_leave_and_browse(server.url, env["CONVAE_TEACHER_KEY"]))
        log = server.log_text()
    assert student_k == (5, "Compare runs")
    assert log_problems(log) == ([], 0), log


async def _leave_and_browse(url: str, key: str) -> tuple[int, str]:
    async with Session(url, timeout_s=60) as teacher, Session(url, timeout_s=60) as student:
        await teacher.set("teacher_key_input", key)
        await teacher.set("follow_me", True)
        await teacher.switch_page("Reconstructions")  # the student follows there first
        await student.wait_for(lambda s: s.page == "Reconstructions", 15, "following the teacher")
        await student.set("follow_teacher", False)
        await student.switch_page("Compare runs")
        await student.set("k", 5)
        await teacher.set("k", 4)  # the teacher's move
        await teacher.switch_page("Mixtures")
        await asyncio.sleep(3)  # three polls of the follow fragment
        assert student.widget("follow_teacher").value is False
        return student.widget("k").value, student.page


def test_followers_are_moved_by_the_server_without_waiting_for_their_poll(tmp_path: Path) -> None:
    """Students whose follow fragment never polls (its timer off in the client) still follow every move
    and see the pause: the server runs their fragment when the teacher's view or the pause changes
    (ui.push). A student who stopped following is not moved by it and keeps what they set."""
    from convae.synthetic import make_synthetic

    data = make_synthetic(tmp_path / "data", n_train=200, n_val=100)
    env = {"CONVAE_TEACHER_KEY": "a-key-for-the-test"}
    with Server(data, tmp_path / "runs", tmp_path / "server.log", env=env) as server:
        seen = asyncio.run(_follow_without_polls(server.url, env["CONVAE_TEACHER_KEY"]))
        log = server.log_text()
    moves = [("Reconstructions", 10), ("Reconstructions", 4), ("Mixtures", 4), ("Train", 4)]
    assert seen["moves"] == [m for m in moves for _ in range(2)]
    assert seen["paused"] == [True, True]
    assert seen["explorer"] == ("Compare runs", 5, False)
    assert "followers are not woken" not in log
    assert log_problems(log) == ([], 0), log


async def _follow_without_polls(url: str, key: str) -> dict:
    seen: dict = {"moves": [], "paused": []}
    async with (
        Session(url, timeout_s=60) as teacher,
        Session(url, timeout_s=60, timers=False) as a,
        Session(url, timeout_s=60, timers=False) as b,
        Session(url, timeout_s=60, timers=False) as explorer,
    ):
        await teacher.set("teacher_key_input", key)
        await teacher.set("follow_me", True)
        # A poll would need a timer; 5 s is far more than a move takes.
        await explorer.wait_for(lambda s: s.widget("follow_teacher") is not None, 5, "the follow toggle")
        await explorer.set("follow_teacher", False)
        await explorer.switch_page("Compare runs")
        await explorer.set("k", 5)
        for k, page in [(None, "Reconstructions"), (4, None), (None, "Mixtures"), (None, "Train")]:
            if page:
                await teacher.switch_page(page)
            if k:
                await teacher.set("k", k)
            want = (teacher.page, teacher.widget("k").value)
            for s in (a, b):
                await s.wait_for(lambda s, want=want: (s.page, s.widget("k").value) == want, 5, f"the move to {want}")
                seen["moves"].append((s.page, s.widget("k").value))
        await teacher.set("pause_students", True)
        for s in (a, b):
            await s.wait_for(lambda s: s.widget("train_button").disabled, 5, "the pause")
            seen["paused"].append(s.widget("train_button").disabled)
        seen["explorer"] = (explorer.page, explorer.widget("k").value, explorer.widget("follow_teacher").value)
    return seen


def test_students_clicks_are_never_lost_to_the_wake_ups_of_a_teacher_who_moves(tmp_path: Path) -> None:
    """The teacher moves several times a second, so the server wakes every student's follow fragment as
    often; students who do not follow change K all the while. Each change is run and shows (a wake-up
    merged into a waiting request used to drop its values: two trainers' "set K" never ran in a class)."""
    from convae.synthetic import make_synthetic

    data = make_synthetic(tmp_path / "data", n_train=200, n_val=100)
    env = {"CONVAE_TEACHER_KEY": "a-key-for-the-test"}
    with Server(data, tmp_path / "runs", tmp_path / "server.log", env=env) as server:
        seen = asyncio.run(_change_while_woken(server.url, env["CONVAE_TEACHER_KEY"]))
        log = server.log_text()
    assert len(seen) == 8 * 20 and [s for s in seen if s[1] != s[2]] == []
    assert "followers are not woken" not in log
    assert log_problems(log) == ([], 0), log


async def _change_while_woken(url: str, key: str) -> list[tuple[int, int, int]]:
    seen: list[tuple[int, int, int]] = []
    stop = asyncio.Event()

    async def lead(teacher: Session) -> None:
        i = 0
        while not stop.is_set():
            await teacher.set("k", 3 + i % 5)
            i += 1

    async def student(n: int) -> None:
        async with Session(url, timeout_s=20) as s:
            await s.wait_for(lambda s: s.widget("follow_teacher") is not None, 15, "the follow toggle")
            await s.set("follow_teacher", False)
            for i in range(20):
                k = 10 + (n + i) % 20
                await s.set("k", k)
                seen.append((n, k, s.widget("k").value))

    async with Session(url, timeout_s=20) as teacher:
        await teacher.set("teacher_key_input", key)
        await teacher.set("follow_me", True)
        leading = asyncio.create_task(lead(teacher))
        try:
            await asyncio.gather(*(student(n) for n in range(8)))
        finally:
            stop.set()
            await leading
    return seen


@pytest.mark.slow
def test_students_who_stop_following_while_the_teacher_moves_keep_their_own_settings(tmp_path: Path) -> None:
    """Students turn 'Follow the teacher' off at moments spread over the teacher's moves (several a second,
    page and K), then set a configuration of their own: each keeps it, and stays off. A move the follow
    fragment picked up just before the toggle went off may switch the student's page from the server, which
    clears every widget's state; the choice to follow is kept apart from the toggle's state, so it stays off
    (before that, 10 of 88 such students were following again, with the teacher's settings)."""
    from convae.synthetic import make_synthetic

    data = make_synthetic(tmp_path / "data", n_train=200, n_val=100)
    env = {"CONVAE_TEACHER_KEY": "a-key-for-the-test"}
    with Server(data, tmp_path / "runs", tmp_path / "server.log", env=env) as server:
        outcomes = asyncio.run(_leave_while_the_teacher_moves(server.url, env["CONVAE_TEACHER_KEY"]))
        log = server.log_text()
    wrong = [o for o in outcomes if o[1:] != ({"q1": 8, "q2": 16, "k": 5, "seed": 100 + o[0]}, False)]
    assert len(outcomes) == 12 and wrong == []
    assert log_problems(log) == ([], 0), log


async def _leave_while_the_teacher_moves(url: str, key: str) -> list[tuple[int, dict, bool]]:
    rng = random.Random(7)
    outcomes: list[tuple[int, dict, bool]] = []

    async def lead(teacher: Session, stop: asyncio.Event) -> None:
        moves = [(3, "Reconstructions"), (4, "Mixtures"), (6, "Train"), (7, "Latent space")]
        i = 0
        while not stop.is_set():
            k, page = moves[i % len(moves)]
            await teacher.set("k", k)
            await teacher.switch_page(page)
            i += 1
            await asyncio.sleep(rng.uniform(0.2, 0.8))

    async def student(n: int, delay: float) -> None:
        async with Session(url, timeout_s=60) as s:
            await s.wait_for(lambda s: s.widget("follow_teacher") is not None, 30, "the 'Follow the teacher' toggle")
            await asyncio.sleep(delay)
            await s.set("follow_teacher", False)
            if s.page != "Train":
                await s.switch_page("Train")
            mine = {"q1": 8, "q2": 16, "k": 5, "seed": 100 + n}
            for name, value in mine.items():
                if s.widget(name).value != value:
                    await s.set(name, value)
            await asyncio.sleep(3)  # three polls of the follow fragment while the teacher goes on moving
            outcomes.append((n, {name: s.widget(name).value for name in mine}, s.widget("follow_teacher").value))

    async with Session(url, timeout_s=60) as teacher:
        await teacher.set("teacher_key_input", key)
        await teacher.set("follow_me", True)
        for round_ in range(2):
            stop = asyncio.Event()
            leading = asyncio.create_task(lead(teacher, stop))
            await asyncio.gather(*(student(6 * round_ + i, rng.uniform(0, 3)) for i in range(6)))
            stop.set()
            await leading
    return sorted(outcomes)
