"""scripts/presets_table.py: the record that lets the long tables be stopped, resumed and split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import presets_table as script


def test_record_resume_and_shards(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("CONVAE_DATA_DIR", str(data_root))
    record = tmp_path / "runs.jsonl"
    common = ["--presets", "quick", "--k", "1", "2", "--seeds", "1", "--starts", "default", "mean"]
    common += ["--threads", "1", "--record", str(record)]
    code = script.main([*common, "--shard", "1/2"])
    first = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(r["start"], r["k"]) for r in first] == [("default", 1), ("mean", 1)]  # every other run of the plan
    assert all(len(r["val_by_epoch"]) == 1 and r["seconds"] > 0 and r["mean_init"] for r in first)
    assert all(r["mean_init_used"] and r["cpu_seconds"] > 0 for r in first)  # the quick preset starts at the mean
    assert code == (1 if any(r["blank"] for r in first) else 0)
    assert "2 of the plan not yet trained" in capsys.readouterr().out

    record.write_text(record.read_text() + '{"preset": "quick", "cut short\n')  # a line cut short by a kill
    script.main([*common, "--shard", "2/2"])
    rows = script.read_record(record)
    assert sorted((r["start"], r["k"]) for r in rows) == [("default", 1), ("default", 2), ("mean", 1), ("mean", 2)]
    out = capsys.readouterr().out
    assert "2 runs to train, 2 already in the record" in out and "0 of the plan not yet trained" in out
    assert out.count("| quick | default |") == 2 and out.count("| quick | mean |") == 2

    script.main([*common, "--table-only"])  # trains nothing more
    out = capsys.readouterr().out
    assert len(script.read_record(record)) == 4 and "runs to train" not in out
    side = [line for line in out.splitlines() if line.startswith("| quick | ") and " / " in line]
    assert len(side) == 2 and all("| 1 | 0 / 0 |" in line or "| 1 | 1 / 0 |" in line for line in side), out


def test_the_start_that_learned() -> None:
    """Recorded: the last start's. Older rows, which lack it, follow train()'s rule: the restart after
    DEFAULT_START_SEEDS collapsed seeds switches to the mean-brightness start."""
    row = {"mean_init": False, "restarts": script.DEFAULT_START_SEEDS}
    assert script.mean_start_used(row)
    assert not script.mean_start_used({**row, "restarts": script.DEFAULT_START_SEEDS - 1})
    assert script.mean_start_used({**row, "restarts": 0, "mean_init": True})
    assert not script.mean_start_used({**row, "mean_init_used": False})  # what was recorded wins


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--shard", "3/2"], "--shard takes i/n"),
        (["--shard", "x"], "--shard takes i/n"),
        (["--table-only"], "needs --record"),
    ],
)
def test_bad_options_say_what_to_do(bad: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit):
        script.main(bad)
    assert message in capsys.readouterr().err
