"""Followers hear of the teacher's move at once, instead of at their next poll.

Each session that shows "Follow the teacher" runs that fragment on a timer in its browser, so a move
reached a follower only at its next tick, before its page even began to draw. When the presenter's view
or the pause changes (`convae.presenter.Presenter.subscribe`), `wake_followers` asks the server to run
every other such session's follow fragment now, as its timer would: the same request a browser sends
(the session's page, the fragment's id, no widget values, so nothing the student set changes and no
button fires again), handed to the server's event loop, where Streamlit takes a browser's requests. The
fragment then does what it does on a timer's tick. The timer stays, slower (ui.presenter.POLL_S): it is
what still moves a follower whose wake-up was missed.

This reaches into Streamlit's runtime (`Runtime._session_mgr`, `AppSession._client_state`, `_event_loop`
and `_scriptrunner`, a ScriptRunner's waiting request, the fragment's id in `ThreadState`). If those
differ from what is expected here, nothing is woken, the server's log says why once, and the followers
poll every second, as before.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from typing import Any

from streamlit import runtime
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequestType

try:  # where a running fragment's id is kept (Streamlit 1.67)
    from streamlit.runtime.scriptrunner_utils.script_run_context import ThreadState
except ImportError:
    ThreadState = None

_log = logging.getLogger("convae")
MAX_SESSIONS = 2000  # the newest sessions kept (a class is 30; old ids are dropped as sessions end)
_fragments: collections.OrderedDict[str, str] = collections.OrderedDict()  # session id -> follow fragment id
_lock = threading.Lock()
_warned: set[str] = set()


def working() -> bool:
    """False once a wake-up could not be made (the followers then poll faster, ui.presenter)."""
    return not _warned


def _warn_once(what: str, exc_info: bool = False) -> None:
    if what not in _warned:
        _warned.add(what)
        _log.warning("followers are not woken at once (%s): they follow at their timer's pace", what, exc_info=exc_info)


def _fragment_id() -> str | None:
    try:
        return ThreadState.get().fragment_id
    except AttributeError:  # no ThreadState, or not this shape
        _warn_once("Streamlit's fragment state has changed")
        return None


def register() -> None:
    """Inside the follow fragment: this session can be woken by running that fragment."""
    ctx = get_script_run_ctx()
    fragment = _fragment_id()
    if ctx is None or not fragment:
        return
    with _lock:
        _fragments[ctx.session_id] = fragment
        _fragments.move_to_end(ctx.session_id)
        while len(_fragments) > MAX_SESSIONS:
            _fragments.popitem(last=False)


def _rerun_fragment(session: Any, fragment: str) -> None:
    """On the event loop: what a browser's timer tick asks for, from what the session last heard.

    A browser's request that is still waiting for the running script must not be merged with this one:
    Streamlit merges two waiting requests into one that takes the newer one's page and widget values,
    and this one has none, so the student's click or page change would be lost. So when a request is
    waiting, this fragment joins it instead: added to the fragments it runs, or nothing at all when it
    reruns the whole page (which runs this fragment too)."""
    try:
        last = session._client_state
        if not last.page_script_hash:  # its first run has not ended: its own timer will do
            return
        if _joined_waiting_request(session, fragment):
            return
        request = ClientState(
            query_string=last.query_string,
            page_script_hash=last.page_script_hash,
            fragment_id=fragment,
            is_auto_rerun=True,
        )
        if last.HasField("context_info"):
            request.context_info.CopyFrom(last.context_info)
        session.request_rerun(request)
    except Exception as error:  # never an error in the event loop: the timer still moves the follower
        _warn_once(f"{type(error).__name__}: {error}", exc_info=True)


def _joined_waiting_request(session: Any, fragment: str) -> bool:
    """If a request waits for the session's running script: run `fragment` with it; True if one waits."""
    runner = session._scriptrunner
    if runner is None:
        return False
    requests = runner._requests
    with requests._lock:
        if requests._state != ScriptRequestType.RERUN:
            return False
        waiting = requests._rerun_data
        queue = list(waiting.fragment_id_queue)
        if queue and fragment not in queue:  # only fragments: this one too (a whole page runs it anyway)
            requests._rerun_data = dataclasses.replace(waiting, fragment_id_queue=[*queue, fragment])
        return True


def wake_followers() -> int:
    """Run the follow fragment of every session that has one, except the caller's; how many were woken."""
    if not runtime.exists():  # no server (a script, a test without one)
        return 0
    ctx = get_script_run_ctx()
    me = ctx.session_id if ctx is not None else None
    try:
        manager = runtime.get_instance()._session_mgr
    except AttributeError:
        _warn_once("Streamlit's runtime has changed")
        return 0
    with _lock:
        targets = [(sid, fragment) for sid, fragment in _fragments.items() if sid != me]
    woken = 0
    for sid, fragment in targets:
        try:
            info = manager.get_active_session_info(sid)
            if info is None:  # closed, or its browser is away for now: it polls again when back
                if manager.get_session_info(sid) is None:
                    with _lock:
                        _fragments.pop(sid, None)
                continue
            session = info.session
            session._event_loop.call_soon_threadsafe(_rerun_fragment, session, fragment)
        except (AttributeError, RuntimeError) as error:  # internals changed, or the loop is closing
            _warn_once(f"{type(error).__name__}: {error}")
            continue
        woken += 1
    return woken
