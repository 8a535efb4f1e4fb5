"""The class board and what students add to runs: bounds on names and guesses, the board's rows, Pareto
front, spread of seeds and guesses (convae.board), the name and guess in a checkpoint (hostile values
included), and through AppTest: the Class board page, a clicked row, the sidebar's name and guess
boxes, predict-then-reveal on the Train page, and a hostile name shown as plain text everywhere."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from convae import board
from convae.store import RunStore, StoredRun, checkpoint_dict, load_checkpoint
from convae.student import MAX_NAME, bounded_guess, check_guess, clean_name, parse_guess
from convae.sweep import parameter_count
from convae.train import History, TrainConfig, TrainResult
from tests.conftest import tiny_config
from tests.test_app import RUN_TIMEOUT, assert_clean, config_state, open_page, texts

BOARD = "app_pages/board.py"
HOSTILE = "<i>x</i>*b*[l](javascript:x):red[r]🦊👩‍🔬\x07" + "w" * 10_000  # HTML, Markdown, emoji, a bell
SHOWN = clean_name(HOSTILE)  # what every list must show, character for character


# --------------------------------------------------------------------------------- names, guesses


def test_a_name_is_kept_as_plain_characters_cut_to_forty() -> None:
    assert SHOWN == "<i>x</i>*b*[l](javascript:x):red[r]🦊👩‍🔬w"  # the bell gone, cut to 40
    assert len(SHOWN) == MAX_NAME
    assert clean_name("  Ann\tLee \n") == "Ann Lee"  # white space made one space, stripped
    assert clean_name("Ann\x00\x1b[31m") == "Ann[31m"  # control characters go
    assert clean_name("\u202eevil\u2066") == "evil"  # so do the marks that reverse the text around it
    assert clean_name("👩‍🔬 Émile") == "👩‍🔬 Émile"  # emoji (with their joiners) and accents stay
    assert clean_name("   ") is None and clean_name("") is None
    assert clean_name(None) is None and clean_name(["Ann"]) is None and clean_name(42) is None
    assert clean_name("x" * 10_000 + " y") == "x" * MAX_NAME


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("abc", "not a number"),
        ("0.o2", "not a number"),
        ("-1", "from 0 to 1"),
        ("2", "from 0 to 1"),
        ("nan", "not NaN"),
        ("-inf", "not NaN or infinity"),
        ("1e400", "not NaN or infinity"),
    ],
)
def test_a_bad_guess_gets_a_clear_message(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_guess(text)


def test_good_guesses() -> None:
    assert parse_guess(" 0.02 ") == 0.02
    assert parse_guess("0,015") == 0.015  # a decimal comma
    assert parse_guess("1e-2") == 0.01
    assert parse_guess("0") == 0.0 and parse_guess("1") == 1.0
    assert parse_guess("") is None and parse_guess("   ") is None and parse_guess(None) is None
    assert check_guess(None) is None and check_guess(0.5) == 0.5
    with pytest.raises(ValueError):
        check_guess(True)
    assert bounded_guess("0.5") is None and bounded_guess(math.nan) is None and bounded_guess(0.25) == 0.25


# ---------------------------------------------------------------------------------- the board's logic


def test_pareto_front() -> None:
    points = [(10, 0.5), (20, 0.3), (20, 0.4), (30, 0.3), (40, 0.1), (5, 0.9), (40, 0.1), (50, math.nan)]
    # (20, 0.4) loses to (20, 0.3); (30, 0.3) to (20, 0.3); equal points (40, 0.1) are both on the front.
    assert board.pareto_front(points) == [0, 1, 4, 5, 6]
    assert board.pareto_front([(1, 1.0)]) == [0]
    assert board.pareto_front([]) == []
    assert board.pareto_front([(1, 0.1), (2, 0.2), (3, 0.3)]) == [0]  # one run beats all the others


def run(config: TrainConfig, val: float, trained, means, **kw) -> StoredRun:
    """A stored run (the tiny trained model) of `config` that reached validation MSE `val`."""
    epochs = [{"epoch": e + 1, "train_loss": val, "val_loss": val, "seconds": 1.0} for e in range(kw.pop("n", 1))]
    created = kw.pop("created", "2025-01-02T03:04:05+00:00")
    return StoredRun(config, trained.model, History(epochs=epochs), means, 90.0, created, "cpu", **kw)


def test_rows_front_spread_and_guesses(trained, means) -> None:
    base = tiny_config(epochs=1)
    runs = [
        run(replace(base, seed=0), 0.030, trained, means, owner="Ann", guess=0.02),
        run(replace(base, seed=1), 0.040, trained, means),
        run(replace(base, seed=2), 0.020, trained, means, owner="Cy", guess=0.05),  # the lucky seed
        run(replace(base, seed=3, epochs=2), 0.010, trained, means),  # stopped after 1 of 2: no spread
        run(replace(base, seed=4, dataset="fashion-mnist"), 0.5, trained, means),
    ]
    rows = board.rows(runs)
    assert [r.name for r in rows] == ["Ann", None, "Cy", None, None]
    assert rows[0].parameters == parameter_count(4, 4, 2) and rows[0].minutes == 1.5
    assert rows[0].when == "2025-01-02 03:04" and not rows[3].complete
    front = board.front_keys(rows)
    # Same size: the best MNIST run is the stopped one; fashion-mnist has its own front.
    assert front == {rows[3].key, rows[4].key}
    (spread,) = board.spreads(rows)
    assert spread.seeds == (0, 1, 2) and spread.config.dataset == "mnist"
    assert (spread.low, spread.high) == (0.020, 0.040)
    assert spread.mean == pytest.approx(0.030) and spread.sd == pytest.approx(0.010)
    assert [(g.name, g.guess, g.result) for g in board.guesses(rows)] == [("Ann", 0.02, 0.030), ("Cy", 0.05, 0.020)]
    table = board.table(rows, front)
    assert list(table[0]) == list(board.COLUMNS)
    assert table[0]["name"] == "Ann" and table[1]["name"] == "" and table[3]["Pareto front"]
    # One type per column (a table mixing numbers and text fails Arrow's conversion in the server log).
    assert [r["epochs"] for r in table] == ["1", "1", "1", "1 of 2", "1"]


def test_the_csv_keeps_names_and_never_runs_a_formula(trained, means) -> None:
    runs = [
        run(tiny_config(seed=0), 0.03, trained, means, owner=SHOWN),
        run(tiny_config(seed=1), 0.03, trained, means, owner='=HYPERLINK("http://x","y")'),
        run(tiny_config(seed=2), 0.03, trained, means, owner="-2+3"),
    ]
    rows = list(csv.DictReader(io.StringIO(board.csv_text(board.rows(runs), set()))))
    assert [r["name"] for r in rows] == [SHOWN, '\'=HYPERLINK("http://x","y")', "'-2+3"]


def test_the_folder_stamp_changes_with_the_checkpoints(tmp_path: Path, trained, means) -> None:
    store = RunStore(tmp_path / "runs", shipped=None)
    empty = board.folder_stamp([store.root, tmp_path / "missing"])
    assert empty == ()
    store.save(trained, means)
    one = board.folder_stamp([store.root])
    assert len(one) == 1
    (store.root / "queue.json").write_text("{}")  # not a checkpoint
    (store.root / "sub").mkdir()
    assert board.folder_stamp([store.root]) == one
    store.save(replace_seed(trained, 5), means)
    assert len(board.folder_stamp([store.root])) == 2


# ---------------------------------------------------------------------------- the name in the store


def test_the_name_and_guess_round_trip_through_a_checkpoint(tmp_path: Path, trained, means) -> None:
    store = RunStore(tmp_path, shipped=None)
    saved = store.save(trained, means, owner=HOSTILE, guess=0.02)
    assert (saved.owner, saved.guess) == (SHOWN, 0.02)
    again = load_checkpoint(store.path_for(trained.config))
    assert (again.owner, again.guess) == (SHOWN, 0.02)
    plain = store.save(replace_seed(trained, 1), means)
    assert (plain.owner, plain.guess) == (None, None)


def replace_seed(result: TrainResult, seed: int, val: float | None = None) -> TrainResult:
    """The tiny trained model as a run of another seed (all training images: a config the sidebar can select),
    with its own copy of the history, ending at validation MSE `val` if given."""
    history = copy.deepcopy(result.history)
    if val is not None:
        history.epochs[-1]["val_loss"] = val
    config = replace(result.config, seed=seed, train_size=None)
    return TrainResult(config=config, model=result.model, history=history, seconds=1.0, device="cpu")


@pytest.mark.parametrize(
    ("owner", "guess", "shown", "kept"),
    [
        ("x" * 1_000_000 + "<b>", -3.0, "x" * MAX_NAME, None),
        ("\x00\x01\u202e", math.nan, None, None),
        (["a", "list"], "0.02", None, None),
        (torch.zeros(3), torch.tensor(0.02), None, None),
        ({"nested": "dict"}, 7, None, None),
        (None, None, None, None),
    ],
)
def test_hostile_values_in_a_crafted_checkpoint_are_bounded(tmp_path: Path, trained, means, owner, guess, shown, kept):
    ckpt = checkpoint_dict(trained, means)
    ckpt["owner"], ckpt["guess"] = owner, guess  # written by something else than this program
    path = tmp_path / "crafted.pt"
    torch.save(ckpt, path)
    loaded = load_checkpoint(path)  # the run itself is not lost over a bad name or guess
    assert (loaded.owner, loaded.guess) == (shown, kept)
    assert loaded.val_loss == trained.history.epochs[-1]["val_loss"]


def test_an_old_checkpoint_without_a_name_still_loads(tmp_path: Path, trained, means) -> None:
    ckpt = checkpoint_dict(trained, means)
    del ckpt["owner"], ckpt["guess"]
    torch.save(ckpt, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded.owner is None and loaded.guess is None


# --------------------------------------------------------------------------------------- AppTest


@pytest.fixture
def class_runs(app_env: Path, trained, means) -> list[TrainConfig]:
    """Runs in the app's runs folder: three seeds of one config (one with a hostile name and a guess)."""
    store = RunStore(app_env, shipped=None)
    configs = []
    for seed, owner, guess in ((0, HOSTILE, 0.03), (1, "Bob", None), (2, None, 0.01)):
        result = replace_seed(trained, seed, 0.05 + 0.01 * seed)
        store.save(result, means, owner=owner, guess=guess)
        configs.append(result.config)
    return configs


