"""`python -m convae bench`: the assignment's plain training loop against the project's engine(s).

Both train the same AutoEncoder by the same recipe (batch 32, Adam lr 0.001, MSE, shuffled each
epoch, validation on the 10,000 test images in batches of 100) with the same seed, data and device,
in one process, back to back. The plain loop is written the way the assignment reads: torchvision's
MNIST with ToTensor, a DataLoader, a non-fused Adam and `loss.item()` every step. `--engine` names
the engines to time (convae.engines.ENGINES; the graph engines are for CUDA). The bench
measures and prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import traceback
from dataclasses import dataclass, field

import torch
from torch import nn

from convae.data import ensure_data, load_splits
from convae.engines import EngineSpec
from convae.model import AutoEncoder
from convae.train import Progress, TrainConfig, pick_device, train

BATCH = 32
VAL_BATCH = 100


@dataclass
class LoopResult:
    """What one loop did: per-epoch training seconds, epoch seconds (train + validation), losses."""

    name: str
    samples_per_epoch: int
    train_s: list[float] = field(default_factory=list)
    epoch_s: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0  # the whole loop, set-up (data loading, compilation) included

    @property
    def samples_per_s(self) -> float:
        """Training images per second over all epochs, validation excluded."""
        return self.samples_per_epoch * len(self.train_s) / sum(self.train_s)


def _torchvision_sets(root, dataset: str, train_size: int | None):
    """The assignment's data sets: torchvision's class with ToTensor (first `train_size` images)."""
    from torch.utils.data import Subset
    from torchvision.transforms import ToTensor

    from convae.data import DATASETS

    cls = DATASETS[dataset].torchvision_class()
    train_set = cls(str(root), train=True, transform=ToTensor())
    val_set = cls(str(root), train=False, transform=ToTensor())
    if train_size is not None:
        train_set = Subset(train_set, range(train_size))
    return train_set, val_set


class _PlainLoop:
    """The assignment's training loop as a student would write it: model, Adam, MSE, DataLoader."""

    def __init__(self, train_set, seed: int, device: torch.device) -> None:
        from torch.utils.data import DataLoader

        torch.manual_seed(seed)
        self.device = device
        self.model = AutoEncoder(32, 32, 10).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss_fn = nn.MSELoss()
        gen = torch.Generator().manual_seed(seed)
        self.loader = DataLoader(train_set, batch_size=BATCH, shuffle=True, generator=gen)

    def train_epoch(self) -> float:
        """One shuffled pass, `loss.item()` every step; returns the average training loss."""
        self.model.train()
        total, steps = 0.0, 0
        for x, _ in self.loader:
            x = x.to(self.device)
            loss = self.loss_fn(self.model(x), x)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.item()
            steps += 1
        return total / steps


def plain_loop(root, dataset: str, epochs: int, train_size: int | None, seed: int, device: torch.device) -> LoopResult:
    """The assignment's loop as a student would write it; timed per epoch."""
    from torch.utils.data import DataLoader

    train_set, val_set = _torchvision_sets(root, dataset, train_size)
    loop = _PlainLoop(train_set, seed, device)
    val_loader = DataLoader(val_set, batch_size=VAL_BATCH)
    out = LoopResult("plain loop", len(train_set))
    for _epoch in range(epochs):
        t0 = time.perf_counter()
        train_loss = loop.train_epoch()
        t1 = time.perf_counter()
        loop.model.eval()
        val_total = 0.0
        with torch.no_grad():
            for x, _ in val_loader:
                x = x.to(device)
                val_total += loop.loss_fn(loop.model(x), x).item() * x.shape[0]
        t2 = time.perf_counter()
        out.train_s.append(t1 - t0)
        out.epoch_s.append(t2 - t0)
        out.train_losses.append(train_loss)
        out.val_losses.append(val_total / len(val_set))
    return out


def engine_name(engine: str) -> str:
    return "engine" if engine == "eager" else f"engine {engine}"


def engine_loop(splits, config: TrainConfig, device: torch.device, engine: str = "eager") -> LoopResult:
    """convae.train.train with the given engine, timed from outside by its events.

    An epoch's training phase runs from the 'start' event (epoch 1) or the previous 'epoch' event to
    the 'step' event of its last step; its validation ends at its 'epoch' event. So the engine's own
    reporting and previews count against it.
    """
    marks: list[tuple[float, Progress]] = []

    def on_event(p: Progress) -> None:
        marks.append((time.perf_counter(), p))

    result = train(config, splits, on_event, device=str(device), engine=engine)
    n = config.train_size or splits.train_images.shape[0]
    out = LoopResult(engine_name(engine), n)
    start = next(t for t, p in marks if p.kind == "start")
    for row in result.history.epochs:
        e = row["epoch"]
        end_train = max(t for t, p in marks if p.kind == "step" and p.epoch == e and p.step == p.steps_per_epoch)
        end_epoch = next(t for t, p in marks if p.kind == "epoch" and p.epoch == e)
        out.train_s.append(end_train - start)
        out.epoch_s.append(end_epoch - start)
        out.train_losses.append(row["train_loss"])
        out.val_losses.append(row["val_loss"])
        start = end_epoch
    return out


