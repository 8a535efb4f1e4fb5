"""Guards against races in Streamlit's sessions that left a follower's page blank on a busy server.

A script run's messages (its elements, then "script finished") go from the run's thread to the server's
event loop, which sends them to the browser. When the loop is busy (a class of 30 on two cores), a
browser's fragment timer (the live chart, "Follow the teacher") can ask for a rerun after the run has
ended but before the loop has sent its last messages. Streamlit (1.67) then starts a new ScriptRunner
for the fragment and drops every event still queued from the old one (`AppSession.
_handle_scriptrunner_event_on_event_loop`: "Ignoring event from non-current ScriptRunner"). A full rerun
would draw the page again; a fragment's run does not, so the browser keeps a page whose last elements
never came: a follower's main area stayed blank after the teacher moved, and the run never ended in the
browser.

`install()` lets those queued events of the finished run through, in their order, before the new run's:
the old run had ended (that is why Streamlit started a new one), so all of its events were queued before
the new runner's first. That includes the run's start when the loop had not taken it yet: a run of a few
milliseconds (a click on a quiet page) can end before the loop sends its start, and without it the whole
run was dropped, so the click never showed (found when the server began to wake followers, ui.push).
Only a fragment's rerun is concerned; a full rerun still drops them (it redraws everything). Nothing
changes when the race does not happen. If Streamlit's internals differ from what this expects, nothing is
installed and the server logs why.

A second race, on a page switch made by the server (a follow-me move): the browser names its page in every
request, and a fragment's timer that fires before the browser has heard of the move names the old page.
Streamlit runs the fragment "on" that old page and tells the browser so, and the browser drops the new
page's elements: a blank main area under a sidebar that did follow (seen with real tabs in a class of 30).
`install()` looks at each fragment's run as it starts (so that it also sees a request queued behind the
run that made the move): a click in a fragment that names a page the session has left runs on the page
of the last full run (`record_page`) when the server chose that page; a timer's tick is not run at all
(below).

A third race is in the browser (Streamlit 1.67's front end, `handleNewSession`). A run's start message
compares its page with the page in the front end's state and clears the page's elements when they
differ; that state is updated asynchronously, so when a busy browser takes a page-changing run and a
fragment's run in one bunch, the fragment's start still sees the old page and clears the new one. Seen in
the load test's message logs of tabs that missed a move (docs/reliability.md): the fragment's runs right
after the move were the timer's ticks sent before it, from the old page. `install()` does not run those.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
from typing import Any

from streamlit.runtime.app_session import AppSession
from streamlit.runtime.scriptrunner import ScriptRunner, ScriptRunnerEvent, get_script_run_ctx
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData

_log = logging.getLogger("convae")
_DELIVERED = {
    ScriptRunnerEvent.SCRIPT_STARTED,
    ScriptRunnerEvent.ENQUEUE_FORWARD_MSG,
    ScriptRunnerEvent.SCRIPT_STOPPED_WITH_SUCCESS,
    ScriptRunnerEvent.SCRIPT_STOPPED_WITH_COMPILE_ERROR,
    ScriptRunnerEvent.SCRIPT_STOPPED_FOR_RERUN,
    ScriptRunnerEvent.FRAGMENT_STOPPED_WITH_SUCCESS,
}
_ATTR = "_convae_finished_runner"  # on an AppSession: the finished runner whose events still go out
PAGE_KEY = "_page_hash_drawn"  # in session state: the page of the session's last full run
LEFT_KEY = "_pages_left"  # and the pages it drew before that one, the latest last (at most 8)
# Per session id: the page its browser named in its last full-run request (the newest MAX_SESSIONS sessions).
_asked_page: collections.OrderedDict[str, str] = collections.OrderedDict()
MAX_SESSIONS = 2000
_lock = threading.Lock()
stats = {"runs": 0, "events": 0, "pages": 0}  # runs let through, their events, fragment reruns sent to the page


def record_page(session_state) -> None:
    """In each full run, after the navigation chose the page: remember it for the fragments' reruns."""
    ctx = get_script_run_ctx()
    page = ctx.page_script_hash if ctx is not None else ""
    if not page or page == session_state.get(PAGE_KEY):
        return
    left = [p for p in session_state.get(LEFT_KEY) or [] if p != page]
    if session_state.get(PAGE_KEY):
        left.append(session_state[PAGE_KEY])
    session_state[LEFT_KEY] = left[-8:]
    session_state[PAGE_KEY] = page
    with _lock:
        if _asked_page.get(ctx.session_id) != page:  # the server moved it here: the browser did not ask
            _asked_page[ctx.session_id] = ""


def note_request(session: Any, client_state: Any) -> None:
    """On each request of a browser: the page it names when it asks for a full run (a click, a page link),
    so that a page it chose itself is told from one the server moved it to."""
    if client_state is not None and not client_state.fragment_id:
        with _lock:
            _asked_page[getattr(session, "id", "")] = client_state.page_script_hash
            _asked_page.move_to_end(getattr(session, "id", ""))
            while len(_asked_page) > MAX_SESSIONS:
                _asked_page.popitem(last=False)