def chart(at: AppTest, key: str) -> dict:
    found = [c for c in at.get("plotly_chart") if c.key == key]
    assert found, [c.key for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def markdown_texts(at: AppTest) -> list[str]:
    """Every element that Streamlit renders as Markdown."""
    kinds = (at.markdown, at.caption, at.info, at.success, at.warning, at.error, at.title, at.subheader)
    return [str(e.value) for kind in kinds for e in kind] + [str(e.value) for e in at.sidebar.markdown]


def assert_plain_only(at: AppTest) -> None:
    """No piece of the hostile name that Markdown or HTML would change is inside an element drawn as Markdown."""
    for piece in ("<i>", "*b*", "javascript:", ":red["):
        assert not any(piece in m for m in markdown_texts(at)), piece


@pytest.mark.usefixtures("class_runs")
def test_the_board_lists_every_run_with_its_name_as_plain_text(app_env: Path, trained, means) -> None:
    at = open_page(BOARD)
    assert_clean(at)
    table = at.dataframe[0].value
    mine = table[(table["Q1"] == 4) & (table["K"] == 2)]  # this test's runs (the shipped sweep has Q1 = 4, K = 10)
    assert sorted(mine["name"]) == sorted(["", "Bob", SHOWN])  # the same characters, cut to 40
    assert set(mine["seed"]) == {0, 1, 2} and set(mine["parameters"]) == {parameter_count(4, 4, 2)}
    assert sorted(mine["validation MSE"]) == pytest.approx([0.05, 0.06, 0.07])
    assert_plain_only(at)
    fig = chart(at, "board_scatter")
    names = [t.get("name") for t in fig["data"]]
    assert "Pareto front" in names and any(str(n).startswith("seeds of one configuration") for n in names)
    hovers = " ".join(h for t in fig["data"] for h in t.get("hovertext") or [])
    assert "&lt;i&gt;x&lt;/i&gt;*b*" in hovers and "<i>" not in hovers  # escaped: plotly shows the characters
    spread = next(t for t in fig["data"] if str(t.get("name")).startswith("seeds"))
    assert spread["y"] == pytest.approx([0.06])  # the mean of the three seeds, bar from 0.05 to 0.07
    guesses = chart(at, "board_guesses")
    assert sorted(guesses["data"][1]["x"]) == [0.01, 0.03]  # only the runs with a guess
    assert any("3 seeds from 0.0500 to 0.0700" in c for c in texts(at.caption))

    # A run that ends while the page is open: the next rerun (the page's poll asks for one) lists it.
    RunStore(app_env, shipped=None).save(replace_seed(trained, 7, 0.09), means, owner="Dee")
    at.run()
    assert "Dee" in list(at.dataframe[0].value["name"])


def test_a_clicked_row_shows_its_model_on_every_page(class_runs: list[TrainConfig]) -> None:
    at = open_page(BOARD)
    keys = at.session_state["board_keys"]
    row = keys.index(class_runs[1].key())

    def click(keys: list[str], row: int) -> None:
        import streamlit as st

        from ui import board as ui_board

        st.session_state["board_keys"] = keys
        st.session_state["board_table"] = {"selection": {"rows": [row], "columns": []}}
        ui_board.on_row()

    clicked = AppTest.from_function(click, args=(keys, row), default_timeout=RUN_TIMEOUT)
    clicked.run()
    assert not clicked.exception
    chosen = {k: clicked.session_state[k] for k in ("q1", "q2", "k", "epochs", "seed")}
    assert chosen == {"q1": 4, "q2": 4, "k": 2, "epochs": 1, "seed": 1}
    assert "Showing Q1=4, Q2=4, K=2 (1 epoch, seed 1)" in clicked.session_state["board_picked"]


def test_a_hostile_name_on_the_train_page_and_the_compare_page(class_runs: list[TrainConfig]) -> None:
    at = open_page("dashboard.py", **config_state(class_runs[0]))
    assert_clean(at)
    assert f"Trained by: {SHOWN}" in texts(at.text)
    assert any("Guessed before training: 0.0300; it reached 0.0500." in c for c in texts(at.caption))
    assert_plain_only(at)
    at.switch_page("app_pages/compare.py").run()
    assert_clean(at)
    assert SHOWN in list(at.dataframe[0].value["name"])
    assert_plain_only(at)


@pytest.mark.usefixtures("app_env")
def test_name_and_guess_in_the_sidebar_then_the_guess_against_the_result() -> None:
    from ui.services import services

    small = {"q1": 4, "q2": 4, "k": 2, "epochs": 1, "mean_init": True}  # learns in one epoch
    at = open_page("dashboard.py", **small, student_name=HOSTILE, guess="abc")
    assert_clean(at)
    assert [t.label for t in at.sidebar.text_input] == [
        "Your name (optional)",
        "Your guess: the final validation MSE (optional)",
    ]
    assert at.sidebar.text_input(key="student_name").max_chars == MAX_NAME
    assert any("not a number" in w for w in texts(at.sidebar.warning))
    at.button(key="train_button").click().run()
    assert any("Correct it or clear it" in e for e in texts(at.sidebar.error))  # not trained, not stored
    assert services().jobs.views() == []

    at.sidebar.text_input(key="guess").set_value("0.5").run()
    assert not any("not a number" in w for w in texts(at.sidebar.warning))
    at.button(key="train_button").click().run()
    assert_clean(at)
    view = services().jobs.wait(at.session_state["job_id"], timeout=120)
    assert view.state == "done", (view.state, view.error)
    typed = at.sidebar.text_input(key="student_name").value
    assert (view.run.owner, view.run.guess) == (clean_name(typed), 0.5)
    assert view.run.owner.startswith("<i>x</i>*b*[l](javascript:x)") and len(view.run.owner) <= MAX_NAME
    at.run()
    assert_clean(at)
    reveal = [i for i in texts(at.info) if i.startswith("You guessed 0.5000, it reached")]
    assert reveal and "better than you expected" in reveal[0]
    assert_plain_only(at)


@pytest.mark.usefixtures("app_env")
def test_the_sidebar_says_when_a_train_click_replaced_the_queued_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.services import services

    at = open_page("dashboard.py", q1=4, q2=4, k=2, epochs=1)
    sid = at.session_state["_session_id"]
    jobs = services().jobs
    monkeypatch.setattr(jobs, "max_concurrent", 0)  # nothing starts: every request waits in the queue
    queued = jobs.submit(tiny_config(q1=4, q2=4, k=2, train_size=None), session=sid)
    at.session_state["k"] = 3
    at.run()
    assert any(
        "Your training: Q1=4, Q2=4, K=2 (1 epoch, seed 0), position 1 in the line" in i for i in texts(at.sidebar.info)
    )
    at.button(key="train_button").click().run()
    assert_clean(at)
    assert jobs.snapshot(queued).state == "cancelled"
    notice = " ".join(texts(at.sidebar.info))
    assert "Your queued run of Q1=4, Q2=4, K=2 (1 epoch, seed 0) was replaced by Q1=4, Q2=4, K=3" in notice
    assert "This configuration is queued, position 1 in the line, starts in about" in notice
    for view in jobs.views():
        jobs.cancel(view.id)


@pytest.mark.usefixtures("app_env")
def test_other_trainings_show_their_name_as_plain_text_and_their_place(monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.services import services

    jobs = services().jobs
    monkeypatch.setattr(jobs, "max_concurrent", 0)  # nothing starts: both wait in the line
    jobs.submit(tiny_config(train_size=None, seed=1), session="f" * 32, owner="Eve")
    jobs.submit(tiny_config(train_size=None, seed=2), session="e" * 32, owner=HOSTILE)
    at = open_page("dashboard.py", q1=4, q2=4, k=2, epochs=1)
    assert_clean(at)
    assert "by Eve" in texts(at.text) and f"by {SHOWN}" in texts(at.text)
    lines = [str(m.value) for m in at.markdown if "queued (position" in str(m.value)]
    assert len(lines) == 2 and "position 2 in the line, starts in about" in lines[1]
    assert_plain_only(at)
    for view in jobs.views():
        jobs.cancel(view.id)