def profile_loops(root, dataset: str, splits, steps: int, seed: int, device: torch.device, rows: int = 14) -> None:
    """Profile `steps` training steps of each loop (the second of two short epochs, so warmed up)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    n = min(steps * BATCH, splits.train_images.shape[0])

    train_set, _ = _torchvision_sets(root, dataset, n)
    loop = _PlainLoop(train_set, seed, device)
    loop.train_epoch()  # warm-up
    prof = profile(activities=activities)
    prof.start()
    t0 = time.perf_counter()
    loop.train_epoch()
    prof.stop()
    steps_done = len(loop.loader)
    plain_ms = (time.perf_counter() - t0) / steps_done * 1e3
    print(f"\nProfile of the plain loop, {steps_done} steps ({plain_ms:.1f} ms/step under the profiler):")
    print(prof.key_averages().table(sort_by=sort, row_limit=rows))

    prof = profile(activities=activities)
    times: list[float] = []

    def on_event(p: Progress) -> None:
        if p.kind == "epoch" and p.epoch == 1:
            times.append(time.perf_counter())
            prof.start()
        elif p.kind == "step" and p.epoch == 2 and p.step == p.steps_per_epoch:
            prof.stop()
            times.append(time.perf_counter())

    config = TrainConfig(epochs=2, train_size=n, seed=seed, dataset=dataset, on_collapse="continue")
    train(config, splits, on_event, device=str(device))
    engine_ms = (times[1] - times[0]) / steps_done * 1e3
    note = ""
    if device.type == "cpu" and torch.get_num_threads() >= 2:
        note = "; the engine computes half of each batch on a second thread, whose ops are not listed"
    print(f"\nProfile of the engine, {steps_done} steps ({engine_ms:.1f} ms/step under the profiler{note}):")
    print(prof.key_averages().table(sort_by=sort, row_limit=rows))


def _load() -> str:
    """The 1, 5 and 15 minute load averages (runnable threads), where the platform has them."""
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def format_table(runs: list[LoopResult]) -> str:
    """One column per run: samples/s, seconds and losses per epoch."""
    widths = [max(14, len(r.name) + 2) for r in runs]

    def _row(label: str, values: list[str]) -> str:
        return f"{label:<28}" + "".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))

    epochs = len(runs[0].train_s)
    lines = [_row("", [r.name for r in runs])]
    lines.append(_row("train samples/s", [f"{r.samples_per_s:,.0f}" for r in runs]))
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


def main(args: argparse.Namespace) -> int:
    """Run the comparison and print the table; returns 0, or 1 when an engine failed (the others still ran)."""
    threads = getattr(args, "threads", None)
    repeat = getattr(args, "repeat", 1) or 1
    profile_steps = getattr(args, "profile", None)
    engines = list(dict.fromkeys(getattr(args, "engine", None) or ["eager"]))
    for name in engines:
        EngineSpec.parse(name)  # before anything runs: ValueError listing the valid names
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
        f"load average at start {_load()}",
        flush=True,
    )
    if profile_steps:
        profile_loops(root, args.dataset, splits, profile_steps, args.seed, device)

    loops = ["plain", *engines]
    runs: list[LoopResult] = []
    failed: dict[str, str] = {}
    for i in range(repeat):
        order = loops if i % 2 == 0 else loops[::-1]
        for which in order:
            label = "plain" if which == "plain" else engine_name(which)
            print(f"run {i + 1}/{repeat}: {label}…", flush=True)
            t0 = time.perf_counter()
            try:
                if which == "plain":
                    r = plain_loop(root, args.dataset, args.epochs, train_size, args.seed, device)
                else:
                    r = engine_loop(splits, config, device, which)
            except Exception as e:  # one engine failing must not cost the others' figures
                if which == "plain":
                    raise
                failed.setdefault(which, f"{type(e).__name__}: {e}")
                print(f"{label} failed: {failed[which]}", flush=True)
                traceback.print_exc()
                continue
            r.wall_s = time.perf_counter() - t0
            if repeat > 1:
                r.name += f" #{i + 1}"
            runs.append(r)
    rank = {label: i for i, label in enumerate(["plain loop", *map(engine_name, engines)])}
    runs.sort(key=lambda r: (rank[r.name.split(" #")[0]], r.name))
    print(f"\nload average at end {_load()} (other programs share the CPU: compare only within one run)")
    print(format_table(runs))

    how = f" (medians of {repeat} runs)" if repeat > 1 else ""
    plain = [r for r in runs if r.name.startswith("plain")]
    p_rate = statistics.median(r.samples_per_s for r in plain)
    p_val = statistics.median(r.val_losses[-1] for r in plain)
    p_curve = [statistics.median(r.val_losses[e] for r in plain) for e in range(args.epochs)]
    for eng in engines:
        name = engine_name(eng)
        mine = [r for r in runs if r.name.split(" #")[0] == name]
        if not mine:
            print(f"\n{name}: failed ({failed[eng]})")
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
    return 1 if failed else 0
