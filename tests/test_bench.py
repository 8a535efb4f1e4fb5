"""`python -m convae bench`: both loops run on the same data and the table compares them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from convae.__main__ import main


def test_bench_times_the_plain_loop_and_each_engine(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--data", str(data_root), "--steps", "3", "--epochs", "2", "--engine", "eager", "graph"])
    assert code == 0
    out = capsys.readouterr().out
    assert "96 training images (3 steps of 32) per epoch, 2 epochs" in out
    header = next(line for line in out.splitlines() if "plain loop" in line and "engine graph" in line)
    assert header.split() == ["plain", "loop", "engine", "engine", "graph"]
    val = {}
    for line in out.splitlines():
        if line.startswith("epoch 2 val loss (final)"):
            val = [float(v) for v in line.split()[-3:]]
    # the same batches, seed and recipe: the engines land where the plain loop does
    assert len(val) == 3 and val[1] == pytest.approx(val[0], rel=0.02) and val[2] == pytest.approx(val[0], rel=0.02)
    for name in ("engine", "engine graph"):
        m = re.search(rf"^{name} / plain, training samples/s: [\d,]+ / [\d,]+ = (\d+\.\d\d)x$", out, re.M)
        assert m and float(m.group(1)) > 0, out
    assert re.search(r"^final validation loss: engine graph .*largest difference over the epochs \d", out, re.M)


def test_bench_refuses_an_unknown_engine(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--data", str(data_root), "--engine", "turbo"])
    assert "invalid choice: 'turbo'" in capsys.readouterr().err


def test_a_failing_engine_does_not_cost_the_others_figures(
    data_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import convae.bench as bench

    real_train = bench.train

    def train(*args, engine: str = "eager", **kwargs):
        if engine == "graph":
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return real_train(*args, engine=engine, **kwargs)

    monkeypatch.setattr(bench, "train", train)
    code = main(["bench", "--data", str(data_root), "--steps", "2", "--epochs", "1", "--engine", "graph", "eager"])
    assert code == 1
    out = capsys.readouterr().out
    assert "engine graph failed: RuntimeError: CUDA error: operation not permitted" in out
    assert re.search(r"^engine / plain, training samples/s: [\d,]+ / [\d,]+ = \d+\.\d\dx$", out, re.M)
    assert "\nengine graph: failed (RuntimeError: CUDA error" in out


def test_bench_checks_engine_names_before_any_work(tmp_path: Path) -> None:
    """Called as a library (no argparse choices), an unknown engine is refused before data are looked for."""
    import argparse

    import convae.bench as bench

    args = argparse.Namespace(data=str(tmp_path / "no-data"), dataset="mnist", device="cpu", engine=["eager", "turbo"])
    with pytest.raises(ValueError, match=r"^engine must be one of eager, graph, .*got 'turbo'\.$"):
        bench.main(args)
    assert not (tmp_path / "no-data").exists()
