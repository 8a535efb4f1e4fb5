"""The class board: every stored run as one row, the runs that no other run beats on both size and
error (the Pareto front), the spread of the seeds of one configuration, and guesses against results.

Pure functions of the stored runs (convae.store.StoredRun); names are kept as the plain characters the
store read back (convae.student.clean_name), and neutralised only where a spreadsheet would run them.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from convae.config import TrainConfig
from convae.store import StoredRun
from convae.sweep import parameter_count


@dataclass(frozen=True)
class BoardRow:
    """One stored run as the board lists it."""

    key: str
    config: TrainConfig
    name: str | None
    parameters: int
    val_loss: float
    epochs: int  # finished epochs (fewer than config.epochs for a stopped run)
    minutes: float
    when: str  # "2025-01-31 14:05", or "shipped"
    guess: float | None
    complete: bool

    @property
    def family(self) -> str:
        """The configuration apart from its seed: runs of one family differ only by luck."""
        return replace(self.config, seed=0).key()


def rows(runs: Iterable[StoredRun]) -> list[BoardRow]:
    """The board's rows, in the order given (the store lists the newest first)."""
    return [
        BoardRow(
            key=r.config.key(),
            config=r.config,
            name=r.owner,
            parameters=parameter_count(r.config.q1, r.config.q2, r.config.k),
            val_loss=r.val_loss,
            epochs=len(r.history.epochs),
            minutes=r.seconds / 60,
            when="shipped" if r.shipped else r.created.replace("T", " ")[:16],
            guess=r.guess,
            complete=r.complete,
        )
        for r in runs
    ]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """The indices of the points that no other point beats on both coordinates (lower is better on both:
    as good on one and better on the other). Equal points are all on the front; non-finite ones never."""
    ok = [i for i, p in enumerate(points) if all(math.isfinite(v) for v in p)]
    front, best = [], math.inf
    # Sorted by the first coordinate, then the second: a point is beaten only by one before it.
    for i in sorted(ok, key=lambda i: points[i]):
        if points[i][1] < best or (front and points[i] == points[front[-1]]):
            front.append(i)
            best = min(best, points[i][1])
    return sorted(front)


def front_keys(board: Sequence[BoardRow]) -> set[str]:
    """The runs on the Pareto front of parameters against validation MSE, within each data set (the
    errors of two data sets do not compare)."""
    keys: set[str] = set()
    for dataset in {r.config.dataset for r in board}:
        mine = [r for r in board if r.config.dataset == dataset]
        keys |= {mine[i].key for i in pareto_front([(float(r.parameters), r.val_loss) for r in mine])}
    return keys


@dataclass(frozen=True)
class Spread:
    """The complete runs of one configuration with several seeds: how far luck moves the result."""

    family: str
    config: TrainConfig  # one of them (the others differ only in their seed)
    parameters: int
    seeds: tuple[int, ...]
    losses: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.losses)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.losses)

    @property
    def low(self) -> float:
        return min(self.losses)

    @property
    def high(self) -> float:
        return max(self.losses)


def spreads(board: Sequence[BoardRow]) -> list[Spread]:
    """One Spread per configuration with two or more complete runs (different seeds), largest spread first."""
    groups: dict[str, list[BoardRow]] = {}
    for r in board:
        if r.complete and math.isfinite(r.val_loss):
            groups.setdefault(r.family, []).append(r)
    out = [
        Spread(
            family,
            rs[0].config,
            rs[0].parameters,
            tuple(r.config.seed for r in rs),
            tuple(r.val_loss for r in rs),
        )
        for family, rs in groups.items()
        if len(rs) >= 2
    ]
    return sorted(out, key=lambda s: s.high - s.low, reverse=True)


@dataclass(frozen=True)
class Guess:
    """A run whose student guessed its validation MSE before training."""

    key: str
    name: str | None
    dataset: str
    guess: float
    result: float


def guesses(board: Sequence[BoardRow]) -> list[Guess]:
    """The runs with a guess (no guess, no entry)."""
    return [Guess(r.key, r.name, r.config.dataset, r.guess, r.val_loss) for r in board if r.guess is not None]


COLUMNS = (
    "name",
    "data set",
    "Q1",
    "Q2",
    "K",
    "epochs",
    "parameters",
    "validation MSE",
    "Pareto front",
    "guess",
    "minutes",
    "when",
    "seed",
)


def table(board: Sequence[BoardRow], front: set[str]) -> list[dict]:
    """The board as plain rows (COLUMNS), for a table or a CSV file."""
    return [
        dict(
            zip(
                COLUMNS,
                (
                    r.name or "",
                    r.config.dataset,
                    r.config.q1,
                    r.config.q2,
                    r.config.k,
                    f"{r.epochs}" if r.complete else f"{r.epochs} of {r.config.epochs}",  # one type: text
                    r.parameters,
                    r.val_loss,
                    r.key in front,
                    r.guess,
                    round(r.minutes, 2),
                    r.when,
                    r.config.seed,
                ),
                strict=True,
            )
        )
        for r in board
    ]


def csv_text(board: Sequence[BoardRow], front: set[str]) -> str:
    """The board as CSV. A name that starts like a spreadsheet formula (=, +, -, @) gets a leading
    apostrophe, so that opening the file never runs it; every other character is kept."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for row in table(board, front):
        if row["name"][:1] in ("=", "+", "-", "@", "\t", "\r"):
            row["name"] = "'" + row["name"]
        writer.writerow(row)
    return out.getvalue()


def folder_stamp(folders: Iterable[Path]) -> tuple:
    """What changes when a checkpoint is added, replaced or removed where RunStore.scan looks (<folder>/*.pt
    and <folder>/*/*.pt): the names, times and sizes of those files. Costs a directory listing, no reads."""
    stamp = []
    for folder in folders:
        pending = [folder]
        for depth in (0, 1):
            below = []
            for where in pending:
                try:
                    entries = list(os.scandir(where))
                except OSError:
                    continue
                for e in entries:
                    try:
                        if e.name.endswith(".pt") and e.is_file():
                            st = e.stat()
                            stamp.append((e.path, st.st_mtime_ns, st.st_size))
                        elif depth == 0 and e.is_dir() and not e.name.startswith("."):
                            below.append(e.path)
                    except OSError:
                        continue
            pending = below
    return tuple(sorted(stamp))
