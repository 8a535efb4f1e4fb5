"""What a student adds to a run: a name and a guess of its final validation MSE, both bounded.

Both are untrusted: they come from a text box, a checkpoint file or the queue file. A name is cut to
MAX_NAME characters, stripped, with control and bidirectional-override characters removed and runs of
white space made one space; it is kept as plain characters (HTML, Markdown and emoji stay as typed) and
shown only as plain text. A guess is a finite number from 0 to MAX_GUESS (an MSE of pixels in [0, 1]).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

MAX_NAME = 40
MAX_GUESS = 1.0  # no MSE of pixels in [0, 1] is larger
MAX_TEXT = 400  # longer input is cut before it is looked at
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")  # could reorder the text around a name
_SPACE = re.compile(r"\s+")


def clean_name(value: object) -> str | None:
    """A name as it is kept and shown: at most MAX_NAME plain characters, or None for no name (an empty
    text, or anything that is not text)."""
    if not isinstance(value, str):
        return None
    text = _BIDI.sub("", value[:MAX_TEXT])
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cs", "Zl", "Zp") or c.isspace())
    text = _SPACE.sub(" ", text).strip()[:MAX_NAME].strip()
    return text or None


def check_guess(value: object) -> float | None:
    """`value` as a guess (None stays None); ValueError, saying what is allowed, for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"A guess is a number from 0 to {MAX_GUESS:g}, such as 0.02; got {type(value).__name__}.")
    if not math.isfinite(value):
        raise ValueError("A guess must be an ordinary number such as 0.02, not NaN or infinity.")
    if not 0 <= value <= MAX_GUESS:
        raise ValueError(
            f"A guess of the validation MSE lies from 0 to {MAX_GUESS:g} (pixels are in [0, 1]), such as 0.02; "
            f"got {value:g}."
        )
    return float(value)


def parse_guess(text: str | None) -> float | None:
    """A guess typed in a text box: None for an empty box; ValueError with a message a student can act on
    for text, a negative number, NaN, infinity or more than MAX_GUESS. A decimal comma is accepted."""
    if text is None or not text.strip():
        return None
    text = text.strip()[:MAX_TEXT]
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        raise ValueError("Your guess is not a number. Type the validation MSE you expect, such as 0.02.") from None
    return check_guess(value)


def bounded_guess(value: object) -> float | None:
    """A guess read from a file: the number if it is a valid guess, else None (a bad guess never costs a run)."""
    try:
        return check_guess(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Waiter:
    """A browser session waiting for a training: its id ("" for a caller without one), and the name and
    guess it gave (bounded by the caller: clean_name, check_guess)."""

    session: str
    name: str | None = None
    guess: float | None = None
