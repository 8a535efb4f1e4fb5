"""Class board: every run on the server, who trained it and how it did, the smallest models that do best
(the Pareto front), the spread of seeds, and guesses against results; new runs appear by themselves."""

import streamlit as st

from ui import board
from ui.state import selected_config

st.title("Class board")
data = board.board_data()
board.watch(data.stamp)  # redraws this page within a couple of seconds of a new run
picked = st.session_state.pop(board.PICKED_KEY, None)
if picked:
    st.success(picked, icon=":material/check_circle:")
if data.problems:
    with st.expander(f"{len(data.problems)} file(s) in the model store were skipped"):
        for problem in data.problems:
            st.text(problem)

if not data.rows:
    st.info("No runs yet. Press **Train** in the sidebar: every run trained on this server appears here.")
else:
    st.caption(
        "Every model trained on this server, newest first. Sort by clicking a column header; click a row to "
        "show that model on every page. The table fills in by itself as trainings end."
    )
    st.dataframe(
        board.table_frame(data),
        key=board.TABLE_KEY,
        on_select=board.on_row,
        selection_mode="single-row",
        hide_index=True,
        column_config=board.COLUMN_CONFIG,
    )
    st.download_button("Download the board (CSV)", board.csv_bytes(data), "class-board.csv", "text/csv")

    names = board.datasets(data)
    mine = selected_config().dataset
    dataset = mine if mine in names else names[0]
    if len(names) > 1:
        dataset = st.segmented_control(
            "Data set", names, default=dataset, key="board_dataset", required=True, format_func=board.dataset_title
        )

    st.subheader("Smaller or better? Validation MSE against the number of parameters")
    st.caption(
        "Each dot is a run. The orange ones are the Pareto front: no other run is both smaller and better. "
        "Where one configuration was trained with several seeds, a grey bar spans its best and worst seed "
        "(the mark is their mean): a result far below its bar's middle was partly luck. Click a dot to show "
        "that model on every page."
    )
    st.plotly_chart(
        board.scatter(data, dataset),
        key="board_scatter",
        on_select=board.on_point("board_scatter"),
        selection_mode="points",
        config={"displayModeBar": False},
    )
    for line in board.spread_lines(data, dataset)[:6]:
        st.caption(line)

    st.subheader("Guesses against results")
    guesses = board.guesses_figure(data, dataset)
    if guesses is None:
        st.caption("No guesses yet. Before pressing Train, type your guess of the final validation MSE in the sidebar.")
    else:
        st.caption("Below the dashed line: the run did better than its student guessed; above it, worse.")
        st.plotly_chart(
            guesses,
            key="board_guesses",
            on_select=board.on_point("board_guesses"),
            selection_mode="points",
            config={"displayModeBar": False},
        )
