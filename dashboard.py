"""convae dashboard: `streamlit run dashboard.py`. Navigation, the sidebar and the error guard; the pages
are in app_pages/, the layer they draw from in ui/."""

import logging

import streamlit as st

from ui import delivery, presenter, share
from ui.sidebar import sidebar

delivery.install()  # once per server process: a finished run's last messages are never dropped

st.set_page_config(page_title="convae: an auto-encoder on MNIST", page_icon="🔢", layout="wide")
_log = logging.getLogger("convae")
if not _log.handlers:  # once per server process: jobs (queued, running, done...) go to the server's log
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _log.addHandler(_handler)
    _log.setLevel(logging.INFO)

# Pages live in app_pages/: a folder named pages/ would make Streamlit run a page file on its own
# (no sidebar, no navigation) for a direct link opened before this script has run once.
navigation = st.navigation(
    {
        "The assignment": [
            st.Page("app_pages/train.py", title="Train", icon=":material/monitoring:", default=True),
            st.Page("app_pages/reconstructions.py", title="Reconstructions", icon=":material/compare:"),
            st.Page("app_pages/latent.py", title="Latent space", icon=":material/scatter_plot:"),
            st.Page("app_pages/mixtures.py", title="Mixtures", icon=":material/grid_on:"),
        ],
        "Explore further": [
            st.Page("app_pages/walk.py", title="Latent walk", icon=":material/explore:"),
            st.Page("app_pages/draw.py", title="Draw a digit", icon=":material/draw:"),
            st.Page("app_pages/inside.py", title="Inside the network", icon=":material/layers:"),
            st.Page("app_pages/sweep.py", title="Bottleneck sweep", icon=":material/ssid_chart:"),
            st.Page("app_pages/compare.py", title="Compare runs", icon=":material/table_chart:"),
            st.Page("app_pages/board.py", title="Class board", icon=":material/leaderboard:"),
        ],
    },
    position="top",
)
page = navigation.url_path
delivery.record_page(st.session_state)  # the page the browser is to show; see ui.delivery
try:
    share.open_view(page)  # a new tab: the selection in its address
    presenter.apply_pending(page)  # a student following the teacher: the teacher's view
    with st.sidebar:  # at the top: "Follow the teacher", while a teacher leads (nothing without a teacher key)
        presenter.follow_fragment(page)
    sidebar()
    presenter.presenter_controls(page)
    presenter.publish_view(page)  # the teacher's page, before it draws: the class starts moving now
    navigation.run()
    share.sync_address(page)  # after the page: it may have changed its selection
    presenter.publish_view(page)
    with st.sidebar:
        share.link_box(page)
except Exception as error:  # a page must never show a traceback to the class; the log keeps it
    logging.getLogger("convae").exception("page %r failed", navigation.title)
    st.error(
        f"This page ran into a problem and could not be drawn ({type(error).__name__}: {error}). "
        "The details are in the server's log. Reload the page, or go back to the assignment's defaults.",
        icon=":material/error:",
    )
