"""ui.delivery: a finished run's queued messages still reach the browser when a fragment's rerun starts
a new ScriptRunner before the event loop has sent them (the race is replayed here step by step)."""

from __future__ import annotations

import asyncio
import collections
import threading
from types import SimpleNamespace
from unittest import mock

import pytest
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime.app_session import AppSession, AppSessionState
from streamlit.runtime.scriptrunner import ScriptRunnerEvent
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData

from tests.test_app import open_page
from ui import delivery


class _Session(AppSession):
    def __del__(self) -> None:  # a bare test object: nothing of a real session to shut down
        pass


def _session(old: object, new: object) -> tuple[AppSession, list[ForwardMsg]]:
    """An AppSession with just what request_rerun and the event handler use; `old` has finished its run."""
    sent: list[ForwardMsg] = []
    session = object.__new__(_Session)
    session._event_loop = asyncio.get_running_loop()
    session._state = AppSessionState.APP_IS_RUNNING
    session._scriptrunner = old
    session._client_state = ClientState()
    session._fragment_storage = mock.Mock(contains=mock.Mock(return_value=True))
    session._local_sources_watcher = None
    session._run_on_save = False
    session._enqueue_forward_msg = sent.append

    def create(rerun_data: object) -> None:  # noqa: ARG001  (AppSession._create_scriptrunner's signature)
        session._scriptrunner = new

    session._create_scriptrunner = create
    return session, sent


def _delta(text: str) -> ForwardMsg:
    msg = ForwardMsg()
    msg.delta.new_element.markdown.body = text
    return msg


def _replay(fragment_id: str) -> tuple[AppSession, list[ForwardMsg], object]:
    """A run ends while its last element and its end are still queued; a rerun request comes first."""
    old = SimpleNamespace(request_rerun=mock.Mock(return_value=False), request_stop=mock.Mock())  # it has ended
    new = SimpleNamespace(request_rerun=mock.Mock(return_value=True))
    session, sent = _session(old, new)
    session.request_rerun(ClientState(fragment_id=fragment_id))
    assert session._scriptrunner is new
    handle = session._handle_scriptrunner_event_on_event_loop
    handle(old, ScriptRunnerEvent.ENQUEUE_FORWARD_MSG, forward_msg=_delta("the page's last element"))
    handle(old, ScriptRunnerEvent.SCRIPT_STOPPED_WITH_SUCCESS)
    handle(old, ScriptRunnerEvent.SCRIPT_STARTED, page_script_hash="p")  # a run the browser is not to see
    handle(old, ScriptRunnerEvent.ENQUEUE_FORWARD_MSG, forward_msg=_delta("after its end: not sent"))
    handle(old, ScriptRunnerEvent.SCRIPT_STOPPED_FOR_RERUN)  # that run's end: not sent either
    handle(old, ScriptRunnerEvent.SHUTDOWN)  # the old runner's last event must not touch the new runner
    return session, sent, new


def test_a_fragment_rerun_lets_the_finished_runs_messages_through() -> None:
    assert delivery.install() and delivery.install()  # once; a second call changes nothing

    async def main() -> None:
        session, sent, new = _replay("follow-fragment")
        bodies = [m.delta.new_element.markdown.body for m in sent if m.HasField("delta")]
        assert bodies == ["the page's last element"]
        assert [m.script_finished for m in sent if m.HasField("script_finished")] == [ForwardMsg.FINISHED_SUCCESSFULLY]
        assert session._scriptrunner is new and getattr(session, delivery._ATTR) is None

    asyncio.run(main())


def test_a_run_that_ended_before_the_loop_took_its_start_is_sent_whole() -> None:
    """A click's run of a few milliseconds ends before the loop has taken its start; a fragment's rerun (a
    timer's tick, or the server waking a follower) then starts a new runner. The click's run reaches the
    browser whole, start to end, before the fragment's (before, all of it was dropped: the click never
    showed and its request never ended)."""
    delivery.install()

    async def main() -> None:
        old = SimpleNamespace(request_rerun=mock.Mock(return_value=False), request_stop=mock.Mock())
        new = SimpleNamespace(request_rerun=mock.Mock(return_value=True))
        session, sent = _session(old, new)
        session._clear_queue = mock.Mock()
        session._create_new_session_message = lambda page, *_: ForwardMsg(new_session={"page_script_hash": page})
        session.request_rerun(ClientState(fragment_id="follow-fragment"))
        handle = session._handle_scriptrunner_event_on_event_loop
        handle(old, ScriptRunnerEvent.SCRIPT_STARTED, page_script_hash="p", run_descriptor=mock.Mock())
        handle(old, ScriptRunnerEvent.ENQUEUE_FORWARD_MSG, forward_msg=_delta("K = 21"))
        handle(old, ScriptRunnerEvent.SCRIPT_STOPPED_WITH_SUCCESS)
        handle(old, ScriptRunnerEvent.SCRIPT_STARTED, page_script_hash="p", run_descriptor=mock.Mock())  # not sent
        handle(old, ScriptRunnerEvent.SHUTDOWN)
        kinds = [m.WhichOneof("type") for m in sent if not m.HasField("session_status_changed")]
        assert kinds == ["new_session", "delta", "script_finished"]
        assert session._scriptrunner is new and getattr(session, delivery._ATTR) is None

    asyncio.run(main())


