"""A Streamlit session without a browser: Streamlit's own websocket protocol, for load tests.

`Session` connects to `/_stcore/stream` and talks to the server with the messages the installed
`streamlit.proto` defines, the way the browser's front end does, as far as the server can tell:

- the first `rerun_script` carries the address's query string and page (its URL path);
- every later rerun carries the widget states the tab holds (the values it set, and the values the
  server pushed with `set_value`), a click is a one-off `trigger_value`, a page switch names the
  page's `page_script_hash` (from the `navigation` message) and keeps only the sidebar's widgets;
- the deltas build a tree of the page's elements, with the front end's cleanup of stale elements and
  widgets at the end of each run, so `widgets()` and `texts()` show what a tab would show;
- `st.fragment(run_every=...)`: an `auto_rerun` message starts a timer that sends `rerun_script`
  with the fragment's id on that interval (`is_auto_rerun`), until a full run, a page switch or a
  `stop_auto_rerun` message ends it, as the front end does;
- large elements come once and then by reference: the session keeps the messages the server marks
  cacheable and lists their hashes in each rerun (`cached_message_hashes`).

Each request is timed from the moment it is sent to the `script_finished` of the run that served it
(`Session.timings`). Streamlit 1.67 now and then never sends a run's `script_finished` (it drops the
events of a ScriptRunner it has replaced, see `_on_new_session`): the start of the next run then ends
it, and `Session.unreported` counts those. Not done: media files and static assets are not fetched over
HTTP (the browser would), and nothing is drawn. The websocket client is `websockets`, which Streamlit
itself depends on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pandas as pd
from streamlit import dataframe_util
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Checkbox_pb2 import Checkbox
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.NumberInput_pb2 import NumberInput
from streamlit.proto.Slider_pb2 import Slider
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.runtime.state.common import user_key_from_element_id
from websockets.asyncio.client import ClientConnection, connect

FINISHED = {
    ForwardMsg.FINISHED_SUCCESSFULLY: "finished",
    ForwardMsg.FINISHED_WITH_COMPILE_ERROR: "compile error",
    ForwardMsg.FINISHED_EARLY_FOR_RERUN: "replaced",
    ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY: "fragment finished",
}
TEXT_FIELDS = {  # element type -> the proto fields a person reads
    "markdown": ("body",),
    "text": ("body",),
    "alert": ("body",),
    "heading": ("body",),
    "exception": ("type", "message"),
    "progress": ("text",),
    "metric": ("label", "body"),
    "code": ("code_text",),
    "toast": ("body",),
}
MAX_MESSAGE_BYTES = 256 * 2**20  # the server's own limit is 200 MB (server.maxMessageSize)
SIDEBAR_ROOT = 1  # the first index of a delta path: 0 the main area, 1 the sidebar (RootContainer)


class ProtocolError(RuntimeError):
    """What the session was asked to do cannot be done (no such widget, page or value)."""


@dataclass
class Widget:
    """A widget as the tab shows it: `value` is None where the client cannot read its type."""

    id: str
    key: str | None
    type: str
    label: str
    value: Any
    disabled: bool
    fragment_id: str


@dataclass
class Timing:
    """One request and the run that served it."""

    what: str  # open | page | set | click | rerun | auto
    page: str  # the page the run drew
    seconds: float  # from sending the request to its run's script_finished
    fragment: bool = False
    reported: bool = True  # False: the server never sent that run's script_finished (see `Session.unreported`)


@dataclass
class _Node:
    element: Any  # an Element proto, or None for a block
    run_id: str
    fragment_id: str
    script_hash: str


@dataclass
class _Pending:
    what: str
    sent: float
    fragment_id: str = ""
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def __post_init__(self) -> None:
        # A timer's request has nobody waiting for it: its outcome is read here, so that asyncio does not
        # warn about an exception never retrieved when the connection ends.
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())


def widget_type(element: Any) -> str:
    """The element's type, with toggles and select sliders named apart from checkboxes and sliders."""
    kind = element.WhichOneof("type")
    if kind == "checkbox" and element.checkbox.type == Checkbox.StyleType.TOGGLE:
        return "toggle"
    if kind == "slider" and element.slider.type == Slider.Type.SELECT_SLIDER:
        return "select_slider"
    return kind


def _optional(p: Any, name: str) -> Any:
    """An optional proto field's value, or None where it is not set."""
    return getattr(p, name) if p.HasField(name) else None


