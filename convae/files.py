"""Files that several processes may share: atomic writes, and claims held with `flock`.

A file is written to a temporary `.part` file beside it, flushed to disk, then renamed over the
target, so that a reader (or a crash) sees the old file or the new one, never half of one. A claim
is an exclusive `flock` on a lock file: the kernel drops it when its process ends, however it ends
(kill -9 included), so a claim left by a dead process never blocks anyone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
PART_SUFFIX = ".part"
CLAIM_WAIT_S = 2.0  # how long a claim retries while someone only looks at it (see is_claimed)


def write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write `data` to `path` through a temporary file beside it, fsync'ed, then renamed over it.

    On any error (a full disk: OSError from write or fsync) the temporary file is removed and the
    old `path`, if any, is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PART_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_parts(folder: Path, name: str, older_than_s: float = 0.0) -> list[Path]:
    """Remove the temporary files that write_atomic left for `name` in `folder` (a process killed in
    the middle of a write leaves one); only those older than `older_than_s`. Returns what went."""
    gone = []
    now = time.time()
    for part in folder.glob(f".{name}.*{PART_SUFFIX}"):
        with contextlib.suppress(OSError):
            if now - part.stat().st_mtime >= older_than_s:
                part.unlink()
                gone.append(part)
    return gone


class FileCache(Generic[T]):
    """Values made from files by `load(path)`, kept while a file's modification time and size are
    unchanged. Threads that ask at once for a file that changed wait for one load: a class that opens
    the same page at once would otherwise load it once per tab."""

    def __init__(self, load: Callable[[Path], T]) -> None:
        self.load = load
        self._lock = threading.Lock()
        self._values: dict[Path, tuple[tuple[int, int], T]] = {}
        self._loading: dict[Path, threading.Lock] = {}  # one per file

    def get(self, path: Path) -> T:
        """The value of the file as it is now; OSError when it cannot be looked at."""
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._values.get(path)
            loading = self._loading.setdefault(path, threading.Lock())
        if hit is None or hit[0] != stamp:
            with loading:
                with self._lock:
                    hit = self._values.get(path)
                if hit is None or hit[0] != stamp:  # nobody loaded it while this thread waited
                    hit = (stamp, self.load(path))
                    with self._lock:
                        self._values[path] = hit
        return hit[1]


class FolderListing:
    """The files whose names end with `suffix` in a folder and in its direct subfolders, sorted.

    A folder is read again only when its modification time changes, which making, removing or
    renaming an entry does (write_atomic renames), or while that time is less than RECENT_S old: a
    file system that keeps coarse times could otherwise hide a second change within the same tick.
    So a page that lists the runs on every run pays a stat per folder, not a read of every folder."""

    RECENT_S = 2.0

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self._lock = threading.Lock()
        self._dirs: dict[Path, tuple[int, list[Path], list[Path]]] = {}

    def files(self, folder: Path) -> list[Path]:
        """`<folder>/*<suffix>` and `<folder>/*/*<suffix>`, as Path.glob finds them (hidden names
        included); [] for a folder that is missing or unreadable."""
        direct, subdirs = self._entries(folder)
        found = list(direct)
        for sub in subdirs:
            found.extend(self._entries(sub)[0])
        return sorted(found)

    def _entries(self, folder: Path) -> tuple[list[Path], list[Path]]:
        try:
            stamp = os.stat(folder).st_mtime_ns
        except OSError:
            return [], []
        with self._lock:
            hit = self._dirs.get(folder)
        if hit is not None and hit[0] == stamp:
            return hit[1], hit[2]
        files, subdirs = [], []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.endswith(self.suffix):
                        files.append(Path(folder, entry.name))
                    with contextlib.suppress(OSError):
                        if entry.is_dir():  # follows links, as Path.glob does
                            subdirs.append(Path(folder, entry.name))
        except OSError:
            return [], []
        with self._lock:
            if time.time_ns() - stamp >= self.RECENT_S * 1e9:
                self._dirs[folder] = (stamp, files, subdirs)
            else:
                self._dirs.pop(folder, None)
        return files, subdirs


class Claim:
    """An exclusive claim on `path` (a lock file), across threads and processes.

    `acquire()` takes it (or says it cannot within CLAIM_WAIT_S); `release()` removes the lock file,
    then lets go. The lock file is checked to be the one on disk after locking, so a claim never
    holds a file that its previous holder removed in the meantime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait_s: float = CLAIM_WAIT_S) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_s
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(fd, self.path):
                    self._fd = fd
                    return True
            except BlockingIOError:
                pass
            os.close(fd)
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still locked: nobody can be holding this file after us
        os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:  # a claim dropped without release() must not hold its lock until the process ends
        with contextlib.suppress(Exception):  # at interpreter exit, modules may be gone already
            self.release()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_claimed(path: Path) -> bool:
    """True while a live claim holds `path` (a process that died holds nothing). Looks with a shared
    lock, taken for an instant, and creates nothing."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also lets go of the shared lock
    return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
