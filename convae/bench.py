"""`python -m convae bench`: the assignment's plain training loop against the project's engine(s).

Both train the same AutoEncoder by the same recipe (batch 32, Adam lr 0.001, MSE, shuffled each
epoch, validation on the 10,000 test images in batches of 100) with the same seed, data and device,
in one process, back to back. The plain loop is written the way the assignment reads: torchvision's
MNIST with ToTensor, a DataLoader, a non-fused Adam and `loss.item()` every step. `--engine` names
the engines to time (convae.engines.ENGINES; the graph engines are for CUDA), `--kernels` the CPU
kernel modes to time them with (convae.engines.KERNEL_MODES: "auto", chosen by measurement, against
"default", the fixed choice, side by side). Every run is also set against the floor: the step's
FLOPs (forward and backward of each convolution and linear layer) at the machine's sgemm rate,
measured here. `--isa avx2` runs the whole bench again in a child process limited to AVX2 (ATen,
oneDNN and MKL), so that an AVX-512 machine shows what an AVX2 one would. The bench measures and
prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import traceback

import torch

from convae.bench_loops import BATCH, VAL_BATCH, LoopResult, engine_loop, engine_name, plain_loop, profile_loops
from convae.bench_machine import (
    AVX2_ENV,
    SGEMM_N,
    cpu_line,
    format_table,
    load_average,
    print_kernels,
    sgemm_rate,
    step_flops,
)
from convae.data import DATASETS, DataError, data_root, ensure_data, load_splits
from convae.engines import ENGINES, KERNEL_MODES, EngineSpec
from convae.model import AutoEncoder
from convae.train import TrainConfig, pick_device


def _run_as_avx2(args: argparse.Namespace) -> int:
    """The same bench in a child process whose torch, oneDNN and MKL are limited to AVX2 from the start."""
    argv = [sys.executable, "-m", "convae.bench", *to_argv(args)]
    env = {**os.environ, **AVX2_ENV}
    print(f"running again with {' '.join(f'{k}={v}' for k, v in AVX2_ENV.items())}: {' '.join(argv)}", flush=True)
    return subprocess.run(argv, env=env, check=False).returncode


# ------------------------------------------------------------------------------------- command line


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def add_arguments(b: argparse.ArgumentParser) -> None:
    """The bench's options besides --data and --dataset (shared by `python -m convae bench`)."""
    b.add_argument("--device", default="cpu")
    b.add_argument("--epochs", type=positive_int, default=2)
    b.add_argument("--steps", type=positive_int, default=None, help="limit the steps per epoch")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads (default: torch's)")
    b.add_argument("--repeat", type=positive_int, default=1, help="run all loops this many times, alternating")
    b.add_argument(
        "--engine",
        nargs="+",
        choices=ENGINES,
        default=["eager"],
        help="the engines to time against the plain loop (eager; the graph engines are for CUDA)",
    )
    b.add_argument(
        "--kernels",
        nargs="+",
        choices=KERNEL_MODES,
        default=["auto"],
        help="the CPU kernel modes to time each engine with: auto (chosen by measurement, the default), "
        "default (the fixed choice), or one candidate everywhere; e.g. --kernels default auto",
    )
    b.add_argument(
        "--isa",
        choices=("native", "avx2"),
        default="native",
        help="avx2: run the bench in a child process limited to AVX2 (what an AVX2 CPU would do)",
    )
    b.add_argument(
        "--profile",
        type=positive_int,
        default=None,
        metavar="STEPS",
        help="first profile STEPS training steps of each loop (torch.profiler) and print the top ops",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m convae.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help=f"data root (default: $CONVAE_DATA_DIR or {data_root()})")
    p.add_argument("--dataset", choices=list(DATASETS), default="mnist")
    add_arguments(p)
    return p


def to_argv(args: argparse.Namespace) -> list[str]:
    """The command line that gives `args` back (for the AVX2 child process)."""
    out = ["--dataset", args.dataset, "--device", args.device, "--epochs", str(args.epochs), "--seed", str(args.seed)]
    for option in ("data", "steps", "threads", "profile"):
        if getattr(args, option, None) is not None:
            out += [f"--{option}", str(getattr(args, option))]
    out += ["--repeat", str(getattr(args, "repeat", 1) or 1)]
    out += ["--engine", *(getattr(args, "engine", None) or ["eager"])]
    out += ["--kernels", *(getattr(args, "kernels", None) or ["auto"])]
    return [*out, "--isa", getattr(args, "isa", "native")]


def main(args: argparse.Namespace) -> int:
    """Run the comparison and print the table; returns 0, or 1 when an engine failed (the others still ran)."""
    threads = getattr(args, "threads", None)
    repeat = getattr(args, "repeat", 1) or 1
    profile_steps = getattr(args, "profile", None)
    engines = list(dict.fromkeys(getattr(args, "engine", None) or ["eager"]))
    kernel_modes = list(dict.fromkeys(getattr(args, "kernels", None) or ["auto"]))
    for name in engines:
        EngineSpec.parse(name)  # before anything runs: ValueError listing the valid names
    for mode in kernel_modes:
        if mode not in KERNEL_MODES:
            raise ValueError(f"kernels must be one of {', '.join(KERNEL_MODES)}, got {mode!r}.")
    if getattr(args, "isa", "native") == "avx2" and any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        return _run_as_avx2(args)
    if threads:
        torch.set_num_threads(threads)
    device = pick_device(args.device)
    root = ensure_data(args.data, args.dataset, progress=lambda m: print(m, flush=True))
    splits = load_splits(root, args.dataset)
    n_all = splits.train_images.shape[0]
    train_size = min(args.steps * BATCH, n_all) if args.steps else None
    n = train_size or n_all
    config = TrainConfig(
        epochs=args.epochs, train_size=train_size, seed=args.seed, dataset=args.dataset, on_collapse="continue"
    )

    print(
        f"convae bench: {args.dataset}, {n:,} training images ({-(-n // BATCH)} steps of {BATCH}) per epoch, "
        f"{args.epochs} epochs, validation on {splits.val_images.shape[0]:,} images in batches of {VAL_BATCH}, "
        f"seed {args.seed}\ndevice {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average at start {load_average()}\n{cpu_line()}",
        flush=True,
    )
    flops = step_flops(AutoEncoder(config.q1, config.q2, config.k), BATCH)
    rates = [sgemm_rate()] if device.type == "cpu" else []
    if device.type == "cpu":
        print(
            f"sgemm {SGEMM_N}x{SGEMM_N} on {torch.get_num_threads()} threads: {rates[0] / 1e9:.0f} GFLOP/s; "
            f"a step of {BATCH} is {flops / 1e6:.0f} MFLOP (forward and backward of every convolution and linear "
            f"layer), so the floor is {rates[0] / flops * BATCH:,.0f} images/s",
            flush=True,
        )
        if any(not EngineSpec.parse(e).graph for e in engines):
            for mode in kernel_modes:
                print_kernels(splits.train_images[: 2 * BATCH], config, mode)
    if profile_steps:
        profile_loops(root, args.dataset, splits, profile_steps, args.seed, device, kernel_modes)

    loops = [("plain", "")]
    for engine in engines:
        modes = ["auto"] if EngineSpec.parse(engine).graph else kernel_modes
        loops += [(engine, mode) for mode in modes]
    runs: list[LoopResult] = []
    failed: dict[str, str] = {}
    for i in range(repeat):
        order = loops if i % 2 == 0 else loops[::-1]
        for which, mode in order:
            label = "plain" if which == "plain" else engine_name(which, mode)
            print(f"run {i + 1}/{repeat}: {label}…", flush=True)
            if rates:
                rates.append(sgemm_rate())
            t0 = time.perf_counter()
            try:
                if which == "plain":
                    r = plain_loop(root, args.dataset, args.epochs, train_size, args.seed, device)
                else:
                    r = engine_loop(splits, config, device, which, mode)
            except Exception as e:  # one engine failing must not cost the others' figures
                if which == "plain":
                    raise
                failed.setdefault(label, f"{type(e).__name__}: {e}")
                print(f"{label} failed: {failed[label]}", flush=True)
                traceback.print_exc()
                continue
            r.wall_s = time.perf_counter() - t0
            r.round = i
            r.sgemm = rates[-1] if rates else None
            if repeat > 1:
                r.name += f" #{i + 1}"
            runs.append(r)
    names = ["plain loop", *(engine_name(e, m) for e, m in loops[1:])]
    rank = {label: i for i, label in enumerate(names)}
    runs.sort(key=lambda r: (rank[r.name.split(" #")[0]], r.name))
    print(f"\nload average at end {load_average()} (other programs share the CPU: compare only within one run)")
    if device.type == "cpu":
        rates.append(sgemm_rate())
        print(
            f"sgemm at the end: {rates[-1] / 1e9:.0f} GFLOP/s; the floor below uses the best of the {len(rates)} "
            f"measurements (before each run, at the start and the end), the least disturbed by other programs: "
            f"{max(rates) / 1e9:.0f} GFLOP/s, {max(rates) / flops * BATCH:,.0f} images/s"
        )
    floor = max(rates) / flops * BATCH if rates else None
    print(format_table(runs, floor))

    how = f" (medians of {repeat} runs)" if repeat > 1 else ""
    plain = [r for r in runs if r.name.startswith("plain")]
    p_rate = statistics.median(r.samples_per_s for r in plain)
    p_val = statistics.median(r.val_losses[-1] for r in plain)
    p_curve = [statistics.median(r.val_losses[e] for r in plain) for e in range(args.epochs)]
    for name in names[1:]:
        mine = [r for r in runs if r.name.split(" #")[0] == name]
        if not mine:
            print(f"\n{name}: failed ({failed[name]})")
            continue
        e_rate = statistics.median(r.samples_per_s for r in mine)
        e_val = statistics.median(r.val_losses[-1] for r in mine)
        curve = [statistics.median(r.val_losses[e] for r in mine) for e in range(args.epochs)]
        worst = max(abs(c - p) / p for c, p in zip(curve, p_curve, strict=True))
        print(f"\n{name} / plain, training samples/s{how}: {e_rate:,.0f} / {p_rate:,.0f} = {e_rate / p_rate:.2f}x")
        print(
            f"final validation loss{how}: {name} {e_val:.6f}, plain {p_val:.6f}, "
            f"relative difference {(e_val - p_val) / p_val:+.2%}; largest difference over the epochs {worst:.2%}"
        )
        e_cpu = statistics.median(r.cpu_ms_per_step for r in mine)
        p_cpu = statistics.median(r.cpu_ms_per_step for r in plain)
        print(f"CPU time per training step{how}: {name} {e_cpu:.1f} ms, plain {p_cpu:.1f} ms (all threads)")
        if floor:
            print(f"share of the floor{how}: {name} {e_rate / floor:.0%}, plain {p_rate / floor:.0%}")
    return 1 if failed else 0


def cli(argv: list[str] | None = None) -> int:
    """`python -m convae.bench`: the bench on its own (the AVX2 child process runs this)."""
    args = build_parser().parse_args(argv)
    try:
        return main(args)
    except (DataError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
