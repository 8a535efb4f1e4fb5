"""ui.push: the server runs a follower's "Follow the teacher" fragment when the teacher moves.

The wake-up is a request like a browser's timer tick. Streamlit merges two requests waiting for a running
script into one that takes the newer one's page and widget values; a wake-up has none, so merging it into
a student's waiting click or page change would lose that (seen in the class load test: two trainers'
"set K" never ran). These tests use Streamlit's own request queue (`ScriptRequests`) and a stand-in for
the session around it. The end to end behaviour (followers moved with their timers off) is in
tests/test_classload.py.
"""

from __future__ import annotations

from types import SimpleNamespace

from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests, ScriptRequestType

from ui import push

FOLLOW = "follow-fragment-id"


class FakeSession:
    """The parts of an AppSession the wake-up uses; request_rerun hands the request to the runner's queue
    as AppSession.request_rerun does (and records it)."""

    def __init__(self, requests: ScriptRequests | None, page: str = "page-hash") -> None:
        self._client_state = ClientState(page_script_hash=page, query_string="k=4")
        self._scriptrunner = SimpleNamespace(_requests=requests) if requests is not None else None
        self.asked: list[ClientState] = []

    def request_rerun(self, client_state: ClientState) -> None:
        self.asked.append(client_state)
        if self._scriptrunner is not None:
            data = RerunData(
                page_script_hash=client_state.page_script_hash,
                widget_states=client_state.widget_states,
                fragment_id=client_state.fragment_id,
                is_auto_rerun=client_state.is_auto_rerun,
            )
            self._scriptrunner._requests.request_rerun(data)


def _student_request(page: str = "other-page", fragments: list[str] | None = None) -> RerunData:
    states = WidgetStates(widgets=[WidgetState(id="k-widget", int_value=5), WidgetState(id="go", trigger_value=True)])
    return RerunData(page_script_hash=page, widget_states=states, fragment_id_queue=list(fragments or []))


def test_a_waiting_page_change_with_widget_values_is_kept_whole() -> None:
    requests = ScriptRequests()
    requests.request_rerun(_student_request())  # waits while the script runs
    session = FakeSession(requests)
    push._rerun_fragment(session, FOLLOW)
    waiting = requests._rerun_data
    assert session.asked == []  # the whole page reruns anyway, the follow fragment with it
    assert waiting.page_script_hash == "other-page" and not waiting.fragment_id_queue
    assert {w.id for w in waiting.widget_states.widgets} == {"k-widget", "go"}
    assert not waiting.is_auto_rerun


def test_a_waiting_fragment_rerun_takes_the_follow_fragment_along() -> None:
    requests = ScriptRequests()
    requests.request_rerun(_student_request(page="page-hash", fragments=["live-chart"]))
    session = FakeSession(requests)
    push._rerun_fragment(session, FOLLOW)
    push._rerun_fragment(session, FOLLOW)  # twice: once in the queue
    waiting = requests._rerun_data
    assert session.asked == []
    assert waiting.fragment_id_queue == ["live-chart", FOLLOW]
    assert {w.id for w in waiting.widget_states.widgets} == {"k-widget", "go"}


def test_with_nothing_waiting_the_fragment_is_asked_for_like_a_timer_tick() -> None:
    for session in (FakeSession(None), FakeSession(ScriptRequests())):
        push._rerun_fragment(session, FOLLOW)
        (asked,) = session.asked
        assert asked.fragment_id == FOLLOW and asked.is_auto_rerun
        assert asked.page_script_hash == "page-hash" and asked.query_string == "k=4"
        assert len(asked.widget_states.widgets) == 0  # nothing the student set is sent again


def test_a_student_request_after_the_wake_up_keeps_its_own_values() -> None:
    requests = ScriptRequests()
    session = FakeSession(requests)
    push._rerun_fragment(session, FOLLOW)  # nothing waited: the wake-up waits now
    requests.request_rerun(_student_request())
    waiting = requests._rerun_data
    assert waiting.page_script_hash == "other-page" and not waiting.fragment_id_queue
    assert {w.id for w in waiting.widget_states.widgets} == {"k-widget", "go"}


def test_a_stopped_runner_or_a_session_before_its_first_run_gets_no_merge() -> None:
    requests = ScriptRequests()
    requests.request_stop()
    session = FakeSession(requests)
    push._rerun_fragment(session, FOLLOW)
    assert len(session.asked) == 1 and requests._state == ScriptRequestType.STOP  # a new runner will take it
    early = FakeSession(ScriptRequests(), page="")
    push._rerun_fragment(early, FOLLOW)
    assert early.asked == []  # no page known yet: its own timer will do


def test_without_a_server_nobody_is_woken() -> None:
    assert push.wake_followers() == 0
