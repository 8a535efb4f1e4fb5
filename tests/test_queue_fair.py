"""Fair queueing: one queued or running job per browser session (a second Train replaces the queued one,
is refused while the first runs, never drops a job another session waits for), priority jobs at the
front, each queued job's place and start estimate, and who asked (name, guess, session) kept with the
job, in the stored run and across a server restart through the queue file.

The engine is tests.test_jobs.FakeTrain: each run lasts until the test releases it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import convae.jobs as jobs
from convae.job_state import estimate_seconds, start_times
from convae.jobs import JobManager, JobRefusedError, JobState
from convae.queue_file import NAME
from convae.store import RunStore
from convae.student import MAX_NAME
from tests.conftest import tiny_config
from tests.test_jobs import WAIT_S, FakeTrain, wait_until

pytestmark = pytest.mark.usefixtures("isolated_dirs")

ANN, BOB, CY = "a" * 32, "b" * 32, "c" * 32  # session ids (uuid4 hex)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTrain:
    fake = FakeTrain()
    monkeypatch.setattr(jobs, "train", fake)
    return fake


@pytest.fixture
def managers(tmp_path: Path, data_root: Path, fake: FakeTrain):
    """Managers on tmp_path/runs; every fake run is let go and every manager closed after the test."""
    made: list[JobManager] = []

    def make(**kw) -> JobManager:
        kw.setdefault("max_concurrent", 1)
        made.append(JobManager(RunStore(tmp_path / "runs", shipped=None), data_dir=data_root, device="cpu", **kw))
        return made[-1]

    yield make
    fake.all_open.set()
    for mgr in made:
        for view in mgr.views():
            mgr.wait(view.id, WAIT_S)
        mgr.close()


def cfg(seed: int):
    return tiny_config(seed=seed)


def busy(mgr: JobManager, fake: FakeTrain, seed: int = 99) -> str:
    """Occupy the one training slot with a job nobody's session asked for, so that the next ones queue."""
    job = mgr.submit(cfg(seed))
    fake.wait_started(cfg(seed))
    return job


def active_of(mgr: JobManager, session: str) -> list[str]:
    return [v.id for v in mgr.views() if v.state.active and mgr.job_of(session) == v.id]


def test_a_second_train_replaces_the_sessions_queued_job(managers, fake: FakeTrain) -> None:
    mgr = managers()
    busy(mgr, fake)
    first = mgr.request(cfg(1), session=ANN, owner="Ann")
    assert first.replaced is None and mgr.snapshot(first.job_id).state is JobState.QUEUED
    second = mgr.request(cfg(2), session=ANN, owner="Ann")
    assert second.replaced == cfg(1) and not second.replaced_kept
    assert mgr.snapshot(first.job_id).state is JobState.CANCELLED  # nobody else waited for it
    assert mgr.job_of(ANN) == second.job_id
    assert [v.config for v in mgr.views() if v.state is JobState.QUEUED] == [cfg(2)]
    assert mgr.snapshot(second.job_id).position == 1  # it did not queue behind the job it replaced
    assert len(active_of(mgr, ANN)) == 1


def test_replacing_keeps_a_job_another_session_waits_for(managers, fake: FakeTrain) -> None:
    mgr = managers()
    busy(mgr, fake)
    shared = mgr.submit(cfg(1), session=ANN, owner="Ann", guess=0.02)
    assert mgr.submit(cfg(1), session=BOB, owner="Bob", guess=0.05) == shared  # one job, as before
    assert (mgr.snapshot(shared).owner, mgr.snapshot(shared).guess) == ("Ann", 0.02)  # the first who asked
    moved = mgr.request(cfg(2), session=ANN, owner="Ann")
    assert moved.replaced == cfg(1) and moved.replaced_kept
    view = mgr.snapshot(shared)
    assert view.state is JobState.QUEUED and view.position == 1  # still waiting, in its place
    assert (view.owner, view.guess) == ("Bob", 0.05)  # now Bob's run: Ann no longer waits for it
    assert mgr.job_of(BOB) == shared and mgr.job_of(ANN) == moved.job_id
    # Bob replaces it too: now nobody waits, and it goes.
    mgr.submit(cfg(3), session=BOB)
    assert mgr.snapshot(shared).state is JobState.CANCELLED


