"""Compare runs: every stored model in one sortable table, their loss curves and reconstructions side by side."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from convae.analysis import reconstruct
from convae.data import load_splits
from convae.figures import use_log_axis
from convae.train import preview_indices

st.title("Compare runs")
svc = ui.services()
runs, problems = svc.store.scan()
if problems:
    with st.expander(f"{len(problems)} file(s) in the model store were skipped"):
        st.write("\n".join(f"- {p}" for p in problems))
if not runs:
    st.info("No stored runs yet. Train a few configurations (e.g. K = 2, 10 and 32) and compare them here.")
else:
    st.caption(
        "Every model in the store. Sort by clicking a column header; tick rows to overlay their loss "
        "curves and see their reconstructions of the same digits. Try K = 2, 10 and 32 (a model that "
        "comes out blank learned nothing: train it again with another seed)."
    )
    table = pd.DataFrame(
        [
            {
                "data set": r.config.dataset,
                "Q1": r.config.q1,
                "Q2": r.config.q2,
                "K": r.config.k,
                "epochs": len(r.history.epochs),
                "learning rate": r.config.lr,
                "batch": r.config.batch_size,
                "images": r.config.train_size or 60000,
                "seed": r.config.seed,
                "training loss": r.train_loss,
                "validation loss": r.val_loss,
                "minutes": r.seconds / 60,
                "when": "shipped" if r.shipped else r.created.replace("T", " ")[:16],
            }
            for r in runs
        ]
    )
    event = st.dataframe(
        table,
        key="runs_table",
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        column_config={
            "training loss": st.column_config.NumberColumn(format="%.5f"),
            "validation loss": st.column_config.NumberColumn(format="%.5f"),
            "minutes": st.column_config.NumberColumn(format="%.1f"),
            "learning rate": st.column_config.NumberColumn(format="%g"),
        },
    )
    chosen = event.selection.rows if event is not None and event.selection.rows else list(range(min(3, len(runs))))
    st.subheader("Loss curves" + ("" if event is not None and event.selection.rows else " (first rows)"))
    fig = go.Figure()
    for n, i in enumerate(chosen):
        r = runs[i]
        h = r.history
        spe = h.steps[-1] / len(h.epochs) if h.steps else 1
        size = "" if r.config.train_size is None else f", {r.config.train_size:,} images"
        label = f"Q1={r.config.q1} Q2={r.config.q2} K={r.config.k} (b{r.config.batch_size}, lr {r.config.lr:g}{size})"
        colour = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"][n % 6]
        fig.add_trace(
            go.Scatter(
                x=np.array(h.steps) / spe,
                y=h.step_losses,
                mode="lines",
                name=f"{label}: training",
                line={"color": colour, "width": 1.5},
                opacity=0.6,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[e["epoch"] for e in h.epochs],
                y=[e["val_loss"] for e in h.epochs],
                mode="lines+markers",
                name=f"{label}: validation",
                line={"color": colour, "width": 2.5, "dash": "dot"},
            )
        )
    fig.update_layout(
        height=420, xaxis_title="epoch", yaxis_title="MSE loss (log scale)", margin={"l": 60, "r": 10, "t": 10, "b": 50}
    )
    st.plotly_chart(use_log_axis(fig), key="compare_losses")

    st.subheader("The same validation digits, reconstructed by each run")
    for i in chosen:
        r = runs[i]
        try:
            splits = load_splits(None, r.config.dataset)
        except Exception:
            st.warning(f"The {r.config.dataset} data is not provisioned; open a page with that data set first.")
            continue
        idx = preview_indices(splits.val_labels).tolist()
        originals, recons, err = reconstruct(r.model, splits.val_images[idx])
        if i == chosen[0]:
            st.image(
                np.concatenate([ui.image_to_uint8(o, 2) for o in originals], axis=1), caption="originals", width=560
            )
        st.image(
            np.concatenate([ui.image_to_uint8(o, 2) for o in recons], axis=1),
            width=560,
            caption=f"{ui.describe(r.config)} · MSE on these {len(idx)}: {err.mean():.4f}",
        )
