"""The presenter: the teacher key, "follow me", pausing students' training (convae/presenter.py, and the
dashboard through AppTest, where two AppTest sessions share the server's presenter state as two tabs
do). In a real browser, with the 2 s promise timed: tests/test_browser_presenter.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from convae.presenter import MAX_KEY_CHARS, Presenter, View, next_view
from tests.test_app import DASHBOARD, RUN_TIMEOUT, assert_clean, texts
from ui.presenter import PAUSED, WRONG_KEY

KEY = "blue-giraffe-42"

# ------------------------------------------------------------------------------ the core


@pytest.mark.parametrize("key", [None, "", "   "])
def test_without_a_key_nothing_is_configured_and_nothing_matches(key: str | None) -> None:
    p = Presenter(key)
    assert not p.configured
    assert not p.check("")
    assert not p.check("   ")


def test_only_the_key_itself_matches() -> None:
    p = Presenter(KEY)
    assert p.configured
    assert p.check(KEY)
    assert p.check(f"  {KEY} ")  # pasted with spaces
    for wrong in ("", KEY[:-1], KEY + "x", KEY.upper(), "x" * len(KEY), KEY * 2, None, 42):
        assert not p.check(wrong), wrong
    assert not p.check(KEY + " " * MAX_KEY_CHARS)  # over-long input is not even compared


def test_the_key_never_shows_in_the_objects_text() -> None:
    p = Presenter(KEY)
    assert KEY not in repr(p) and KEY not in str(p)
    assert KEY not in repr(vars(p))


def test_from_env_reads_the_teacher_key() -> None:
    assert Presenter.from_env({"CONVAE_TEACHER_KEY": KEY}).check(KEY)
    assert not Presenter.from_env({}).configured


def test_follow_me_numbers_each_new_view_and_only_the_leader_publishes() -> None:
    p = Presenter(KEY)
    assert p.view() is None and not p.following
    assert p.publish("teacher", "mixtures", {}) is None  # nobody leads yet
    first = p.lead("teacher", "mixtures", {"pair": "1,5"})
    assert p.following and p.leads("teacher") and not p.leads("student")
    assert p.view() == first
    assert p.publish("teacher", "mixtures", {"pair": "1,5"}) == first  # unchanged: same number
    second = p.publish("teacher", "mixtures", {"pair": "2,5"})
    assert second.seq == first.seq + 1 and second.params == {"pair": "2,5"}
    assert p.publish("student", "latent", {}) is None and p.view() == second
    p.stop_leading("student")  # not the leader: nothing changes
    assert p.view() == second
    third = p.lead("projector", "walk", {})  # another presenter session takes over
    assert third.seq > second.seq and p.leads("projector") and not p.leads("teacher")
    assert p.publish("teacher", "latent", {}) is None
    p.stop_leading("projector")
    assert p.view() is None and not p.following


def test_a_follower_applies_each_view_once() -> None:
    view = View("mixtures", {"pair": "1,5"}, seq=3)
    assert next_view(None, None) is None
    assert next_view(view, None) is view  # never followed yet
    assert next_view(view, 3) is None  # already applied
    assert next_view(view, 2) is view


def test_pause_is_shared() -> None:
    p = Presenter(KEY)
    assert not p.paused
    p.set_paused(True)
    assert p.paused
    p.set_paused(False)
    assert not p.paused


def test_listeners_hear_each_change_a_follower_acts_on_and_nothing_else(caplog) -> None:
    p = Presenter(KEY)
    heard: list[tuple] = []
    p.subscribe(lambda: heard.append((p.view().seq if p.view() else None, p.paused)))

    def failing() -> None:
        raise RuntimeError("a listener's own trouble")

    p.subscribe(failing)
    first = p.lead("teacher", "mixtures", {"pair": "1,5"})
    p.publish("teacher", "mixtures", {"pair": "1,5"})  # unchanged
    p.publish("student", "latent", {})  # not the leader
    second = p.publish("teacher", "latent", {})
    p.set_paused(True)
    p.set_paused(True)  # unchanged
    p.stop_leading("student")  # not the leader
    p.stop_leading("teacher")
    assert heard == [(first.seq, False), (second.seq, False), (second.seq, True), (None, True)]
    assert p.paused and p.view() is None  # the failing listener undid nothing
    assert caplog.text.count("a presenter listener failed") == 4


def test_views_published_from_many_threads_get_distinct_increasing_numbers() -> None:
    p = Presenter(KEY)
    p.lead("teacher", "", {})
    seqs: list[int] = []
    lock = threading.Lock()

    def publish(worker: int) -> None:
        for i in range(200):
            view = p.publish("teacher", "mixtures", {"pair": f"{worker},{i % 10}"})
            with lock:
                seqs.append(view.seq)

    threads = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seqs) == 800
    assert p.view().seq == max(seqs)
    assert len(set(seqs)) >= 2  # changes were numbered; an unchanged view kept its number


# ------------------------------------------------------------------------------ the app


@pytest.fixture
def with_key(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ARG001
    monkeypatch.setenv("CONVAE_TEACHER_KEY", KEY)  # read when the cleared services are next created


def session(page: str | None = None) -> AppTest:
    at = AppTest.from_file(DASHBOARD, default_timeout=RUN_TIMEOUT)
    if page:
        at.switch_page(page)
    return at.run()


def presenter_session(page: str | None = None) -> AppTest:
    at = session(page)
    at.text_input(key="teacher_key_input").input(KEY).run()
    assert_clean(at)
    assert at.toggle(key="follow_me") is not None
    return at


def widget_keys(at: AppTest) -> set[str]:
    return {w.key for kind in ("text_input", "toggle", "checkbox", "button") for w in getattr(at, kind) if w.key}


@pytest.mark.usefixtures("app_env")  # no teacher key
def test_without_a_teacher_key_nothing_of_the_presenter_shows() -> None:
    at = session()
    assert_clean(at)
    keys = widget_keys(at)
    assert not keys & {"teacher_key_input", "follow_me", "pause_students", "presentation_mode", "follow_teacher"}
    assert not [e for e in at.sidebar.expander if e.label == "Teacher"]
    assert not at.sidebar.button(key="train_button").disabled
    assert not [c for c in texts(at.sidebar.caption) if "paused" in c]


@pytest.mark.usefixtures("with_key")
def test_a_wrong_key_gets_the_same_message_and_no_power() -> None:
    at = session()
    answers = []
    for wrong in (KEY[:-1], "x", KEY.upper(), "<b>" + KEY + "</b>"):
        at.text_input(key="teacher_key_input").input(wrong).run()
        assert_clean_but_the_key_message(at)
        answers.append(texts(at.sidebar.error))
        assert at.text_input(key="teacher_key_input").value == ""  # nothing of it stays on the page
        assert not widget_keys(at) & {"follow_me", "pause_students", "presentation_mode"}
    assert answers == [[WRONG_KEY]] * 4  # no hint how close it was
    at.text_input(key="teacher_key_input").input(KEY).run()
    assert_clean(at)
    assert {"follow_me", "pause_students", "presentation_mode"} <= widget_keys(at)


def assert_clean_but_the_key_message(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert texts(at.error) == [WRONG_KEY]


@pytest.mark.usefixtures("with_key")
def test_pause_disables_students_train_button_with_the_reason_but_not_the_presenters() -> None:
    teacher = presenter_session()
    student = session()
    assert not student.sidebar.button(key="train_button").disabled
    teacher.toggle(key="pause_students").set_value(True).run()
    assert_clean(teacher)
    student.run()
    assert_clean(student)
    button = student.sidebar.button(key="train_button")
    assert button.disabled and button.help == PAUSED
    assert any(PAUSED in c for c in texts(student.sidebar.caption))
    teacher.run()
    assert not teacher.sidebar.button(key="train_button").disabled
    teacher.toggle(key="pause_students").set_value(False).run()
    student.run()
    assert not student.sidebar.button(key="train_button").disabled


@pytest.mark.usefixtures("with_key", "shipped")
def test_students_follow_the_presenters_page_config_and_selection_and_can_leave() -> None:
    teacher = presenter_session("app_pages/mixtures.py")
    student = session()
    assert not [t for t in student.toggle if t.key == "follow_teacher"]  # nobody leads yet
    teacher.session_state["pair"] = (1, 5)
    teacher.run()
    teacher.toggle(key="follow_me").set_value(True).run()
    assert_clean(teacher)

    student.run()  # the follow fragment sees the view, the app reruns on the teacher's page
    assert_clean(student)
    assert student.toggle(key="follow_teacher").value is True
    assert texts(student.title) == ["Mixtures of classes (Figure 2)"]
    assert texts(student.subheader)[0] == "From 1 to 5"

    teacher.slider(key="alpha").set_value(0.8).run()
    student.run()
    assert student.slider(key="alpha").value == pytest.approx(0.8)
    teacher.slider(key="k").set_value(5).run()  # the model (configuration) too
    student.run()
    assert student.sidebar.slider(key="k").value == 5
    teacher.slider(key="k").set_value(10).run()
    student.run()
    assert texts(student.subheader)[0] == "From 1 to 5"

    student.toggle(key="follow_teacher").set_value(False).run()  # the student leaves
    teacher.session_state["pair"] = (2, 6)
    teacher.run()
    student.run()
    assert texts(student.subheader)[0] == "From 1 to 5"
    student.toggle(key="follow_teacher").set_value(True).run()  # and comes back
    student.run()
    assert texts(student.subheader)[0] == "From 2 to 6"

    teacher.toggle(key="follow_me").set_value(False).run()
    student.run()
    assert not [t for t in student.toggle if t.key == "follow_teacher"]


@pytest.mark.usefixtures("with_key", "shipped")
def test_a_view_fetched_just_before_the_student_stops_following_is_not_applied() -> None:
    """The follow poll can fetch a view in the same moment as the student turns following off; the run of
    that toggle must not move the student (nor the runs after it)."""
    from ui.presenter import hub

    teacher = presenter_session("app_pages/mixtures.py")
    teacher.session_state["pair"] = (1, 5)
    teacher.run()
    teacher.toggle(key="follow_me").set_value(True).run()
    student = session()
    student.run()
    assert texts(student.subheader)[0] == "From 1 to 5"
    teacher.session_state["pair"] = (2, 6)
    teacher.slider(key="k").set_value(5).run()
    student.session_state["_pending_view"] = hub().view()  # what the poll stored for the next run
    student.toggle(key="follow_teacher").set_value(False).run()
    assert_clean(student)
    assert texts(student.subheader)[0] == "From 1 to 5" and student.sidebar.slider(key="k").value == 10
    student.run()
    assert texts(student.subheader)[0] == "From 1 to 5" and student.sidebar.slider(key="k").value == 10


@pytest.fixture
def shipped(with_key) -> None:  # noqa: ARG001 (ordering: the environment first)
    from convae.store import SHIPPED_DIR, RunStore
    from convae.train import TrainConfig

    if RunStore(shipped=SHIPPED_DIR).get(TrainConfig()) is None:
        pytest.fail(f"No shipped model for the default config under {SHIPPED_DIR}; run `make seed`.")


@pytest.mark.usefixtures("with_key")
def test_presentation_mode_enlarges_the_type_for_the_presenter_only() -> None:
    teacher = presenter_session()
    assert not [m for m in teacher.markdown if "<style>" in m.value]
    teacher.toggle(key="presentation_mode").set_value(True).run()
    assert_clean(teacher)
    assert [m for m in teacher.markdown if "font-size" in m.value]
    student = session()
    assert not [m for m in student.markdown if "<style>" in m.value]


@pytest.mark.usefixtures("with_key")
def test_the_presenters_training_goes_to_the_front_of_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    import convae.engines as engines
    from ui.services import services

    real = engines.EagerSteps.step
    monkeypatch.setattr(engines.EagerSteps, "step", lambda self, step: (time.sleep(0.5), real(self, step))[1])
    small = {"q1": 4, "q2": 4, "epochs": 2}
    jobs = services().jobs
    ids = []
    try:
        for who, k in (("student", 2), ("student", 3), ("teacher", 4)):
            at = presenter_session() if who == "teacher" else session()
            for key, value in {**small, "k": k}.items():
                at.session_state[key] = value
            at.run()
            at.sidebar.button(key="train_button").click().run()
            assert_clean(at)
            ids.append(at.session_state["job_id"])
        first, queued, teachers = (jobs.snapshot(i) for i in ids)
        assert first.state.active and first.position in (None, 0)  # running
        assert teachers.position == 1 and queued.position == 2  # the teacher's went before the student's
    finally:
        for job_id in ids:
            jobs.cancel(job_id)
        for job_id in ids:
            jobs.wait(job_id, timeout=30)


@pytest.mark.usefixtures("with_key", "shipped")
def test_a_second_presenter_tab_that_does_not_lead_follows_the_one_that_does() -> None:
    laptop = presenter_session("app_pages/walk.py")
    projector = presenter_session()
    laptop.toggle(key="follow_me").set_value(True).run()
    projector.run()
    assert_clean(projector)
    assert texts(projector.title) == ["Walk the latent space"]
    assert projector.toggle(key="follow_me").value is False  # it follows; it does not lead
    laptop.run()
    assert not [t for t in laptop.toggle if t.key == "follow_teacher"]  # the leader follows nobody


def test_guessing_the_key_is_slowed_down(monkeypatch) -> None:
    from convae import presenter as core

    clock = [1000.0]
    monkeypatch.setattr(core.time, "monotonic", lambda: clock[0])
    p = core.Presenter("the right key")
    for n in range(core.MAX_WRONG):
        assert not p.check(f"guess {n}")
    assert not p.check("the right key")  # refused unread while the guesses are recent
    clock[0] += core.WRONG_WINDOW_S + 1
    assert p.check("the right key")