def test_a_job_asked_for_without_a_session_is_never_dropped_by_a_replace(managers, fake: FakeTrain) -> None:
    mgr = managers()
    busy(mgr, fake)
    sweep_job = mgr.submit(cfg(1))  # e.g. "fill the gaps": no session
    assert mgr.submit(cfg(1), session=ANN) == sweep_job
    mgr.submit(cfg(2), session=ANN)
    assert mgr.snapshot(sweep_job).state is JobState.QUEUED


def test_a_second_train_while_the_first_runs_is_refused(managers, fake: FakeTrain) -> None:
    mgr = managers()
    mine = mgr.submit(cfg(1), session=ANN, owner="Ann")
    fake.wait_started(cfg(1))
    assert mgr.submit(cfg(1), session=ANN) == mine  # the same configuration again: the same job
    with pytest.raises(JobRefusedError, match=r"Q1=4, Q2=4, K=2 \(1 epoch\) is running.*Stop"):
        mgr.submit(cfg(2), session=ANN)
    assert mgr.active_for(cfg(2)) is None  # nothing was queued
    other = mgr.submit(cfg(2), session=BOB)  # another session may queue it
    with pytest.raises(JobRefusedError):
        mgr.submit(cfg(2), session=ANN)  # not even by joining someone else's job
    fake.release(cfg(1))
    assert mgr.wait(mine, WAIT_S).state is JobState.DONE
    assert mgr.submit(cfg(2), session=ANN) == other  # after it ended: allowed
    fake.release(cfg(2))


def test_stopping_the_running_job_lets_the_session_train_again(managers, fake: FakeTrain) -> None:
    mgr = managers()
    mine = mgr.submit(cfg(1), session=ANN)
    fake.wait_started(cfg(1))
    mgr.cancel(mine)  # the job winds down: it no longer counts as the session's
    assert mgr.request(cfg(2), session=ANN).replaced is None
    assert mgr.wait(mine, WAIT_S).state is JobState.CANCELLED


def test_priority_jobs_go_to_the_front_in_their_own_order(managers, fake: FakeTrain) -> None:
    mgr = managers()
    busy(mgr, fake)
    a, b = mgr.submit(cfg(1)), mgr.submit(cfg(2))
    p1 = mgr.submit(cfg(3), session=ANN, priority=True)
    p2 = mgr.submit(cfg(4), priority=True)
    assert [mgr.snapshot(i).position for i in (p1, p2, a, b)] == [1, 2, 3, 4]
    assert mgr.snapshot(p1).priority and not mgr.snapshot(a).priority
    assert mgr.submit(cfg(2), priority=True) == b  # asked for with priority: the queued job moves up
    assert [mgr.snapshot(i).position for i in (p1, p2, b, a)] == [1, 2, 3, 4]
    fake.all_open.set()
    for i in (p1, p2, b, a):
        assert mgr.wait(i, WAIT_S).state is JobState.DONE
    assert fake.started[1:] == [cfg(3), cfg(4), cfg(2), cfg(1)]


def test_each_queued_job_has_its_place_and_an_estimate_of_its_start(managers, fake: FakeTrain) -> None:
    mgr = managers()
    running = busy(mgr, fake)
    big = tiny_config(seed=1, epochs=5, train_size=None)
    ids = [mgr.submit(big), mgr.submit(cfg(2)), mgr.submit(cfg(3))]
    views = [mgr.snapshot(i) for i in ids]
    assert [v.position for v in views] == [1, 2, 3]
    left = mgr.snapshot(running).starts_in_s
    assert left is None  # a running job has no start to wait for
    first, second, third = (v.starts_in_s for v in views)
    assert 0 <= first <= estimate_seconds(cfg(99))  # what is left of the running job
    assert second == pytest.approx(first + estimate_seconds(big), rel=0.05)
    assert third == pytest.approx(second + estimate_seconds(cfg(2)), rel=0.05)
    assert {v.id: v.starts_in_s for v in mgr.views() if v.id in ids} == pytest.approx(
        {v.id: v.starts_in_s for v in views}, rel=0.05
    )


def test_start_times_with_one_and_two_slots() -> None:
    assert start_times([30.0], [10.0, 20.0, 5.0], 1) == [30.0, 40.0, 60.0]
    assert start_times([], [10.0, 20.0], 1) == [0.0, 10.0]
    assert start_times([30.0, 5.0], [10.0, 20.0, 5.0], 2) == [5.0, 15.0, 30.0]  # the first free slot each time
    assert start_times([], [10.0, 20.0, 5.0], 2) == [0.0, 0.0, 10.0]
    assert start_times([7.0], [1.0], 0) == [7.0]  # a closing server: estimated as if one slot went on