def decode_value(kind: str, p: Any, state: WidgetState | None) -> Any:
    """The value a tab shows: its own widget state, else the value the server pushed (`set_value`, in the
    field the widget's marshalling fills), else the default; None where unset or for other types."""
    if kind in ("button", "download_button"):
        return False
    pushed = getattr(p, "set_value", False)
    if kind in ("checkbox", "toggle"):
        return state.bool_value if state else p.value if pushed else p.default
    if kind == "slider":
        values = list(state.double_array_value.data) if state else list(p.value if pushed else p.default)
        if p.data_type == Slider.DataType.INT:
            values = [int(v) for v in values]
        return values[0] if len(values) == 1 else values
    if kind == "select_slider":
        if state:
            labels = list(state.string_array_value.data)
        else:
            labels = list(p.raw_value) if pushed else [p.options[int(i)] for i in p.default]
        return labels[0] if len(labels) == 1 else labels
    if kind == "selectbox":
        if state:
            return state.string_value
        if pushed:
            return _optional(p, "raw_value")
        index = _optional(p, "default")
        return p.options[index] if index is not None and index < len(p.options) else None
    if kind == "number_input":
        if state:
            return state.int_value if state.HasField("int_value") else state.double_value
        value = _optional(p, "value") if pushed else _optional(p, "default")
        return int(value) if value is not None and p.data_type == NumberInput.DataType.INT else value
    if kind in ("text_input", "text_area"):
        return state.string_value if state else _optional(p, "value") if pushed else _optional(p, "default")
    if kind == "button_group":
        if state:
            return list(state.string_array_value.data)
        return list(p.raw_values) if pushed else [p.options[i].content for i in p.default]
    return None


def encode_value(kind: str, p: Any, widget_id: str, value: Any) -> WidgetState:
    """The widget state that sets `value` (labels for choices, as the front end sends them)."""
    ws = WidgetState(id=widget_id)
    if kind in ("checkbox", "toggle"):
        ws.bool_value = bool(value)
    elif kind == "slider":
        values = [float(v) for v in (value if isinstance(value, list | tuple) else [value])]
        if any(not p.min <= v <= p.max for v in values):  # a person cannot move a slider past its ends
            raise ProtocolError(f"{value!r} is outside {widget_id}'s range {p.min:g}-{p.max:g}")
        ws.double_array_value.data[:] = values
    elif kind in ("select_slider", "button_group"):
        labels = [str(v) for v in (value if isinstance(value, list | tuple) else [value])]
        options = list(p.options) if kind == "select_slider" else [o.content for o in p.options]
        if any(label not in options for label in labels):
            raise ProtocolError(f"{labels} is not among the options of {widget_id}: {options}")
        ws.string_array_value.data[:] = labels
    elif kind == "selectbox":
        if str(value) not in p.options and not p.accept_new_options:
            raise ProtocolError(f"{value!r} is not among the options of {widget_id}: {list(p.options)}")
        ws.string_value = str(value)
    elif kind == "number_input":
        if (p.has_min and float(value) < p.min) or (p.has_max and float(value) > p.max):
            raise ProtocolError(f"{value!r} is outside {widget_id}'s range")
        if p.data_type == NumberInput.DataType.INT:
            ws.int_value = int(value)
        else:
            ws.double_value = float(value)
    elif kind in ("text_input", "text_area"):
        ws.string_value = str(value)
    else:
        raise ProtocolError(f"setting a {kind} widget ({widget_id}) is not supported by this client")
    return ws