def test_a_full_rerun_still_drops_them_as_it_redraws_everything() -> None:
    delivery.install()

    async def main() -> None:
        session, sent, new = _replay("")
        assert not any(m.HasField("delta") or m.HasField("script_finished") for m in sent)
        assert session._scriptrunner is new

    asyncio.run(main())


def _fragment_run(page: str) -> RerunData:
    return RerunData(page_script_hash=page, fragment_id_queue=["follow"])


def test_a_fragment_that_names_a_page_left_runs_on_the_page_drawn_or_not_at_all(monkeypatch) -> None:
    """The server moved the session from page A to page B (a follow-me move); a fragment's request that
    still names A is from a browser that has not shown B yet."""
    state = {delivery.PAGE_KEY: "B", delivery.LEFT_KEY: ["Z", "A"]}
    runner = SimpleNamespace(_session_id="s1", _session_state=state)
    monkeypatch.setattr(delivery, "_asked_page", {"s1": ""})  # the server chose B
    click = delivery.on_drawn_page(runner, _fragment_run("A"))  # a click in the fragment: on page B
    assert click.page_script_hash == "B" and click.fragment_id_queue == ["follow"]
    tick = RerunData(page_script_hash="Z", fragment_id_queue=["follow"], is_auto_rerun=True)
    assert delivery.on_drawn_page(runner, tick) is None  # a timer's tick from a page left: not run
    assert delivery.on_drawn_page(runner, _fragment_run("B")).page_script_hash == "B"
    assert delivery.on_drawn_page(runner, _fragment_run("C")).page_script_hash == "C"  # not a page it left
    assert delivery.on_drawn_page(runner, RerunData(page_script_hash="A")).page_script_hash == "A"  # a full run
    delivery._asked_page["s1"] = "B"  # the browser asked for B itself: a click is its own
    assert delivery.on_drawn_page(runner, _fragment_run("A")).page_script_hash == "A"
    assert delivery.on_drawn_page(SimpleNamespace(_session_id="s2", _session_state={}), _fragment_run("A"))


def test_a_browsers_own_full_run_is_noted() -> None:
    session = SimpleNamespace(id="s3")
    delivery.note_request(session, ClientState(fragment_id="follow", page_script_hash="A"))
    assert "s3" not in delivery._asked_page
    delivery.note_request(session, ClientState(page_script_hash="A"))
    assert delivery._asked_page["s3"] == "A"


def test_the_pages_asked_for_are_kept_for_the_newest_sessions_only(monkeypatch) -> None:
    monkeypatch.setattr(delivery, "MAX_SESSIONS", 2)
    monkeypatch.setattr(delivery, "_asked_page", collections.OrderedDict())
    for sid in ("a", "b", "a", "c"):
        delivery.note_request(SimpleNamespace(id=sid), ClientState(page_script_hash="P"))
    assert list(delivery._asked_page) == ["a", "c"]  # "b" was the oldest request


@pytest.mark.usefixtures("app_env")
def test_each_full_run_records_its_page_and_the_one_left() -> None:
    at = open_page("dashboard.py")
    train = at.session_state[delivery.PAGE_KEY]
    assert train and at.session_state[delivery.LEFT_KEY] == []
    at.switch_page("app_pages/mixtures.py").run()
    assert at.session_state[delivery.LEFT_KEY] == [train]
    mixtures = at.session_state[delivery.PAGE_KEY]
    assert mixtures not in (train, None)
    at.switch_page("app_pages/train.py").run()
    assert at.session_state[delivery.LEFT_KEY] == [mixtures]  # each page once, the latest last


def test_script_events_reach_the_loop_in_order_with_fewer_wake_ups(monkeypatch) -> None:
    """Events sent from the script thread while the loop is busy are handled in one batch, in order,
    each as Streamlit would; an event that fails to be handled does not hold back the ones after it."""
    delivery.install()
    wakeups = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        real = loop.call_soon_threadsafe
        monkeypatch.setattr(loop, "call_soon_threadsafe", lambda cb, *a: wakeups.append(cb) or real(cb, *a))
        runner = object()
        session, sent = _session(runner, runner)
        handled = []

        def handle(_sender: object, _event: object, msg: ForwardMsg, *_rest: object) -> None:
            body = msg.delta.new_element.markdown.body
            if body == "bad":
                raise ValueError(body)
            handled.append(body)

        session._handle_scriptrunner_event_on_event_loop = handle

        def script_thread() -> None:  # a page run sending its elements while the loop is busy elsewhere
            for i in range(50):
                session._on_scriptrunner_event(runner, ScriptRunnerEvent.ENQUEUE_FORWARD_MSG, _delta(str(i)))
            session._on_scriptrunner_event(runner, ScriptRunnerEvent.ENQUEUE_FORWARD_MSG, _delta("bad"))
            session._on_scriptrunner_event(runner, ScriptRunnerEvent.ENQUEUE_FORWARD_MSG, _delta("after"))

        thread = threading.Thread(target=script_thread)
        thread.start()
        thread.join()  # the loop is held up meanwhile, as a busy server's is
        await asyncio.sleep(0.05)
        assert handled == [str(i) for i in range(50)] + ["after"]
        assert len(wakeups) == 1  # one wake-up of the loop for the 52 events, not one each

    with mock.patch.object(delivery._log, "exception") as logged:
        asyncio.run(main())
    logged.assert_called_once()
