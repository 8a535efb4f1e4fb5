"""Who is at this browser: a session id, the optional name and guess typed in the sidebar, and asking for
a training on their behalf (one queued or running training per session: convae.job_line).

A name is untrusted: it is bounded (convae.student.clean_name) and shown only as plain text (st.text,
table cells, chart hovers that escape it), never inside Markdown or HTML.
"""

from __future__ import annotations

import re
import time
import uuid

import streamlit as st

from convae.jobs import JobRefusedError, Submission
from convae.student import MAX_NAME, clean_name, parse_guess
from convae.train import TrainConfig
from ui.services import services
from ui.state import epochs_text

SESSION_KEY = "_session_id"
NAME_KEY = "student_name"
GUESS_KEY = "guess"
GUESSES_KEY = "_guesses"  # {job id: the guess this session made for it}
NOTICE_KEY = "_train_notice"  # (kind, text, time) of the last Train click's outcome
NOTICE_S = 30.0  # how long that outcome stays under the Train button
MAX_KEPT_GUESSES = 20
_SESSION = re.compile(r"[0-9a-f]{32}")


def session_id() -> str:
    """This browser session's id: a random uuid kept in its session state."""
    sid = st.session_state.get(SESSION_KEY)
    if not isinstance(sid, str) or not _SESSION.fullmatch(sid):
        sid = st.session_state[SESSION_KEY] = uuid.uuid4().hex
    return sid


def student_name() -> str | None:
    """The name typed in the sidebar, bounded (None when there is none)."""
    return clean_name(st.session_state.get(NAME_KEY))


def student_guess() -> tuple[float | None, str | None]:
    """The guess typed in the sidebar: (the number or None, None), or (None, what is wrong with it)."""
    text = st.session_state.get(GUESS_KEY)
    try:
        return parse_guess(text if isinstance(text, str) else None), None
    except ValueError as e:
        return None, str(e)


def inputs() -> None:
    """The sidebar's name and guess boxes (above Train), and what is wrong with the guess, if anything."""
    st.text_input(
        "Your name (optional)",
        key=NAME_KEY,
        max_chars=MAX_NAME,
        placeholder="shown with the runs you train",
        help=f"Stored with every run you start and shown on the class board and the lists of runs, as typed "
        f"(at most {MAX_NAME} characters).",
    )
    st.text_input(
        "Your guess: the final validation MSE (optional)",
        key=GUESS_KEY,
        max_chars=24,
        placeholder="e.g. 0.02",
        help="Predict, then reveal: guess the validation MSE this configuration will reach before you press "
        "Train. The Train page shows your guess against the result, and the class board all guesses.",
    )
    _, problem = student_guess()
    if problem:
        st.warning(problem, icon=":material/error:")


def short(config: TrainConfig) -> str:
    return f"Q1={config.q1}, Q2={config.q2}, K={config.k} ({epochs_text(config.epochs)}, seed {config.seed})"


def request_training(config: TrainConfig, fresh: bool = False, priority: bool = False) -> str | None:
    """Ask for a training of `config` for this session, with its name and guess: the job's id, or None
    after leaving a notice that says why not (a guess that is not a number, a training of its own running)."""
    guess, problem = student_guess()
    if problem:
        notice("error", f"{problem} Correct it or clear it, then press Train again.")
        return None
    try:
        sub = services().jobs.request(
            config, fresh, session=session_id(), owner=student_name(), guess=guess, priority=priority
        )
    except JobRefusedError as e:
        notice("warning", str(e))
        return None
    if sub.replaced:
        notice("info", replaced_text(sub, config))
    else:
        st.session_state.pop(NOTICE_KEY, None)
    kept = dict(list(st.session_state.get(GUESSES_KEY, {}).items())[-MAX_KEPT_GUESSES + 1 :])
    st.session_state[GUESSES_KEY] = {**kept, sub.job_id: guess}
    return sub.job_id


def replaced_text(sub: Submission, config: TrainConfig) -> str:
    text = f"Your queued run of {short(sub.replaced)} was replaced by {short(config)}."
    if sub.replaced_kept:
        text += " It stays in the queue for the others who asked for it."
    return text


def my_guess(job_id: str) -> float | None:
    """What this session guessed when it asked for the job (None: no guess, or another session's job)."""
    return st.session_state.get(GUESSES_KEY, {}).get(job_id)


def notice(kind: str, text: str) -> None:
    st.session_state[NOTICE_KEY] = (kind, text, time.time())


def train_notice() -> None:
    """Under the Train button: what the last click did, when it was not simply queued (for NOTICE_S seconds)."""
    kept = st.session_state.get(NOTICE_KEY)
    if not kept or time.time() - kept[2] > NOTICE_S:
        st.session_state.pop(NOTICE_KEY, None)
        return
    kind, text, _ = kept
    icons = {"error": ":material/error:", "warning": ":material/block:", "info": ":material/swap_horiz:"}
    getattr(st, kind)(text, icon=icons[kind])
