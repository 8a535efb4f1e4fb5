"""The presenter in the dashboard: the teacher key, "follow me", pausing students' training and the
presentation mode. The shared state is `convae.presenter.Presenter`, one per server process.

Without a teacher key (CONVAE_TEACHER_KEY unset at server start) nothing here draws or changes anything.
A following student's fragment is run by the server at once when the presenter's view or the pause
changes (`ui.push`), and polls them every few seconds besides; a newer view is stored as pending and
the whole app reruns, so that the sidebar's configuration is set before its widgets draw.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from convae.presenter import MAX_KEY_CHARS, Presenter, View, next_view
from ui import push, share

WRONG_KEY = "That is not the teacher key. Students do not need one: the dashboard works the same without it."
PAUSED = "The teacher has paused training for students."
PAGE_DIR = Path(__file__).resolve().parent.parent / "app_pages"
DEFAULT_PAGE = "train"  # the navigation's default page, whose address path is ""
# Larger type for a projector. A constant: nothing from a user or the address ever goes in here.
PRESENTATION_CSS = """<style>
html { font-size: 20px; }
[data-testid="stMain"] h1 { font-size: 2.6rem; }
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
</style>"""


@st.cache_resource
def hub() -> Presenter:
    """The server's presenter state (the teacher key is read from the environment once, at first use).
    Its changes wake the followers at once (`ui.push`)."""
    presenter = Presenter.from_env()
    presenter.subscribe(push.wake_followers)
    return presenter


def _token() -> str:
    """This session's private name for the presenter's bookkeeping (never shown)."""
    if "_session_token" not in st.session_state:
        st.session_state["_session_token"] = secrets.token_hex(16)
    return st.session_state["_session_token"]


def is_presenter() -> bool:
    """Whether this session entered the teacher key (always False without one configured)."""
    return hub().configured and st.session_state.get("_presenter") is True


def students_paused() -> str | None:
    """Why this session may not train now (the teacher paused students), or None."""
    h = hub()
    return PAUSED if h.configured and h.paused and not is_presenter() else None


def train_priority() -> dict[str, bool]:
    """Keyword arguments for a training request (`JobManager.submit`): the presenter's jobs go to the
    front of the queue."""
    return {"priority": True} if is_presenter() else {}


# --------------------------------------------------------------------------- the sidebar


def _check_key() -> None:
    """The key input's callback: the same answer for every wrong key; the input is emptied either way."""
    attempt = st.session_state.get("teacher_key_input") or ""
    st.session_state["teacher_key_input"] = ""
    if not attempt:
        return
    if hub().check(attempt):
        st.session_state["_presenter"] = True
        st.session_state.pop("_key_message", None)
    else:
        st.session_state["_key_message"] = WRONG_KEY


def _on_follow_me(page: str) -> None:
    if st.session_state.get("follow_me"):
        hub().lead(_token(), page, share.view_params(page))
    else:
        hub().stop_leading(_token())


def _on_pause() -> None:
    hub().set_paused(bool(st.session_state.get("pause_students")))


def _on_presentation() -> None:
    st.session_state["_fold_sidebar"] = bool(st.session_state.get("presentation_mode"))


def _leave() -> None:
    hub().stop_leading(_token())
    if st.session_state.get("presentation_mode"):
        st.session_state["_fold_sidebar"] = False
    for key in ("_presenter", "follow_me", "presentation_mode"):
        st.session_state.pop(key, None)


def presenter_controls(page: str) -> None:
    """The sidebar's teacher section: the key input, or the presenter's toggles. Nothing without a key."""
    h = hub()
    if not h.configured:
        return
    presenter = is_presenter()
    fold = st.session_state.pop("_fold_sidebar", None)  # once, when the mode changes: it can be opened again
    if fold is not None:
        st.set_page_config(initial_sidebar_state="collapsed" if fold else "expanded")
    if presenter and st.session_state.get("presentation_mode"):
        st.markdown(PRESENTATION_CSS, unsafe_allow_html=True)
    with st.sidebar, st.expander("Teacher", icon=":material/school:", expanded=presenter):
        if not presenter:
            st.text_input(
                "Teacher key",
                type="password",
                key="teacher_key_input",
                max_chars=MAX_KEY_CHARS,
                on_change=_check_key,
                autocomplete="off",
                help="Only for the teacher, who leads the class from here. Students need no key.",
            )
            if st.session_state.get("_key_message"):
                st.error(st.session_state["_key_message"], icon=":material/key_off:")
            return
        st.caption("You are the presenter.")
        # The shared state decides (another presenter may have taken the lead, or paused students).
        st.session_state["follow_me"] = h.leads(_token())
        st.session_state["pause_students"] = h.paused
        st.toggle(
            "Follow me",
            key="follow_me",
            on_change=_on_follow_me,
            args=(page,),
            help="Every student with 'Follow the teacher' on sees your page, model and selection within 2 s.",
        )
        st.toggle(
            "Pause training for students",
            key="pause_students",
            on_change=_on_pause,
            help="Students' Train buttons are disabled and say why; your own trainings go first in the queue.",
        )
        st.toggle(
            "Presentation mode",
            key="presentation_mode",
            on_change=_on_presentation,
            help="Larger type and the sidebar folded (open it again with the arrow at the top left).",
        )
        st.button("Leave presenter mode", on_click=_leave, key="leave_presenter")


