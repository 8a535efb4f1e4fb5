"""A tiny two-page Streamlit app for the protocol client's test (tests/test_classload.py): one widget of
each kind the client sets, a button whose callback sets a widget's value on the server, a fragment on a
timer, a table on the second page, and a text input in the sidebar (kept across pages)."""

import pandas as pd
import streamlit as st


def home() -> None:
    st.title("Home")
    st.session_state.setdefault("n", 3)
    name = st.text_input("Name", key="name")
    n = st.slider("N", 1, 10, key="n")
    follow = st.toggle("Follow", key="follow")
    colour = st.selectbox("Colour", ["red", "green", "blue"], key="colour")
    rate = st.select_slider("Rate", [0.1, 0.3, 1.0], value=0.3, key="rate", format_func=lambda v: f"{v:g}")
    seed = st.number_input("Seed", 0, 100, 5, key="seed")
    if st.button("Go", key="go"):
        st.session_state.clicks = st.session_state.get("clicks", 0) + 1
    st.button("Max", key="max", on_click=lambda: st.session_state.update(n=10))
    clicks = st.session_state.get("clicks", 0)
    st.markdown(f"name={name} n={n} follow={follow} colour={colour} rate={rate:g} seed={seed} clicks={clicks}")

    @st.fragment(run_every=0.2)
    def ticker() -> None:
        st.session_state.ticks = st.session_state.get("ticks", 0) + 1
        st.text(f"ticks={st.session_state.ticks}")

    ticker()


def other() -> None:
    st.title("Other")
    st.dataframe(pd.DataFrame({"who": ["<b>Ann</b>"], "mse": [0.5]}))


nav = st.navigation([st.Page(home, title="Home", default=True), st.Page(other, title="Other page", url_path="other")])
st.sidebar.text_input("Your name", key="sidebar_name")
nav.run()
