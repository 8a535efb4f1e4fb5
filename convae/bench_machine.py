"""What `python -m convae bench` measures besides the two loops: the machine (its CPU and instruction
set, the sgemm rate, the training step's FLOPs and so the floor), the CPU kernels the engine runs,
and the table it prints.

The floor is what one training step would cost if every FLOP ran at the machine's sgemm rate: the
step's FLOPs (`step_flops`) divided by the rate `sgemm_rate` measures on the bench's threads.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import TYPE_CHECKING

import torch
from torch import nn

from convae.engines import EngineSpec, open_stepper
from convae.kernel_tune import Tuning, tune
from convae.model import AutoEncoder
from convae.train import TrainConfig

if TYPE_CHECKING:
    from convae.bench_loops import LoopResult

# Set before torch is imported, these keep ATen's kernels, oneDNN and MKL to AVX2 on any x86 CPU.
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
SGEMM_N = 1024  # the floor's matrix multiplication: (n x n) @ (n x n)


def step_flops(model: nn.Module, batch: int) -> int:
    """The floating-point operations of one training step of `model` on `batch` images: for every
    convolution, transposed convolution and linear layer, 2 per multiply-add of its forward, as many
    for its weight gradient, and as many again for its input gradient unless its input needs none (the
    first layer's). Elementwise work, the loss and Adam are left out: they are a few percent."""
    total = 0

    def count(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        x = args[0]
        if isinstance(m, nn.Linear):
            macs = out.numel() * m.in_features
        elif isinstance(m, nn.ConvTranspose2d):  # every input pixel meets every weight once
            macs = x.numel() * m.weight[0].numel() // m.groups
        else:  # every output pixel meets a whole kernel
            macs = out.numel() * m.weight[0].numel()
        total += 2 * macs * (3 if x.requires_grad else 2)

    layers = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, layers)]
    try:
        with torch.enable_grad():
            model(torch.zeros(batch, 1, 28, 28))
    finally:
        for h in hooks:
            h.remove()
    return total


def sgemm_rate(n: int = SGEMM_N, reps: int = 8) -> float:
    """FLOP/s of an (n x n) @ (n x n) float32 product on this thread's intra-op threads, best of `reps`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up (MKL's set-up, first touch)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def cpu_line() -> str:
    """The CPU and its vector instructions as lscpu names them, and the instruction set torch uses."""
    model, flags = "", []
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name" and not model:
            model = value.strip()
        elif key.strip() == "Flags":
            flags = value.split()
    vector = [f for f in flags if f.startswith(("avx", "fma", "amx"))]
    kind = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2" if flags else "unknown"
    emulated = all(os.environ.get(k) == v for k, v in AVX2_ENV.items())
    limit = f", limited to AVX2 by {' '.join(f'{k}={v}' for k, v in AVX2_ENV.items())}" if emulated else ""
    return (
        f"cpu {model or 'unknown'}: lscpu flags {' '.join(vector) or 'n/a'} ({kind}); "
        f"torch uses {torch.backends.cpu.get_cpu_capability()}{limit}"
    )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (runnable threads), where the platform has them."""
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def choose_kernels(
    train_x: torch.Tensor, config: TrainConfig, kernels: str
) -> tuple[dict[str, str], Tuning | None, float]:
    """Open the eager engine's stepper as train() does (same threads, batch part and model shapes) and
    return its kernel choice, the tuning behind it ("auto" only) and the seconds that took. With "auto"
    the candidates are timed now and the choice is kept for this process: the engine runs that follow
    reuse it."""
    model = AutoEncoder(config.q1, config.q2, config.k)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    t0 = time.perf_counter()
    with open_stepper(
        EngineSpec.parse("eager"), model, optimizer, nn.MSELoss(), train_x, config.batch_size, kernels
    ) as s:
        took = time.perf_counter() - t0
        tuning = None
        if kernels == "auto" and s.kernels:  # the same thread count and shapes: the choice just made, cached
            tuning = tune(model, train_x[: s.part].unsqueeze(1).float().div(255))
        return s.kernels, tuning, took


