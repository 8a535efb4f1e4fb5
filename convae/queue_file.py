"""The job queue on disk (`queue.json` in the runs folder), so that it outlives the server.

Every server (JobManager) writes its queued and running trainings there, in order, tagged with an
owner name of its own; it holds a claim on `.locks/server-<owner>.lock` while it lives. After a restart a
server adopts the entries of owners that are gone (their claim died with their process): queued
ones are queued again in their order, running ones come back as interrupted. Two live servers on one
folder each keep their own entries, so nothing is adopted twice. Writes are atomic and made under
a lock (`.locks/queue.lock`); the file is bounded and checked when read, and a damaged one is set aside.
An entry also keeps who waits for the training (browser session, name, guess: read back bounded, a bad
one dropped without losing the entry) and whether it is a priority job.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from convae.config import TrainConfig
from convae.files import Claim, is_claimed, write_atomic
from convae.student import Waiter, bounded_guess, clean_name

log = logging.getLogger("convae.jobs")

NAME = "queue.json"
LOCKS = ".locks"  # beside the configurations' lock files (convae.store.LOCKS)
FORMAT = "convae-queue"
VERSION = 1
MAX_BYTES = 256 * 1024  # some 600 entries; a class queues a few dozen at most
MAX_ENTRIES = 500
MAX_WAITERS = 16  # kept per entry: the first ones (the run's owner is the first who gave a name or a guess)
STATES = ("queued", "running")
_OWNER = re.compile(r"[0-9a-f]{8,32}")
_SESSION = re.compile(r"[0-9a-f]{0,64}")  # a browser session's id ("" for a caller without one)


@dataclass(frozen=True)
class Entry:
    """A training as the queue file lists it."""

    config: TrainConfig
    state: str  # "queued" or "running"
    fresh: bool  # start over, instead of resuming the configuration's kept epoch
    queued_at: float  # time.time() when it was asked for: the queue's order
    owner: str = ""  # the server that wrote it
    waiters: tuple[Waiter, ...] = ()  # who waits for it, in the order they asked
    priority: bool = False  # queued at the front (the presenter's)

    def to_dict(self) -> dict:
        return {
            "owner": self.owner,
            "config": self.config.to_dict(),
            "state": self.state,
            "fresh": self.fresh,
            "queued_at": self.queued_at,
            "waiters": [{"session": w.session, "name": w.name, "guess": w.guess} for w in self.waiters[:MAX_WAITERS]],
            "priority": self.priority,
        }


class QueueFile:
    """One server's view of the shared queue file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / NAME
        self.owner = uuid.uuid4().hex[:16]
        self.problems: list[str] = []  # what was wrong with the file when it was read, in words
        self._alive = Claim(root / LOCKS / f"server-{self.owner}.lock")
        if not self._alive.acquire(0):
            raise OSError(f"could not claim {self._alive.path}")

    def adopt(self) -> list[Entry]:
        """The entries of servers that are gone, oldest first; they are this server's from now on."""
        with self._locked():
            entries = self._read()
            gone = {e.owner for e in entries if e.owner != self.owner and not self._lives(e.owner)}
            adopted = sorted((e for e in entries if e.owner in gone), key=lambda e: e.queued_at)
            kept = [e for e in entries if e.owner not in gone]
            self._write(kept + [replace(e, owner=self.owner) for e in adopted if e.state == "queued"])
            for owner in gone:
                with Claim(self.root / LOCKS / f"server-{owner}.lock") as dead:
                    dead.acquire(0)  # then released: its lock file goes
        return adopted

    def write(self, entries: list[Entry]) -> None:
        """Replace this server's entries with `entries` (in order); other servers' stay as they are."""
        with self._locked():
            others = [e for e in self._read() if e.owner != self.owner]
            self._write(others + [replace(e, owner=self.owner) for e in entries])

    def close(self) -> None:
        """This server is going: its entries stay, for the next server to adopt."""
        self._alive.release()

    # ----------------------------------------------------------------------------- internal
    def _lives(self, owner: str) -> bool:
        return is_claimed(self.root / LOCKS / f"server-{owner}.lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        (self.root / LOCKS).mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCKS / "queue.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for a read and a write of a few kB
            yield
        finally:
            os.close(fd)

    def _write(self, entries: list[Entry]) -> None:
        entries = entries[:MAX_ENTRIES]
        while True:  # never a file that _read would set aside as too large: the last entries go first
            data = {"format": FORMAT, "version": VERSION, "jobs": [e.to_dict() for e in entries]}
            text = json.dumps(data, indent=1).encode()
            if len(text) <= MAX_BYTES or not entries:
                break
            log.warning("The queue file would exceed %d bytes: its last entries are not kept.", MAX_BYTES)
            entries = entries[: len(entries) * 3 // 4]
        write_atomic(self.path, text)

    def _read(self) -> list[Entry]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size > MAX_BYTES:
            return self._damaged(f"{size:,} bytes, more than a queue file holds ({MAX_BYTES:,})")
        try:
            data = json.loads(self.path.read_bytes())
        except (ValueError, RecursionError) as e:  # ValueError covers bad JSON and bad UTF-8
            return self._damaged(f"not JSON: {str(e)[:80]}")
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("jobs"), list):
            return self._damaged(f"not a queue file of this program (no '{FORMAT}' marker)")
        entries = []
        for item in data["jobs"][:MAX_ENTRIES]:
            try:
                entries.append(_entry(item))
            except (TypeError, ValueError, KeyError) as e:
                self._problem(f"An entry of the queue file {self.path} was skipped ({str(e)[:160]}).")
        return entries

    def _damaged(self, why: str) -> list[Entry]:
        aside = self.path.with_name(NAME + ".damaged")
        with contextlib.suppress(OSError):
            os.replace(self.path, aside)
        self._problem(
            f"The queue file {self.path} was damaged ({why}) and was ignored (kept as {aside.name}). The "
            "trainings queued in it were not restored; stored models and interrupted runs are not affected."
        )
        return []

    def _problem(self, text: str) -> None:
        log.warning(text)
        self.problems.append(text)


def _entry(item: object) -> Entry:
    """An entry read from the file, checked: anything malformed raises."""
    if not isinstance(item, dict) or not isinstance(item.get("config"), dict):
        raise TypeError("not an entry with a configuration")
    owner, state, fresh, queued_at = item.get("owner"), item.get("state"), item.get("fresh"), item.get("queued_at")
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner):
        raise ValueError("no valid owner")
    if state not in STATES or not isinstance(fresh, bool):
        raise ValueError(f"state {state!r} or start mark {fresh!r} malformed")
    if isinstance(queued_at, bool) or not isinstance(queued_at, (int, float)) or not math.isfinite(queued_at):
        raise ValueError("no time")
    priority = item.get("priority", False) is True
    config = TrainConfig.from_dict(item["config"])
    return Entry(config, state, fresh, float(queued_at), owner, _waiters(item.get("waiters")), priority)


def _waiters(items: object) -> tuple[Waiter, ...]:
    """Who waits for an entry, read back bounded: a malformed waiter is dropped, a bad name or guess left out."""
    if not isinstance(items, list):
        return ()
    waiters: dict[str, Waiter] = {}
    for item in items[:MAX_WAITERS]:
        session = item.get("session") if isinstance(item, dict) else None
        if isinstance(session, str) and _SESSION.fullmatch(session) and session not in waiters:
            waiters[session] = Waiter(session, clean_name(item.get("name")), bounded_guess(item.get("guess")))
    return tuple(waiters.values())
