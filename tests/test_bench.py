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
    import convae.bench_loops as loops

    real_train = loops.train

    def train(*args, engine: str = "eager", **kwargs):
        if engine == "graph":
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return real_train(*args, engine=engine, **kwargs)

    monkeypatch.setattr(loops, "train", train)
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


# ------------------------------------------------------------- kernels, the floor, the instruction set


def _column(out: str, row: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith(row))
    return line[len(row) :].split()


def test_bench_times_each_kernel_mode_side_by_side_against_the_plain_loop_and_the_floor(
    data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from convae.bench import cli

    modes = ["default", "auto", "im2col", "per-image", "channels-last"]
    code = cli(["--data", str(data_root), "--steps", "3", "--epochs", "2", "--kernels", *modes])
    assert code == 0
    out = capsys.readouterr().out
    assert re.search(r"^cpu .*: lscpu flags .*\((AVX2|AVX-512|no AVX2)\); torch uses \w+", out, re.M)
    m = re.search(r"^sgemm 1024x1024 on \d+ threads: (\d+) GFLOP/s; a step of 32 is 538 MFLOP .*", out, re.M)
    assert m and int(m.group(1)) > 0, out
    assert re.search(r"^kernels \(chosen by measurement in \d+ ms, the engine runs reuse it", out, re.M)
    assert re.search(r"^  decoder\.net\.5: forward per-image; input_grad onednn; weight_grad onednn$", out, re.M)
    header = next(line for line in out.splitlines() if line.strip().startswith("plain loop"))
    titles = ["plain loop", "engine (default kernels)", "engine", "engine (im2col kernels)"]
    titles += ["engine (per-image kernels)", "engine (channels-last kernels)"]
    assert [t.strip() for t in re.split(r"\s{2,}", header.strip())] == titles
    assert _column(out, "x plain (same round)")[0] == "1.00x"
    assert all(re.fullmatch(r"\d+\.\d\dx", v) for v in _column(out, "x plain (same round)"))
    assert all(re.fullmatch(r"\d+%", v) for v in _column(out, "share of the floor"))
    # every kernel mode trains like the plain loop: within the 2 % the bench reports
    val = [float(v) for v in _column(out, "epoch 2 val loss (final)")]
    assert len(val) == 6 and all(v == pytest.approx(val[0], rel=0.02) for v in val)
    for title in titles[1:]:
        assert re.search(rf"^share of the floor: {re.escape(title)} \d+%, plain \d+%$", out, re.M), title


@pytest.mark.parametrize(("sizes", "want"), [((32, 32, 10), 537_886_720), ((4, 8, 3), None)])
def test_the_floor_counts_forward_and_backward_of_every_layer(sizes: tuple[int, int, int], want: int | None) -> None:
    """2 FLOPs a multiply-add: forward, weight gradient and (but for the first layer) input gradient."""
    from convae.bench_machine import step_flops
    from convae.model import AutoEncoder

    q1, q2, k = sizes
    b = 32
    macs_first = b * q1 * 14 * 14 * 25  # Conv2d(1 -> Q1), 28 -> 14: its input needs no gradient
    macs = [
        b * q2 * 7 * 7 * q1 * 25,  # Conv2d(Q1 -> Q2), 14 -> 7
        b * q2 * 7 * 7 * k,  # Linear(Q2*7*7 -> K)
        b * k * q2 * 7 * 7,  # Linear(K -> Q2*7*7)
        b * q2 * 7 * 7 * q1 * 25,  # ConvTranspose2d(Q2 -> Q1), 7 -> 14
        b * q1 * 14 * 14 * 25,  # ConvTranspose2d(Q1 -> 1), 14 -> 28
    ]
    expected = 2 * 2 * macs_first + 2 * 3 * sum(macs)
    assert step_flops(AutoEncoder(q1, q2, k), b) == expected
    if want is not None:
        assert expected == want  # about 538 MFLOP for the assignment's model


def test_avx2_option_runs_the_bench_again_in_a_child_limited_to_avx2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    import convae.bench as bench

    for name in bench.AVX2_ENV:
        monkeypatch.delenv(name, raising=False)
    calls = []

    def run(argv, env, **_kwargs):
        calls.append((argv, env))
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr(bench.subprocess, "run", run)
    argv = ["--data", str(tmp_path / "nowhere"), "--steps", "5", "--epochs", "1", "--threads", "2", "--repeat", "2"]
    argv += ["--kernels", "default", "auto", "--profile", "4", "--isa", "avx2", "--seed", "7"]
    assert bench.cli(argv) == 3  # the child's exit status, and nothing run here (no data looked for)
    assert not (tmp_path / "nowhere").exists()
    ((child, env),) = calls
    assert child[:3] == [bench.sys.executable, "-m", "convae.bench"]
    for name, value in bench.AVX2_ENV.items():
        assert env[name] == value
    assert vars(bench.build_parser().parse_args(child[3:])) == vars(bench.build_parser().parse_args(argv))
    assert "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2" in capsys.readouterr().out


def test_the_cpu_line_says_which_vector_instructions_there_are(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    import convae.bench_machine as machine

    def lscpu(flags: str):
        out = f"Architecture: x86_64\nModel name:   Some CPU\nFlags:        fpu sse2 {flags} bmi2\n"
        return lambda *_a, **_k: subprocess.CompletedProcess(["lscpu"], 0, out, "")

    monkeypatch.setattr(machine.subprocess, "run", lscpu("avx avx2 fma avx512f avx512bw"))
    line = machine.cpu_line()
    assert line.startswith("cpu Some CPU: lscpu flags avx avx2 fma avx512f avx512bw (AVX-512); torch uses ")
    monkeypatch.setattr(machine.subprocess, "run", lscpu("avx avx2 fma"))
    assert "lscpu flags avx avx2 fma (AVX2);" in machine.cpu_line()
    for name, value in machine.AVX2_ENV.items():
        monkeypatch.setenv(name, value)
    assert machine.cpu_line().endswith(
        ", limited to AVX2 by ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2"
    )


@pytest.mark.slow
def test_avx2_child_runs_for_real(data_root: Path) -> None:
    """The child process starts with the three variables set, so torch itself runs at AVX2 at most."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "convae.bench", "--data", str(data_root), "--steps", "2", "--epochs", "1"]
    done = subprocess.run([*argv, "--isa", "avx2", "--kernels", "default"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "running again with ATEN_CPU_CAPABILITY=avx2" in done.stdout
    assert re.search(r"torch uses AVX2, limited to AVX2 by ATEN_CPU_CAPABILITY=avx2 ", done.stdout)
    assert re.search(r"^engine \(default kernels\) / plain, training samples/s", done.stdout, re.M)