def test_estimates_grow_with_the_work() -> None:
    small, more_epochs = tiny_config(), tiny_config(epochs=4)
    assert estimate_seconds(more_epochs) > estimate_seconds(small) > 0
    assert estimate_seconds(tiny_config(q1=64, q2=64)) > estimate_seconds(small)


@pytest.mark.parametrize("guess", [-1.0, math.nan, math.inf, 2.0, True, "0.02"])
def test_a_bad_guess_is_refused_and_nothing_is_queued(managers, guess) -> None:
    mgr = managers()
    with pytest.raises(ValueError, match="guess"):
        mgr.submit(cfg(1), session=ANN, guess=guess)
    assert mgr.views() == [] and mgr.job_of(ANN) is None


def test_the_name_and_guess_go_with_the_stored_run(managers, fake: FakeTrain, tmp_path: Path) -> None:
    mgr = managers()
    hostile = "<b>*Ann*</b>\x00\n [x](javascript:alert(1)) 🦊" + "z" * 10_000
    job = mgr.submit(cfg(1), session=ANN, owner=hostile, guess=0.025)
    fake.release(cfg(1))
    run = mgr.wait(job, WAIT_S).run
    expected = ("<b>*Ann*</b> [x](javascript:alert(1)) 🦊" + "z" * 50)[:MAX_NAME]  # NUL gone, newline a space
    assert (run.owner, run.guess) == (expected, 0.025)
    again = RunStore(tmp_path / "runs", shipped=None).get(cfg(1))  # read back from the file
    assert (again.owner, again.guess) == (expected, 0.025)


def test_a_run_without_a_name_has_no_owner(managers, fake: FakeTrain) -> None:
    mgr = managers()
    job = mgr.submit(cfg(1), session=ANN, owner="   \t ")
    fake.release(cfg(1))
    run = mgr.wait(job, WAIT_S).run
    assert run.owner is None and run.guess is None


def test_who_waits_survives_a_restart(managers, fake: FakeTrain) -> None:
    first = managers()
    busy(first, fake)
    first.submit(cfg(1), session=ANN, owner="Ann 🦊", guess=0.03)
    first.submit(cfg(1), session=BOB, owner="Bob")
    first.submit(cfg(2), session=CY, priority=True)
    first.close()  # the server is gone; its entries stay in the queue file
    second = managers()  # takes the queue over and starts its first job at once: the priority one
    assert wait_until(lambda: fake.starts(cfg(2)) == 1) and fake.starts(cfg(1)) == 0
    views = {v.config: v for v in second.views() if v.state.active}
    assert views[cfg(2)].priority and views[cfg(1)].position == 1
    assert (views[cfg(1)].owner, views[cfg(1)].guess) == ("Ann 🦊", 0.03)
    assert second.job_of(ANN) == second.job_of(BOB) == views[cfg(1)].id
    assert second.job_of(CY) == views[cfg(2)].id


def test_a_crafted_queue_file_is_read_back_bounded(managers, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir(parents=True)
    waiters = [
        {"session": "d" * 32, "name": "<script>x</script>" + "y" * 10_000, "guess": "nan"},
        {"session": "../../etc/passwd", "name": "Mallory", "guess": 0.1},  # not a session id: dropped
        {"session": "e" * 32, "name": ["not", "text"], "guess": -3},
        "not a waiter",
    ]
    entry = {
        "owner": "0123456789abcdef",
        "config": cfg(5).to_dict(),
        "state": "queued",
        "fresh": False,
        "queued_at": 1.0,
        "waiters": waiters,
        "priority": "yes",  # not True: no priority
    }
    (root / NAME).write_text(json.dumps({"format": "convae-queue", "version": 1, "jobs": [entry]}))
    mgr = managers()
    (view,) = [v for v in mgr.views() if v.config == cfg(5)]
    assert view.owner == ("<script>x</script>" + "y" * 40)[:MAX_NAME]
    assert view.guess is None and not view.priority
    assert mgr.job_of("d" * 32) == mgr.job_of("e" * 32) == view.id
    assert mgr.job_of("../../etc/passwd") is None
    assert mgr.notices() == []  # nothing was wrong enough to drop the entry
