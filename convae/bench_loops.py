"""The two loops `python -m convae bench` times: the assignment's plain loop (torchvision's MNIST with
ToTensor, a DataLoader, a non-fused Adam, `loss.item()` every step) and the project's engine
(convae.train.train, in a given kernel mode), each as a LoopResult; and torch.profiler tables of both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from convae.engines import KERNELS_ENV, EngineSpec
from convae.model import AutoEncoder
from convae.train import Progress, TrainConfig, train

BATCH = 32
VAL_BATCH = 100


@dataclass
class LoopResult:
    """What one loop did: per-epoch training seconds, epoch seconds (train + validation), losses."""

    name: str
    samples_per_epoch: int
    train_s: list[float] = field(default_factory=list)
    train_cpu_s: list[float] = field(default_factory=list)  # the process's CPU time in those seconds
    epoch_s: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0  # the whole loop, set-up (data loading, compilation) included
    round: int = 0  # which of the --repeat rounds it ran in (the plain loop of the same round is its pair)
    sgemm: float | None = None  # FLOP/s of the floor's sgemm just before this run (shows the load it met)

    @property
    def samples_per_s(self) -> float:
        """Training images per second over all epochs, validation excluded."""
        return self.samples_per_epoch * len(self.train_s) / sum(self.train_s)

    @property
    def cpu_ms_per_step(self) -> float:
        """CPU time of all the process's threads per training step: the work, whatever the load."""
        steps = -(-self.samples_per_epoch // BATCH) * len(self.train_cpu_s)
        return sum(self.train_cpu_s) / steps * 1e3


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
        t0, c0 = time.perf_counter(), time.process_time()
        train_loss = loop.train_epoch()
        t1 = time.perf_counter()
        out.train_cpu_s.append(time.process_time() - c0)
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


def engine_name(engine: str, kernels: str = "auto") -> str:
    """The column title of an engine run: "engine" for the default engine with its default kernels."""
    name = "engine" if engine == "eager" else f"engine {engine}"
    return name if kernels == "auto" or EngineSpec.parse(engine).graph else f"{name} ({kernels} kernels)"


@contextmanager
def kernels_env(mode: str) -> Iterator[None]:
    """$CONVAE_KERNELS set to `mode` for the block (train() reads it when it opens its stepper)."""
    before = os.environ.get(KERNELS_ENV)
    os.environ[KERNELS_ENV] = mode
    try:
        yield
    finally:
        if before is None:
            del os.environ[KERNELS_ENV]
        else:
            os.environ[KERNELS_ENV] = before


def engine_loop(
    splits, config: TrainConfig, device: torch.device, engine: str = "eager", kernels: str = "auto"
) -> LoopResult:
    """convae.train.train with the given engine and kernel mode, timed from outside by its events.

    An epoch's training phase runs from the 'start' event (epoch 1) or the previous 'epoch' event to
    the 'step' event of its last step; its validation ends at its 'epoch' event. So the engine's own
    reporting and previews count against it.
    """
    marks: list[tuple[float, Progress]] = []
    cpu: dict[float, float] = {}  # the process's CPU time at each mark

    def on_event(p: Progress) -> None:
        marks.append((time.perf_counter(), p))
        cpu[marks[-1][0]] = time.process_time()

    with kernels_env(kernels):
        result = train(config, splits, on_event, device=str(device), engine=engine)
    n = config.train_size or splits.train_images.shape[0]
    out = LoopResult(engine_name(engine, kernels), n)
    start = next(t for t, p in marks if p.kind == "start")
    for row in result.history.epochs:
        e = row["epoch"]
        end_train = max(t for t, p in marks if p.kind == "step" and p.epoch == e and p.step == p.steps_per_epoch)
        end_epoch = next(t for t, p in marks if p.kind == "epoch" and p.epoch == e)
        out.train_s.append(end_train - start)
        out.train_cpu_s.append(cpu[end_train] - cpu[start])
        out.epoch_s.append(end_epoch - start)
        out.train_losses.append(row["train_loss"])
        out.val_losses.append(row["val_loss"])
        start = end_epoch
    return out


def profile_loops(
    root, dataset: str, splits, steps: int, seed: int, device: torch.device, kernels=("auto",), rows: int = 14
) -> None:
    """Profile `steps` training steps of each loop (the second of two short epochs, so warmed up): the
    plain loop, then the eager engine with each kernel mode."""
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

    for mode in kernels:
        prof = profile(activities=activities)
        times: list[float] = []

        def on_event(p: Progress, prof=prof, times=times) -> None:
            if p.kind == "epoch" and p.epoch == 1:
                times.append(time.perf_counter())
                prof.start()
            elif p.kind == "step" and p.epoch == 2 and p.step == p.steps_per_epoch:
                prof.stop()
                times.append(time.perf_counter())

        config = TrainConfig(epochs=2, train_size=n, seed=seed, dataset=dataset, on_collapse="continue")
        with kernels_env(mode):
            train(config, splits, on_event, device=str(device))
        engine_ms = (times[1] - times[0]) / steps_done * 1e3
        note = ""
        if device.type == "cpu" and torch.get_num_threads() >= 2:
            note = "; the engine computes half of each batch on a second thread, whose ops are not listed"
        title = engine_name("eager", mode)
        print(f"\nProfile of the {title}, {steps_done} steps ({engine_ms:.1f} ms/step under the profiler{note}):")
        print(prof.key_averages().table(sort_by=sort, row_limit=rows))
