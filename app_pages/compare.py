"""Compare runs: every stored model in one sortable table, their loss curves and reconstructions side by side."""

import streamlit as st

from ui import board, results
from ui.images import image_row
from ui.page_charts import compare_chart
from ui.services import services, stored_splits
from ui.state import describe

st.title("Compare runs")
runs, problems = services().store.scan()
if problems:
    with st.expander(f"{len(problems)} file(s) in the model store were skipped"):
        for problem in problems:  # file names from the runs folder: plain text
            st.text(problem)
if not runs:
    st.info("No stored runs yet. Train a few configurations (e.g. K = 2, 10 and 32) and compare them here.")
else:
    st.caption(
        "Every model in the store, with the name of the student who trained it. Sort by clicking a column "
        "header; tick rows to overlay their loss curves and see their reconstructions of the same digits. "
        "Try K = 2, 10 and 32 (a model that "
        "comes out blank learned nothing: train it again with another seed)."
    )
    event = st.dataframe(
        board.named_runs_table(runs),
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
    ticked = event is not None and event.selection.rows
    chosen = event.selection.rows if ticked else list(range(min(3, len(runs))))
    st.subheader("Loss curves" + ("" if ticked else " (first rows)"))
    st.plotly_chart(compare_chart(tuple(runs[i] for i in chosen)), key="compare_losses")  # built once for all tabs

    st.subheader("The same validation digits, reconstructed by each run")
    for i in chosen:
        r = runs[i]
        splits = stored_splits(r.config.dataset)
        if splits is None:
            st.warning(f"The {r.config.dataset} data is not provisioned; open a page with that data set first.")
            continue
        idx = results.preview_digits(splits)
        originals, recons, err = results.reconstruct_digits(r, splits, idx)
        if i == chosen[0]:
            st.image(image_row(originals, 2), caption="originals", width=560)
        st.image(
            image_row(recons, 2),
            width=560,
            caption=f"{describe(r.config)} · MSE on these {len(idx)}: {err.mean():.4f}",
        )