def on_drawn_page(runner: Any, rerun_data: RerunData) -> RerunData | None:
    """A fragment's run that names a page the session has left (the browser has not yet shown the page
    drawn since). A timer's tick is not run at all (None): its start would reach a busy browser together
    with the page change and clear the new page (the third race above); the next tick, sent once the browser
    has the new page, runs. Another rerun (a click in a fragment) runs on the page drawn when the server
    chose that page (a follow-me move). Otherwise the run is left as it is."""
    if not rerun_data.fragment_id_queue or not rerun_data.page_script_hash:
        return rerun_data
    try:
        state = runner._session_state
        drawn, left = state[PAGE_KEY], state[LEFT_KEY]
    except (KeyError, AttributeError):
        return rerun_data
    named = rerun_data.page_script_hash
    if not isinstance(drawn, str) or not drawn or named == drawn or named not in (left or []):
        return rerun_data
    stats["pages"] += 1
    if rerun_data.is_auto_rerun:
        _log.info("a fragment's timer named a page the session had left; not run (%d)", stats["pages"])
        return None
    if drawn == _asked_page.get(getattr(runner, "_session_id", "")):
        return rerun_data  # the browser went there itself: its click is its own
    _log.info("a fragment's rerun named a page the session had left; run on the page drawn (%d)", stats["pages"])
    return dataclasses.replace(rerun_data, page_script_hash=drawn, page_name="")


def install() -> bool:
    """Patch AppSession once per process; True when the guard is in place."""
    with _lock:
        if getattr(AppSession, "_convae_delivery", False):
            return True
        request = getattr(AppSession, "request_rerun", None)
        handle = getattr(AppSession, "_handle_scriptrunner_event_on_event_loop", None)
        run_script = getattr(ScriptRunner, "_run_script", None)
        if request is None or handle is None or run_script is None:
            _log.warning("Streamlit's AppSession or ScriptRunner has changed: the guards of ui.delivery are off")
            return False

        def request_rerun(self: Any, client_state: Any) -> None:
            old = getattr(self, "_scriptrunner", None)
            note_request(self, client_state)
            request(self, client_state)
            fragment = getattr(client_state, "fragment_id", "") if client_state is not None else ""
            if fragment and old is not None and getattr(self, "_scriptrunner", None) is not old:
                setattr(self, _ATTR, old)  # the old runner had ended; its queued events are still to come
                self._convae_finished_ended = False  # none of its runs' ends let through yet

        def handle_event(self: Any, sender: Any, event: Any, *args: Any, **kwargs: Any) -> None:
            finished = getattr(self, _ATTR, None)
            if sender is None or sender is not finished or sender is getattr(self, "_scriptrunner", None):
                return handle(self, sender, event, *args, **kwargs)
            started = event == ScriptRunnerEvent.SCRIPT_STARTED
            if event == ScriptRunnerEvent.SHUTDOWN or (started and getattr(self, "_convae_finished_ended", True)):
                # Its last event, or the start of a run after the one that ended (dropped, as Streamlit
                # does): nothing after it is let through, so the browser never gets the end of a run
                # whose start it did not get. The start of the run that ended goes through: a run that
                # took a few milliseconds can end before the loop has taken its start, and without its
                # start the browser would get nothing of that run (a click that never showed).
                setattr(self, _ATTR, None)
                return None
            if event not in _DELIVERED:
                return handle(self, sender, event, *args, **kwargs)  # ignored, as Streamlit does
            current = self._scriptrunner
            self._scriptrunner = sender  # handled as the runner it was when it sent this
            try:
                handle(self, sender, event, *args, **kwargs)
            finally:
                self._scriptrunner = current
            stats["events"] += 1
            if event not in (ScriptRunnerEvent.ENQUEUE_FORWARD_MSG, ScriptRunnerEvent.SCRIPT_STARTED):
                self._convae_finished_ended = True
                stats["runs"] += 1
                _log.info("a finished run's last messages were sent after a fragment's rerun began (%d)", stats["runs"])
            return None

        def run_on_drawn_page(self: Any, rerun_data: RerunData) -> None:
            moved = on_drawn_page(self, rerun_data)
            return None if moved is None else run_script(self, moved)

        batch_events()
        ScriptRunner._run_script = run_on_drawn_page  # type: ignore[method-assign]
        AppSession.request_rerun = request_rerun  # type: ignore[method-assign]
        AppSession._handle_scriptrunner_event_on_event_loop = handle_event  # type: ignore[method-assign]
        AppSession._convae_delivery = True  # type: ignore[attr-defined]
        return True


def batch_events() -> bool:
    """Hand a session's script events to the event loop in batches: one wake-up of the loop for all the
    events queued since its last one, instead of one per element (each wakes the loop through its
    self-pipe, a system call that lets go of the interpreter and, on a busy server, waits to get it
    back). The events keep their order; each is handled as before. Off with CONVAE_BATCH_EVENTS=0."""
    if os.environ.get("CONVAE_BATCH_EVENTS", "1") == "0":
        return False
    call_soon = getattr(AppSession, "_call_soon_on_event_loop", None)
    if call_soon is None:
        _log.warning("Streamlit's AppSession has changed: a run's messages wake the event loop one by one")
        return False

    def drain(self: Any) -> None:
        pending, lock = self._convae_pending
        while True:
            with lock:
                if not pending:
                    self._convae_scheduled = False
                    return
                callback = pending.popleft()
            try:
                callback()
            except Exception:  # as the loop itself would: logged, and the next events still go out
                _log.exception("a script event could not be handled")

    def batched(self: Any, callback: Any) -> None:
        if "_convae_pending" not in self.__dict__:
            with _lock:
                self.__dict__.setdefault("_convae_pending", (collections.deque(), threading.Lock()))
        pending, lock = self._convae_pending
        with lock:
            pending.append(callback)
            if getattr(self, "_convae_scheduled", False):
                return  # the loop will take it with the others
            self._convae_scheduled = True
        try:
            call_soon(self, lambda: drain(self))
        except BaseException:
            with lock:
                self._convae_scheduled = False
            raise

    AppSession._call_soon_on_event_loop = batched  # type: ignore[method-assign]
    return True
