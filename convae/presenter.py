"""The presenter of a class: who holds the teacher key, the view they lead the class to, and whether
students may train. One object per server process, shared by every session (so thread-safe).

A view is what a shareable address holds: a page and the address parameters (configuration and
selection) as text. Each new view the leader publishes gets the next sequence number; a following
session applies a view whose number it has not applied yet. Nothing here knows about Streamlit.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

KEY_ENV = "CONVAE_TEACHER_KEY"
MAX_KEY_CHARS = 200  # longer input is not compared at all: no key is this long
# Guessing: after this many wrong keys within WRONG_WINDOW_S (from all sessions together), every attempt is
# refused unread until the window has passed (the teacher too, for at most that long).
MAX_WRONG, WRONG_WINDOW_S = 20, 60.0


@dataclass(frozen=True)
class View:
    """A page (its address path, "" for the default page) and its address parameters, numbered."""

    page: str
    params: Mapping[str, str] = field(default_factory=dict)
    seq: int = 0


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "replace")).digest()


class Presenter:
    """The teacher key (kept only as a digest), the follow-me leader and view, and the student pause."""

    def __init__(self, key: str | None) -> None:
        key = (key or "").strip()
        self._digest = _digest(key) if key else None
        self._lock = threading.Lock()
        self._leader: str | None = None
        self._view: View | None = None
        self._seq = 0
        self._paused = False
        self._wrong: deque[float] = deque()  # when the recent wrong keys came
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        """`listener()` is called after every change a follower acts on (a new view, the end of "follow
        me", the pause switched), in the thread that made the change, outside the lock. A listener that
        fails is logged; the change stands."""
        with self._lock:
            self._listeners.append(listener)

    def _changed(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:  # the change is made; a listener's trouble must not undo it for the caller
                logging.getLogger("convae").exception("a presenter listener failed")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Presenter:
        """The teacher key given at server start (CONVAE_TEACHER_KEY); none configured if unset or empty."""
        return cls(environ.get(KEY_ENV))

    def __repr__(self) -> str:  # never shows the key, not even its digest
        return f"Presenter(configured={self.configured}, following={self.following}, paused={self.paused})"

    @property
    def configured(self) -> bool:
        """Whether the server was started with a teacher key; without one no session can lead."""
        return self._digest is not None

    def check(self, attempt: str) -> bool:
        """Whether `attempt` is the teacher key. Compares digests in constant time, so the time taken
        says nothing about how close a wrong key was; over-long input is refused unread, and so is every
        attempt after MAX_WRONG wrong ones within WRONG_WINDOW_S (guessing is slowed to that pace)."""
        if self._digest is None or not isinstance(attempt, str) or len(attempt) > MAX_KEY_CHARS:
            return False
        now = time.monotonic()
        with self._lock:
            while self._wrong and now - self._wrong[0] > WRONG_WINDOW_S:
                self._wrong.popleft()
            if len(self._wrong) >= MAX_WRONG:
                return False  # too many guesses lately: not compared at all
        right = hmac.compare_digest(_digest(attempt.strip()), self._digest)
        if not right:
            with self._lock:
                self._wrong.append(now)
        return right

    # ------------------------------------------------------------------------- follow me

    def lead(self, session: str, page: str, params: Mapping[str, str]) -> View:
        """`session` starts leading (taking over from any other leader) from the view given."""
        with self._lock:
            self._leader = session
            view = self._set_view(page, params, force=True)
        self._changed()
        return view

    def stop_leading(self, session: str) -> None:
        """The leader stops "follow me" (another session's call changes nothing)."""
        with self._lock:
            if self._leader != session:
                return
            self._leader, self._view = None, None
        self._changed()

    def publish(self, session: str, page: str, params: Mapping[str, str]) -> View | None:
        """The leader's current view; a new sequence number only if it changed. None (and nothing
        changes) for a session that is not leading."""
        with self._lock:
            if self._leader != session:
                return None
            seq = self._seq
            view = self._set_view(page, params, force=False)
        if view.seq != seq:
            self._changed()
        return view

    def _set_view(self, page: str, params: Mapping[str, str], force: bool) -> View:
        params = dict(params)
        view = self._view
        if force or view is None or view.page != page or dict(view.params) != params:
            self._seq += 1
            view = self._view = View(page, params, self._seq)
        return view

    def leads(self, session: str) -> bool:
        with self._lock:
            return self._leader is not None and self._leader == session

    @property
    def following(self) -> bool:
        """Whether "follow me" is on (a leader publishes its view)."""
        with self._lock:
            return self._leader is not None

    def view(self) -> View | None:
        """The view to follow, or None while nobody leads."""
        with self._lock:
            return self._view if self._leader is not None else None

    # ------------------------------------------------------------------------------ pause

    @property
    def paused(self) -> bool:
        """Whether training is paused for students (the presenter can still train)."""
        with self._lock:
            return self._paused

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            changed, self._paused = self._paused != bool(paused), bool(paused)
        if changed:
            self._changed()


def next_view(view: View | None, applied_seq: int | None) -> View | None:
    """The view a following session should apply now: one newer than the last it applied, else None."""
    if view is None or view.seq == applied_seq:
        return None
    return view