class Session:
    """One browser tab's worth of protocol: connect, set widgets, click, switch pages, wait.

    Use as `async with Session(url) as s:`, or `await s.connect()` and `await s.close()`."""

    def __init__(self, url: str, page: str = "", query: str = "", timeout_s: float = 60.0, timers: bool = True) -> None:
        """`timers=False`: the fragments' timers never fire (a tab whose only news comes from the server)."""
        self.url, self.first_page, self.query, self.timeout_s = url.rstrip("/"), page, query, timeout_s
        self.timers = timers
        self.pages: dict[str, str] = {}  # page title -> page_script_hash
        self._paths: dict[str, str] = {}  # the pages' URL paths -> page_script_hash
        self.page_hash = self.main_hash = ""
        self.timings: list[Timing] = []
        self.exceptions: list[str] = []  # exception elements the server sent
        self.sent = self.received = self.received_bytes = 0
        self._ws: ClientConnection | None = None
        self._nodes: dict[tuple[int, ...], _Node] = {}
        self._states: dict[str, WidgetState] = {}
        self._cache: dict[str, tuple[ForwardMsg, int]] = {}  # hash -> (message, run count when last seen)
        self._run_count, self._max_age = 0, 2
        self._run_id, self._run_fragments, self._open_run = "", (), ""  # the run that has not ended yet
        self.unreported = 0  # runs whose end the server never sent (see _on_new_session)
        self._starts: dict[str, tuple[float, tuple[str, ...]]] = {}  # run id -> (when it began here, fragments)
        self._timers: dict[str, tuple[float, asyncio.Task]] = {}
        self._pending: list[_Pending] = []
        self._changed = asyncio.Event()
        self._reader: asyncio.Task | None = None
        self._lifecycle: collections.deque[tuple[float, str]] = collections.deque(maxlen=200)  # for errors
        self.error: BaseException | None = None

    # ------------------------------------------------------------------------- connection
    async def __aenter__(self) -> Session:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> float:
        """Open the websocket and run the first page; the seconds from the request to its end."""
        ws_url = re.sub(r"^http", "ws", self.url) + "/_stcore/stream"
        self._ws = await connect(ws_url, subprotocols=["streamlit"], max_size=MAX_MESSAGE_BYTES, proxy=None)
        self._reader = asyncio.create_task(self._read(), name=f"st-client-read {id(self)}")
        return await self._request("open", page_name=self.first_page)

    async def close(self) -> None:
        """Stop the timers and close the websocket the way a closed tab does."""
        for _, task in self._timers.values():
            task.cancel()
        self._timers.clear()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    # --------------------------------------------------------------------------- actions
    async def set(self, key: str, value: Any) -> float:
        """Set a widget (by its key) as a person would, and wait for the rerun it causes."""
        w, element = self._find(key)
        if w.disabled:
            raise ProtocolError(f"the widget {key!r} is disabled")
        self._states[w.id] = encode_value(w.type, getattr(element, element.WhichOneof("type")), w.id, value)
        return await self._request("set", fragment_id=w.fragment_id, label=f"set {key}")

    async def click(self, key: str) -> float:
        """Press a button (by its key) and wait for the rerun it causes."""
        w, _ = self._find(key)
        if w.type not in ("button", "download_button"):
            raise ProtocolError(f"{key!r} is a {w.type}, not a button")
        if w.disabled:
            raise ProtocolError(f"the button {key!r} is disabled")
        return await self._request("click", fragment_id=w.fragment_id, trigger=w.id, label=f"click {key}")

    async def switch_page(self, page: str) -> float:
        """Open a page by its title or URL path, as the navigation does."""
        page_hash = self.pages.get(page) or self._paths.get(page)
        if page_hash is None:
            raise ProtocolError(f"no page {page!r}; the app has {sorted(self.pages)}")
        self._stop_timers()
        # The sidebar's widgets stay, as in a browser: those the main script draws, and those in the sidebar
        # (a fragment's, such as "Follow the teacher", whose deltas carry the page's script hash).
        kept = {
            _element_id(n.element)
            for path, n in self._nodes.items()
            if n.script_hash == self.main_hash or path[0] == SIDEBAR_ROOT
        }
        self._states = {i: s for i, s in self._states.items() if i in kept}
        # The address keeps only the parameters that widgets are bound to (`bind="query-params"`).
        bound = {_bound_param(n.element) for n in self._nodes.values()} - {None}
        self.query = urlencode([(k, v) for k, v in parse_qsl(self.query, keep_blank_values=True) if k in bound])
        return await self._request("page", page_hash=page_hash, label=f"open the page {page!r}")

    async def rerun(self) -> float:
        """Rerun the current page (the menu's Rerun)."""
        return await self._request("rerun")

    async def wait_for(self, predicate, timeout_s: float | None = None, what: str = "a condition") -> None:
        """Wait, while the fragments' timers run, until `predicate(session)` holds after a run."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while not predicate(self):
            self._raise_if_broken()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} did not happen within {timeout_s or self.timeout_s:.0f} s")
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(left, 1.0))

    # -------------------------------------------------------------------------- the view
    @property
    def page(self) -> str:
        """The title of the page the last full run drew."""
        return next((t for t, h in self.pages.items() if h == self.page_hash), self.page_hash)

    def widgets(self) -> list[Widget]:
        """Every widget on the tab now, in no particular order."""
        out = []
        for node in self._nodes.values():
            wid = _element_id(node.element)
            if not wid:
                continue
            kind = widget_type(node.element)
            p = getattr(node.element, node.element.WhichOneof("type"))
            value = decode_value(kind, p, self._states.get(wid))
            label = getattr(p, "label", "")
            out.append(
                Widget(
                    wid,
                    user_key_from_element_id(wid),
                    kind,
                    label,
                    value,
                    getattr(p, "disabled", False),
                    node.fragment_id,
                )
            )
        return out

    def widget(self, key: str) -> Widget | None:
        return next((w for w in self.widgets() if w.key == key), None)

    def texts(self) -> list[str]:
        """The text a person reads on the tab (Markdown, alerts, headings, captions, progress, metrics)."""
        out = []
        for path in sorted(self._nodes):
            e = self._nodes[path].element
            kind = e.WhichOneof("type") if e is not None else None
            if kind in TEXT_FIELDS:
                p = getattr(e, kind)
                out.append(" ".join(str(getattr(p, f)) for f in TEXT_FIELDS[kind] if getattr(p, f)))
        return out

    def has_text(self, pattern: str | re.Pattern) -> bool:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        return any(rx.search(t) for t in self.texts())

    def dataframes(self) -> list[pd.DataFrame]:
        """The tables on the tab (st.dataframe, st.table), decoded from their Arrow data."""
        out = []
        for path in sorted(self._nodes):
            e = self._nodes[path].element
            kind = e.WhichOneof("type") if e is not None else None
            if kind in ("dataframe", "table"):
                p = getattr(e, kind)
                data = p.arrow_data.data or (p.lazy_data.initial_chunk.data if p.HasField("lazy_data") else b"")
                if data:
                    out.append(dataframe_util.convert_arrow_bytes_to_pandas_df(data))
        return out

    @property
    def fragment_timers(self) -> dict[str, float]:
        """The fragments rerun on a timer now: id -> interval in seconds."""
        return {f: interval for f, (interval, _) in self._timers.items()}

    # ------------------------------------------------------------------------ requests
    def _find(self, key: str) -> tuple[Widget, Any]:
        for node in self._nodes.values():
            wid = _element_id(node.element)
            if wid and user_key_from_element_id(wid) == key:
                return next(w for w in self.widgets() if w.id == wid), node.element
        raise ProtocolError(f"no widget with key {key!r} on the page {self.page!r}")

    async def _request(
        self,
        what: str,
        fragment_id: str = "",
        trigger: str = "",
        page_hash: str = "",
        page_name: str = "",
        auto: bool = False,
        label: str = "",
    ) -> float:
        pending = await self._send(what, fragment_id, trigger, page_hash, page_name, auto)
        try:
            return await asyncio.wait_for(asyncio.shield(pending.done), self.timeout_s)
        except TimeoutError:
            self._raise_if_broken()
            where = f" (fragment {fragment_id[:6]})" if fragment_id else ""
            since = [f"+{t - pending.sent:.1f} s {text}" for t, text in self._lifecycle if t >= pending.sent]
            raise TimeoutError(
                f"{label or what}{where}: no script_finished within {self.timeout_s:.0f} s; the runs since: "
                + ("; ".join(since[:6] + ["..."] * (len(since) > 6)) or "none")
            ) from None

    async def _send(
        self,
        what: str,
        fragment_id: str = "",
        trigger: str = "",
        page_hash: str = "",
        page_name: str = "",
        auto: bool = False,
    ) -> _Pending:
        self._raise_if_broken()
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = self.query
        cs.page_script_hash = page_hash or self.page_hash
        cs.page_name = page_name if not cs.page_script_hash else ""
        cs.fragment_id = fragment_id
        cs.is_auto_rerun = auto
        cs.widget_states.widgets.extend(self._states.values())
        if trigger:
            cs.widget_states.widgets.append(WidgetState(id=trigger, trigger_value=True))
        cs.cached_message_hashes.extend(self._cache)
        cs.context_info.timezone, cs.context_info.locale = "UTC", "en-US"
        path = next((p for p, h in self._paths.items() if h == cs.page_script_hash), page_name)
        cs.context_info.url = f"{self.url}/{path}" + (f"?{self.query}" if self.query else "")
        pending = _Pending(what, time.perf_counter(), fragment_id)
        self._pending.append(pending)
        await self._ws.send(msg.SerializeToString())
        self.sent += 1
        return pending

    def _raise_if_broken(self) -> None:
        if self.error is not None:
            raise ConnectionError(f"the session's connection ended: {self.error!r}")

    # ------------------------------------------------------------------------ messages
    async def _read(self) -> None:
        try:
            async for data in self._ws:
                self.received += 1
                self.received_bytes += len(data)
                msg = ForwardMsg()
                msg.ParseFromString(data)
                self._handle(msg)
        except Exception as e:  # the connection ended or a message did not parse: every waiter hears it
            self.error = e
        else:
            self.error = ConnectionError("the server closed the connection")
        for p in self._pending:
            if not p.done.done():
                p.done.set_exception(ConnectionError(f"the session's connection ended: {self.error!r}"))
        self._wake()

    def _handle(self, msg: ForwardMsg) -> None:
        if msg.HasField("ref_hash"):  # a cached element, sent by reference
            cached, _ = self._cache.get(msg.ref_hash, (None, 0))
            if cached is None:
                raise ProtocolError(f"the server referred to a message this session does not hold: {msg.ref_hash}")
            self._cache[msg.ref_hash] = (cached, self._run_count)
            full = ForwardMsg()
            full.CopyFrom(cached)
            full.metadata.CopyFrom(msg.metadata)
            msg = full
        elif msg.metadata.cacheable and msg.hash:
            self._cache[msg.hash] = (msg, self._run_count)
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self._on_new_session(msg)
        elif kind == "delta":
            self._on_delta(msg)
        elif kind == "navigation":
            self.pages = {p.page_name: p.page_script_hash for p in msg.navigation.app_pages}
            self._paths = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
            self.page_hash = msg.navigation.page_script_hash or self.page_hash
        elif kind == "page_info_changed":  # the script changed the address (st.query_params)
            self.query = msg.page_info_changed.query_string
        elif kind == "auto_rerun":
            self._start_timer(msg.auto_rerun.fragment_id, msg.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            for f in msg.stop_auto_rerun.fragment_ids:
                self._stop_timers(f)
        elif kind == "script_finished":
            self._on_finished(msg)

    def _on_new_session(self, msg: ForwardMsg) -> None:
        ns = msg.new_session
        run = msg.metadata.run
        fragments = ",".join(f[:6] for f in run.fragment_ids)
        self._lifecycle.append(
            (time.perf_counter(), f"start {run.script_run_id[:6]}" + (f" ({fragments})" * bool(fragments)))
        )
        now = time.perf_counter()
        if self._open_run and run.fragment_ids:
            # The run before it never reported its end, yet the server has moved on to a fragment: it ended.
            # (Streamlit drops the events of a ScriptRunner that it has replaced; when a fragment's timer asks
            # for a rerun just as a run ends, the new ScriptRunner replaces the old one before its end is
            # sent.) A full run that begins instead may have stopped the old one: it serves the old requests.
            self.unreported += 1
            self._lifecycle.append((now, f"ended without script_finished {self._open_run[:6]}"))
            self._serve(self._open_run, "finished" if not self._run_fragments else "fragment finished", False)
        self._run_id, self._run_fragments = run.script_run_id, tuple(run.fragment_ids)
        self._open_run = self._run_id
        self._starts[self._run_id] = (now, self._run_fragments)
        if len(self._starts) > 64:
            self._starts.pop(next(iter(self._starts)))
        self._max_age = ns.config.max_cached_message_age or self._max_age
        if ns.main_script_hash:
            self.main_hash = ns.main_script_hash
        if self._run_fragments:
            return
        self._stop_timers()  # a full run: its fragments register their timers again
        if ns.page_script_hash:
            self.page_hash = ns.page_script_hash
        # A full run draws every fragment again, so the server drops the timers' pending fragment requests
        # (a full rerun trumps them): they are not timed.
        self._pending = [p for p in self._pending if not (p.what == "auto" and p.sent <= now)]

    def _on_delta(self, msg: ForwardMsg) -> None:
        delta, path = msg.delta, tuple(msg.metadata.delta_path)
        kind = delta.WhichOneof("type")
        if kind == "new_transient" or not path:
            return
        element = delta.new_element if kind == "new_element" else None
        if element is not None and element.WhichOneof("type") == "exception":
            self.exceptions.append(f"{element.exception.type}: {element.exception.message}")
        if element is not None:  # an element replaces whatever was there, children included
            for p in [p for p in self._nodes if p[: len(path)] == path and p != path]:
                del self._nodes[p]
        self._nodes[path] = _Node(element, self._run_id, delta.fragment_id, msg.metadata.active_script_hash)
        wid = _element_id(element)
        p = getattr(element, element.WhichOneof("type")) if wid else None
        if p is not None and getattr(p, "set_value", False):  # the server set the value: the tab takes it
            kind = widget_type(element)
            value = decode_value(kind, p, None)
            try:
                self._states[wid] = encode_value(kind, p, wid, value)
            except (ProtocolError, TypeError, ValueError):
                value = None
            if value is None:  # unset, or a type this client cannot read: the server keeps its own value
                self._states.pop(wid, None)

    def _on_finished(self, msg: ForwardMsg) -> None:
        status = FINISHED.get(msg.script_finished, "?")
        run_id = msg.metadata.run.script_run_id or self._run_id
        self._lifecycle.append((time.perf_counter(), f"{status} {run_id[:6]}"))
        if run_id == self._open_run:
            self._open_run = ""
        began, fragments = self._starts.get(run_id, (None, ()))
        if status in ("finished", "fragment finished") and run_id == self._run_id:
            fragments = set(fragments)
            stale = [
                p
                for p, n in self._nodes.items()
                if n.run_id != run_id and (not fragments or n.fragment_id in fragments)
            ]
            for p in stale:
                self._nodes.pop(p, None)
            orphans = [p for p in self._nodes if any(p[:i] not in self._nodes for i in range(2, len(p)))]
            for p in orphans:
                self._nodes.pop(p, None)
            active = {_element_id(n.element) for n in self._nodes.values() if n.element is not None}
            self._states = {i: s for i, s in self._states.items() if i in active}
            if status == "finished":
                self._run_count += 1
                self._cache = {h: (m, n) for h, (m, n) in self._cache.items() if self._run_count - n <= self._max_age}
        self._serve(run_id, status)
        self._wake()

    def _serve(self, run_id: str, status: str, reported: bool = True) -> None:
        """A run that ends serves the requests sent before it began here: a full run all of them, a fragment's
        run the requests for its fragments. A run replaced by another serves none (the other one does)."""
        began, fragments = self._starts.get(run_id, (None, ()))
        if status not in ("finished", "fragment finished", "compile error") or began is None:
            return
        now = time.perf_counter()
        for p in [p for p in self._pending if p.sent <= began and (not fragments or p.fragment_id in fragments)]:
            self._pending.remove(p)
            seconds = now - p.sent
            self.timings.append(Timing(p.what, self.page, seconds, bool(p.fragment_id), reported))
            if not p.done.done():
                p.done.set_result(seconds)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -------------------------------------------------------------------------- timers
    def _start_timer(self, fragment_id: str, interval: float) -> None:
        if not self.timers or not fragment_id or interval <= 0 or self._timers.get(fragment_id, (None,))[0] == interval:
            return
        self._stop_timers(fragment_id)

        async def tick() -> None:
            while True:
                await asyncio.sleep(interval)
                if self.error is None:
                    await self._send("auto", fragment_id=fragment_id, auto=True)

        self._timers[fragment_id] = (interval, asyncio.get_running_loop().create_task(tick()))

    def _stop_timers(self, fragment_id: str | None = None) -> None:
        for f in [f for f in self._timers if fragment_id is None or f == fragment_id]:
            self._timers.pop(f)[1].cancel()


def _element_id(element: Any) -> str:
    """A widget's id ("" for an element that is not a widget, or a block)."""
    if element is None:
        return ""
    kind = element.WhichOneof("type")
    p = getattr(element, kind) if kind else None
    return getattr(p, "id", "") if p is not None and "id" in p.DESCRIPTOR.fields_by_name else ""


def _bound_param(element: Any) -> str | None:
    """The address parameter a widget is bound to, if any."""
    kind = element.WhichOneof("type") if element is not None else None
    p = getattr(element, kind) if kind else None
    if p is None or "query_param_key" not in p.DESCRIPTOR.fields_by_name:
        return None
    return _optional(p, "query_param_key") or None