def print_kernels(train_x: torch.Tensor, config: TrainConfig, mode: str) -> None:
    """The eager engine's kernels in this mode (with "auto", chosen now, for the runs to come)."""
    kernels, tuning, took = choose_kernels(train_x, config, mode)
    how = mode
    if mode == "auto":
        how = (
            f"chosen by measurement in {took * 1e3:.0f} ms, the engine runs reuse it; in brackets each "
            "candidate's best time in the tuning steps"
        )
    print(f"kernels ({how}):\n{format_kernels(kernels, tuning)}", flush=True)


def format_kernels(kernels: dict[str, str], tuning: Tuning | None = None) -> str:
    """The kernel choice, one line per layer; with a Tuning, each candidate's best time in the steps."""
    lines = [f"  layout {kernels.get('layout', 'nchw')}"]
    layers = dict.fromkeys(k.rsplit(".", 1)[0] for k in kernels if k != "layout")
    for layer in layers:
        parts = []
        for product in ("forward", "input_grad", "weight_grad"):
            chosen = kernels.get(f"{layer}.{product}")
            if chosen is None:
                continue
            times = (tuning.seconds.get(layer, {}).get(product) or {}) if tuning else {}
            detail = ", ".join(f"{c} {t * 1e3:.2f}" for c, t in sorted(times.items(), key=lambda ct: ct[1]))
            parts.append(f"{product} {chosen}" + (f" ({detail} ms)" if detail else ""))
        lines.append(f"  {layer}: " + "; ".join(parts))
    if tuning and tuning.step_s:
        steps = ", ".join(f"{layout} {t * 1e3:.2f} ms" for layout, t in tuning.step_s.items())
        lines.append(
            f"  forward and backward of the tuning batch, estimated from its best parts: {steps}; the chosen "
            f"convolution kernels {tuning.conv_s * 1e3:.2f} ms of it ({tuning.rounds} timed rounds)"
        )
    return "\n".join(lines)


def format_table(runs: list[LoopResult], floor: float | None = None) -> str:
    """One column per run: samples/s (against the plain loop of its round and the floor), seconds and
    losses per epoch."""
    widths = [max(14, len(r.name) + 2) for r in runs]

    def _row(label: str, values: list[str]) -> str:
        return f"{label:<28}" + "".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))

    plain = {r.round: r for r in runs if r.name.startswith("plain")}
    epochs = len(runs[0].train_s)
    lines = [_row("", [r.name for r in runs])]
    lines.append(_row("train samples/s", [f"{r.samples_per_s:,.0f}" for r in runs]))
    pairs = [plain.get(r.round) for r in runs]
    lines.append(
        _row(
            "x plain (same round)",
            [f"{r.samples_per_s / p.samples_per_s:.2f}x" if p else "" for r, p in zip(runs, pairs, strict=True)],
        )
    )
    if floor:
        lines.append(_row("share of the floor", [f"{r.samples_per_s / floor:.0%}" for r in runs]))
    lines.append(_row("CPU ms per step (training)", [f"{r.cpu_ms_per_step:.1f}" for r in runs]))
    if any(r.sgemm for r in runs):
        lines.append(_row("sgemm GFLOP/s before it", [f"{r.sgemm / 1e9:.0f}" if r.sgemm else "" for r in runs]))
    lines.append(_row(f"{epochs} epochs s (train + val)", [f"{sum(r.epoch_s):.1f}" for r in runs]))
    lines.append(_row("whole run s (with set-up)", [f"{r.wall_s:.1f}" for r in runs]))
    for e in range(epochs):
        lines.append(_row(f"epoch {e + 1} s (train + val)", [f"{r.epoch_s[e]:.1f}" for r in runs]))
    for e in range(epochs):
        lines.append(_row(f"epoch {e + 1} train loss", [f"{r.train_losses[e]:.6f}" for r in runs]))
    for e in range(epochs):
        label = f"epoch {e + 1} val loss" + (" (final)" if e == epochs - 1 else "")
        lines.append(_row(label, [f"{r.val_losses[e]:.6f}" for r in runs]))
    return "\n".join(lines)
