"""Shareable views: a page's selection in the address, beside the sidebar's configuration (ui/state.py).

One table (SELECTIONS) says which session key of which page goes into the address, under what name,
of what type and range. A new tab reads the address once; every run writes the view back, so a
refresh, a bookmark or a copied link opens the same page, configuration and selection. A value that is
not valid is ignored on its own (the others apply), never an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import streamlit as st

from ui.state import MAX_PARAM_CHARS, config_params, select_params

MAX_INDEX = 9_999  # the largest validation image number of both data sets (pages check their own data)
MAX_COORD = 1e4  # a latent walk point further out than this is ignored
MAX_URL_CHARS = 300  # a longer base address (from the browser or the Host header) is not used


@dataclass(frozen=True)
class Selection:
    """One piece of a page's selection: its address name, session key, type, range and default."""

    page: str  # the page's address path (st.Page url_path)
    name: str  # in the address
    key: str  # in st.session_state
    kind: str  # int | float | bool | pair (two ints) | point (two floats)
    lo: float
    hi: float
    default: object = None  # None: absent from the session (nothing selected)
    step: float | None = None  # floats are rounded to it


SELECTIONS = (
    Selection("mixtures", "pair", "pair", "pair", 0, 9, (3, 8)),
    Selection("mixtures", "alpha", "alpha", "float", 0.0, 1.0, 0.5, step=0.05),
    Selection("latent", "point", "latent_point", "int", 0, MAX_INDEX),
    Selection("walk", "at", "walk_point", "point", -MAX_COORD, MAX_COORD, step=1e-4),
    Selection("walk", "grid", "grid_n", "int", 5, 20, 12),
    Selection("inside", "digit", "inside_index", "int", 0, MAX_INDEX, 0),
    Selection("reconstructions", "pca", "fig1_pca", "bool", 0, 1, False),
)
_HOST = re.compile(r"([A-Za-z0-9\-]+\.)*[A-Za-z0-9\-]+(:\d{1,5})?|\[[0-9a-fA-F:.]+\](:\d{1,5})?")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE]-?\d+)?", re.ASCII)  # ASCII digits only
_INTEGER = re.compile(r"-?\d{1,12}", re.ASCII)


def selections(page: str) -> tuple[Selection, ...]:
    return tuple(s for s in SELECTIONS if s.page == page)


def _number(text: str, integer: bool) -> float | int:
    text = text.strip()
    if integer:
        if not _INTEGER.fullmatch(text):
            raise ValueError(text)
        return int(text)
    if not _NUMBER.fullmatch(text):  # no "nan", "inf", "0x1p3"
        raise ValueError(text)
    return float(text)


def parse(sel: Selection, text: object) -> object:
    """The value of an address parameter, or None where it is not a valid value of `sel`."""
    if not isinstance(text, str) or len(text) > MAX_PARAM_CHARS:
        return None
    try:
        if sel.kind == "bool":
            return {"1": True, "true": True, "0": False, "false": False}.get(text.strip().lower())
        if sel.kind in ("pair", "point"):
            parts = text.split(",")
            if len(parts) != 2:
                return None
            values = tuple(_number(p, sel.kind == "pair") for p in parts)
        else:
            values = (_number(text, sel.kind == "int"),)
    except ValueError:
        return None
    if not all(math.isfinite(v) and sel.lo <= v <= sel.hi for v in values):
        return None
    if sel.step:
        values = tuple(round(round(v / sel.step) * sel.step, 6) for v in values)
    return values if len(values) == 2 else values[0]


def _text(sel: Selection, value: object) -> str:
    if sel.kind == "bool":
        return "1" if value else "0"
    if sel.kind in ("pair", "point"):
        return ",".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def selection_from_params(page: str, params: Mapping[str, str]) -> dict[str, object]:
    """The page's selection among address parameters: session key -> value, the invalid ones left out."""
    found = {}
    for sel in selections(page):
        value = parse(sel, params.get(sel.name))
        if value is not None:
            found[sel.key] = value
    return found