def publish_view(page: str) -> None:
    """At the end of the presenter's run: the view students follow (a new one only if it changed)."""
    h = hub()
    if h.configured and is_presenter():
        h.publish(_token(), page, share.view_params(page))


# ---------------------------------------------------------------------------- following


# How often a follower's page asks for the teacher's view by itself. The server runs the same fragment at
# once when the view or the pause changes (ui.push); the poll is what still moves a follower whose wake-up
# was missed (a tab that was away for a moment), and is faster where the wake-ups do not work at all.
# A class of 30 measured both (docs/reliability.md): polling every second cost more than it gave.
POLL_S, POLL_WITHOUT_PUSH_S = 3.0, 1.0
FOLLOWING = "_following"  # the student's choice, kept apart from the toggle's widget state (see _follow)


def following() -> bool:
    """Whether this session follows the teacher (the default until the student turns it off)."""
    return st.session_state.get(FOLLOWING, True) is not False


def _follow_changed() -> None:
    """The toggle moved: remember the choice; turning it back on brings the teacher's view at once."""
    st.session_state[FOLLOWING] = st.session_state.get("follow_teacher") is not False
    st.session_state.pop("_followed_seq", None)


def _follow() -> None:
    push.register()  # the server runs this fragment at once when the teacher moves
    if hub().paused != st.session_state.get("_drawn_paused"):  # the Train button is to change
        st.rerun(scope="app")
    view = hub().view()
    if view is None or hub().leads(_token()):
        return
    # A page change that the server starts (st.switch_page) clears every widget's state, this toggle's
    # too; a toggle that only lived there would come back on, and the student would follow again. So
    # the choice is kept in its own key and the toggle starts from it.
    on = st.toggle("Follow the teacher", value=following(), key="follow_teacher", on_change=_follow_changed)
    st.caption("The teacher is leading." if on else "You are exploring on your own.")
    view = next_view(view, st.session_state.get("_followed_seq")) if on else None
    if view is not None:
        st.session_state["_followed_seq"] = view.seq
        st.session_state["_pending_view"] = view
        target = page_file(view.page)
        if target is not None and view.page != st.session_state.get("_page_now"):
            with contextlib.suppress(StreamlitAPIException):  # not a page of this navigation: stay
                st.switch_page(target)  # from here: one full run, of the teacher's page
        st.rerun(scope="app")


def follow_fragment(page: str = "") -> None:
    """A student's 'Follow the teacher' toggle, run by the server when the presenter's view or the pause
    changes and polling it every few seconds (drawn once per page, in the sidebar); a change of the pause
    redraws the app, so that the Train button says it."""
    if hub().configured:  # a presenter who does not lead (the projector's tab) may follow too
        st.session_state["_drawn_paused"] = hub().paused  # what this run's sidebar shows
        st.session_state["_page_now"] = page
        st.fragment(_follow, run_every=POLL_S if push.working() else POLL_WITHOUT_PUSH_S)()


def page_file(page: str) -> str | None:
    """The script of a page from its address path ("" is the default page), if there is one."""
    name = page or DEFAULT_PAGE
    if re.fullmatch(r"[a-z_]{1,40}", name) and (PAGE_DIR / f"{name}.py").is_file():
        return f"app_pages/{name}.py"
    return None


def apply_pending(page: str) -> None:
    """Before the sidebar draws: show the presenter's view this session is to follow, if there is one."""
    view: View | None = st.session_state.pop("_pending_view", None)
    if view is None or not hub().configured or hub().leads(_token()):
        return
    if not following():  # fetched just before the student stopped following
        return
    share.apply_view(view.page, view.params)
    target = page_file(view.page)
    if view.page != page and target is not None:
        with contextlib.suppress(StreamlitAPIException):  # not a page of this navigation: stay, with its model
            st.switch_page(target)
