"""convae dashboard: `streamlit run dashboard.py`. Navigation, sidebar and shared state live here."""

import logging

import streamlit as st
import torch

import ui

st.set_page_config(page_title="convae: an auto-encoder on MNIST", page_icon="🔢", layout="wide")
logging.getLogger("convae").setLevel(logging.INFO)
torch.set_grad_enabled(False)  # pages only evaluate; training threads enable gradients themselves

navigation = st.navigation(
    {
        "The assignment": [
            st.Page("pages/train.py", title="Train", icon=":material/monitoring:", default=True),
            st.Page("pages/reconstructions.py", title="Reconstructions", icon=":material/compare:"),
            st.Page("pages/latent.py", title="Latent space", icon=":material/scatter_plot:"),
            st.Page("pages/mixtures.py", title="Mixtures", icon=":material/grid_on:"),
        ],
        "Explore further": [
            st.Page("pages/walk.py", title="Latent walk", icon=":material/explore:"),
            st.Page("pages/draw.py", title="Draw a digit", icon=":material/draw:"),
            st.Page("pages/compare.py", title="Compare runs", icon=":material/table_chart:"),
        ],
    },
    position="top",
)
ui.sidebar()
navigation.run()