def selection_params(page: str) -> dict[str, str]:
    """The session's selection on `page` that differs from the defaults, as address parameters."""
    out = {}
    for sel in selections(page):
        value = st.session_state.get(sel.key)
        # A stored value is checked like an address value: what the address gets, a new tab accepts.
        if value is not None and value != sel.default and parse(sel, _text(sel, value)) is not None:
            out[sel.name] = _text(sel, value)
    return out


def apply_selection(page: str, params: Mapping[str, str]) -> None:
    """Set the page's selection from address parameters; a key they do not give goes back to its
    default (call before the page's widgets are drawn)."""
    found = selection_from_params(page, params)
    for sel in selections(page):
        if sel.key in found:
            st.session_state[sel.key] = found[sel.key]
        elif sel.default is None:
            st.session_state.pop(sel.key, None)
        else:
            st.session_state[sel.key] = sel.default


def open_view(page: str) -> None:
    """For a new tab (or a refreshed one): the page's selection from the address, once per session."""
    if "_selection_read_from_url" not in st.session_state:
        st.session_state["_selection_read_from_url"] = True
        for key, value in selection_from_params(page, st.query_params.to_dict()).items():
            st.session_state[key] = value


def apply_view(page: str, params: Mapping[str, str]) -> None:
    """Show another view (the presenter's): its configuration and the page's selection."""
    select_params(params)
    apply_selection(page, params)


def view_params(page: str) -> dict[str, str]:
    """The session's view of `page` as address parameters: configuration, then selection."""
    return {**config_params(), **selection_params(page)}


def sync_address(page: str) -> None:
    """Write the view into the address (end of a run: the page may have changed its selection)."""
    wanted = view_params(page)
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


# ----------------------------------------------------------------------- what pages call


def index_in(key: str, n: int) -> int | None:
    """The image number under `key` if it is one of this data set's n images; else it is dropped."""
    value = st.session_state.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n:
        return value
    st.session_state.pop(key, None)
    return None


def on_latent_click(chart_key: str = "latent") -> None:
    """The latent chart's selection callback: keep the clicked image (a click beside the dots clears it)."""
    event = st.session_state.get(chart_key) or {}
    points = event.get("selection", {}).get("points", [])
    picked = next((p.get("customdata") for p in points if p.get("customdata") is not None), None)
    if picked is None:
        st.session_state.pop("latent_point", None)
    else:
        st.session_state["latent_point"] = int(picked[0])


def walk_point(lo, hi) -> tuple[float, float] | None:
    """The walk's picked point if it lies within the plane's extent (`lo`, `hi`: its 1st and 99th
    percentiles per axis) widened by that extent on every side; else it is dropped."""
    value = st.session_state.get("walk_point")
    if value is not None:
        span = [float(h) - float(low) for low, h in zip(lo, hi, strict=True)]
        inside = all(float(low) - s <= v <= float(h) + s for v, low, h, s in zip(value, lo, hi, span, strict=True))
        if inside:
            return value
        st.session_state.pop("walk_point", None)
    return None


# ------------------------------------------------------------------------------- the link


def base_url(page: str) -> str | None:
    """The app's root address as the browser sees it (with any base path), or None if unknown."""
    url = getattr(st.context, "url", None)
    if isinstance(url, str) and len(url) <= MAX_URL_CHARS and re.fullmatch(r"https?://[^\s?#]+", url):
        url = url.rstrip("/")
        return url.removesuffix(f"/{page}") if page else url
    host = st.context.headers.get("Host") if st.context.headers else None
    if isinstance(host, str) and len(host) <= 255 and _HOST.fullmatch(host):
        return f"http://{host}"
    return None


def share_link(page: str) -> str:
    """The address of this view: page, configuration and selection (relative if the host is unknown)."""
    query = urlencode(view_params(page), safe=",")
    return (base_url(page) or "") + f"/{page}" + (f"?{query}" if query else "")


def link_box(page: str) -> None:
    """The sidebar's "Copy link" control (st.code has a copy button)."""
    with st.popover("Copy link", icon=":material/link:", width="stretch", help="A link to this view, to share"):
        st.code(share_link(page), language=None, wrap_lines=True)
        st.caption("Opens this page with the same model, configuration and selection, on any device.")
