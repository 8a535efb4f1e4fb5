"""`python -m ui.serve [options of streamlit run]`: `streamlit run dashboard.py` (what `make run` starts),
and, as soon as the server listens, the modules the first page needs (torch, pandas, plotly, the
dashboard's own) imported on a thread while nobody has opened a page yet.

A page opened a few seconds after the start then no longer waits for those imports (about 2.5 s of
its first run on a 2-core machine). The thread starts only once the server is up, so the server
does not start later for it; a page opened at once waits for the imports as it would anyway (the
page and the thread share the import). docs/performance.md, "Start-up", has the figures.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard.py"
# What the first script run imports, the slowest first (torch alone is most of it).
FIRST_PAGE_MODULES = (
    "torch",
    "pandas",
    "plotly.graph_objects",
    "ui.sidebar",
    "ui.presenter",
    "ui.share",
    "ui.delivery",
    "ui.training",
    "ui.page_charts",
    "ui.images",
    "ui.baseline",
)
WAIT_FOR_SERVER_S = 60.0


def server_listening() -> bool:
    """Whether this process's Streamlit server has started (it then answers requests)."""
    from streamlit.runtime import Runtime, RuntimeState

    return Runtime.exists() and Runtime.instance().state not in (RuntimeState.INITIAL, RuntimeState.STOPPED)


def prewarm(modules: tuple[str, ...] = FIRST_PAGE_MODULES, wait_s: float = WAIT_FOR_SERVER_S) -> list[str]:
    """Once the server listens (or after `wait_s`, if it never does: then nothing), import `modules`;
    the ones imported. A module that fails to import is left to the page, which shows the error."""
    from streamlit.logger import get_logger

    log = get_logger("convae.serve")  # Streamlit's own handler: the server's log, before any page has run
    deadline = time.monotonic() + wait_s
    while not server_listening():
        if time.monotonic() > deadline:
            return []
        time.sleep(0.02)
    started, done = time.perf_counter(), []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the page imports it again and reports the problem where it can be seen
            log.warning("Could not import %s ahead of the first page; the page will say why.", name)
            break
        done.append(name)
    own = [name for name in done if name.startswith("ui.")]
    named = [name for name in done if name not in own] + ([f"{len(own)} of the dashboard's modules"] if own else [])
    log.info("Imported %s ahead of the first page in %.1f s.", ", ".join(named), time.perf_counter() - started)
    return done


def main(argv: list[str] | None = None) -> None:
    options = sys.argv[1:] if argv is None else argv
    threading.Thread(target=prewarm, name="convae-prewarm", daemon=True).start()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(DASHBOARD), *options]
    cli.main()


if __name__ == "__main__":
    main()
