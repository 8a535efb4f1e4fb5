"""How the training steps run, never what they compute: one stepper interface, two implementations.

An engine name is parsed once into an `EngineSpec`; `open_stepper` gives its stepper: `EagerSteps`
("eager", the default, any device; two half-batches on two threads on a multi-core CPU) or
`DeviceSteps` (the "graph" engines for CUDA: each whole step replayed as one CUDA graph). On the CPU
the eager engine's convolutions run on kernels chosen by measurement for the model at hand
(convae.kernels; $CONVAE_KERNELS=default keeps the fixed choice, `fast_cpu_kernels`), and the stepper
says which in `stepper.kernels`. docs/performance.md has the measurements behind each choice.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from convae import conv_candidates as cands
from convae import kernel_tune
from convae import kernels as kern
from convae.data import to_float


@dataclass(frozen=True)
class EngineSpec:
    """What an engine name means: three switches on how the steps run."""

    name: str
    graph: bool = False  # each whole step on the device (replayed as a CUDA graph on CUDA)
    compiled: bool = False  # the training forward pass through torch.compile
    channels_last: bool = False  # weights and training batches in the channels-last layout

    @classmethod
    def parse(cls, name: str) -> EngineSpec:
        """The spec of an engine name, or ValueError listing the valid names."""
        if name not in _SPECS:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}.")
        return _SPECS[name]


_SPECS = {
    spec.name: spec
    for spec in (
        EngineSpec("eager"),
        EngineSpec("graph", graph=True),
        EngineSpec("graph-compile", graph=True, compiled=True),
        EngineSpec("graph-channels-last", graph=True, channels_last=True),
        EngineSpec("graph-compile-channels-last", graph=True, compiled=True, channels_last=True),
    )
}
ENGINES = tuple(_SPECS)  # "eager" is the default; the graph engines are meant for CUDA GPUs

KERNELS_ENV = "CONVAE_KERNELS"  # how the CPU convolutions' kernels are picked, for runs that do not say
KERNEL_MODES = ("auto", "default", *cands.CANDIDATES)


def kernel_mode(mode: str | Mapping[str, str] | None = None) -> str | Mapping[str, str]:
    """The kernel mode asked for (else $CONVAE_KERNELS, else "auto"), or ValueError listing the valid ones:
    "auto" times the candidates for the model at hand and keeps the fastest (convae.kernels); "default"
    is oneDNN with the one-output path (fast_cpu_kernels); a candidate's name runs every product on it;
    a dict as `stepper.kernels` gives runs exactly those kernels (a resumed run's, say)."""
    if isinstance(mode, Mapping):
        return mode
    value = mode if mode is not None else os.environ.get(KERNELS_ENV) or "auto"
    if value not in KERNEL_MODES:
        where = "kernels" if mode is not None else f"${KERNELS_ENV}"
        raise ValueError(f"{where} must be one of {', '.join(KERNEL_MODES)}, got {value!r}.")
    return value


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, batch_size: int = 100) -> float:
    """Mean squared error over uint8 images (N, 28, 28), in batches (the validation loss)."""
    device = next(model.parameters()).device
    n = images.shape[0]
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    for i in range(0, n, batch_size):
        x = to_float(images[i : i + batch_size].to(device, non_blocking=True))
        loss_sum += nn.functional.mse_loss(model(x), x, reduction="sum").double()
    return loss_sum.item() / (n * 28 * 28)


class Stepper(Protocol):
    """Runs the training steps of one run; `train()` drives it epoch by epoch."""

    losses: torch.Tensor  # (steps per epoch,) on the device: the loss of each step of this epoch
    part: int  # the images one thread's forward takes at a time (the kernels are chosen for it)
    kernels: dict[str, str]  # the CPU convolutions' layout and kernels (convae.kernels.describe), else empty

    def start_epoch(self, order: torch.Tensor) -> None:
        """Begin an epoch whose batches are taken from the training images in this order."""

    def step(self, step: int) -> int:
        """Run step `step` of the epoch (steps run in order), record its loss; return its image count."""

    def evaluate(self, images: torch.Tensor, batch_size: int) -> float:
        """The validation loss of the model as it is now."""

    def close(self) -> None:
        """Give back whatever the stepper holds (threads, settings, graphs)."""


class EagerSteps:
    """Each step's batch gathered by index, then forward, backward and Adam as ordinary calls.

    On a CPU with two or more intra-op threads, each batch runs as two half-batches, one on a second
    thread, each side on half the threads. The loss is a mean over the batch, so half-batch losses
    weighted by their share add up to it and their gradients, accumulated into the same .grad
    tensors, to the full batch's gradient (a sum of two: the same bits in either order). OpenMP's
    threads meet at a barrier after every operation, the halves once per step, so a busy machine
    stalls them far less. Validation is split the same way. The calling thread's intra-op thread
    count is halved until close(); a thread that starts using torch meanwhile starts with that
    count, so run one CPU training at a time per process (convae.jobs does).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        train_x: torch.Tensor,
        batch_size: int,
    ) -> None:
        self.model, self.optimizer, self.loss_fn, self.train_x, self.bs = model, optimizer, loss_fn, train_x, batch_size
        self.losses = torch.zeros(math.ceil(train_x.shape[0] / batch_size), device=train_x.device)
        self.order = torch.empty(0, dtype=torch.long, device=train_x.device)
        self.threads = torch.get_num_threads()  # the caller's, restored on close
        self.pool: ThreadPoolExecutor | None = None  # the second half's thread
        self.part = batch_size
        self.kernels: dict[str, str] = {}
        if train_x.device.type == "cpu" and self.threads >= 2:
            half = self.threads // 2
            self.part = batch_size - batch_size // 2  # the larger half
            self.pool = ThreadPoolExecutor(1, "convae-half", initializer=torch.set_num_threads, initargs=(half,))
            self.pool.submit(lambda: None).result()  # start the worker (and set its threads) now
            torch.set_num_threads(half)

    def start_epoch(self, order: torch.Tensor) -> None:
        self.order = order.to(self.train_x.device)

    def step(self, step: int) -> int:
        x = to_float(self.train_x[self.order[step * self.bs : (step + 1) * self.bs]])  # (B, 1, 28, 28) in [0, 1]
        self.optimizer.zero_grad(set_to_none=True)
        self.losses[step] = self._loss_backward(x)
        self.optimizer.step()
        return x.shape[0]

    def _loss_backward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward and backward of batch x (gradients accumulate into .grad); returns its loss."""
        n = x.shape[0]

        def part_loss(part: torch.Tensor) -> torch.Tensor:
            loss = self.loss_fn(self.model(part), part)
            if part.shape[0] != n:
                loss = loss * (part.shape[0] / n)
            loss.backward()
            return loss.detach()

        if self.pool is None or n < 2:
            return part_loss(x)
        mine, theirs = self._both_halves(part_loss, x[: n // 2], x[n // 2 :])
        return mine + theirs

    def evaluate(self, images: torch.Tensor, batch_size: int) -> float:
        n = images.shape[0]
        cut = n // 2 // batch_size * batch_size  # whole validation batches on each side
        if self.pool is None or cut == 0:
            return evaluate(self.model, images, batch_size)
        mine, theirs = self._both_halves(
            lambda part: evaluate(self.model, part, batch_size), images[:cut], images[cut:]
        )
        return (mine * cut + theirs * (n - cut)) / n

    def _both_halves(self, fn: Callable[[torch.Tensor], object], first: torch.Tensor, second: torch.Tensor) -> tuple:
        """fn(first) on this thread and fn(second) on the pool's, at the same time."""
        other = self.pool.submit(fn, second)
        try:
            mine = fn(first)
        finally:
            theirs = other.result()  # wait even if this half failed: never leave the other one running
        return mine, theirs

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            torch.set_num_threads(self.threads)


class DeviceSteps:
    """Steps that fetch their own batch: the engines "graph", "graph-compile" and "-channels-last".

    The data set, the epoch's order, a step counter and the per-step losses live on the device, so a
    whole step (gather the batch by index, forward, backward, Adam, record the loss, advance the
    counter) needs nothing from the host. On CUDA, after a few warm-up steps on a side stream, it is
    captured once as a CUDA graph and replayed: one launch per step. Adam is fused and capturable
    (its step count lives on the device). Elsewhere the same step runs eagerly (what the CPU tests
    check). `spec.compiled` puts the training forward pass through torch.compile (validation uses
    the uncompiled model, which shares its parameters); `spec.channels_last` lays the batches out
    like the convolution weights (train() converts the model).
    """

    WARMUP_STEPS = 3

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        train_x: torch.Tensor,
        batch_size: int,
        spec: EngineSpec,
    ) -> None:
        dev = train_x.device
        self.model, self.optimizer, self.loss_fn, self.train_x = model, optimizer, loss_fn, train_x
        self.layout = torch.channels_last if spec.channels_last else torch.contiguous_format
        self.forward = torch.compile(model) if spec.compiled else model
        self.n, self.bs = train_x.shape[0], batch_size
        self.part = batch_size
        self.kernels: dict[str, str] = {}
        self.losses = torch.zeros(math.ceil(self.n / batch_size), device=dev)
        self.order = torch.zeros(self.n, dtype=torch.long, device=dev)
        self.counter = torch.zeros((), dtype=torch.long, device=dev)  # steps done in this epoch
        self.offsets = torch.arange(batch_size, device=dev)
        self.capture = self._can_capture(dev)
        self.side: torch.cuda.Stream | None = None  # the warm-up and capture stream, made on first use
        self.warm_steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None

    def start_epoch(self, order: torch.Tensor) -> None:
        self.order.copy_(order)
        self.counter.zero_()

    def _step(self, offsets: torch.Tensor) -> None:
        idx = self.order.index_select(0, self.counter * self.bs + offsets)
        x = to_float(self.train_x.index_select(0, idx)).contiguous(memory_format=self.layout)  # (B, 1, 28, 28)
        loss = self.loss_fn(self.forward(x), x)
        loss.backward()
        self.optimizer.step()
        self.losses.index_copy_(0, self.counter.view(1), loss.detach().view(1))
        self.counter.add_(1)

    def step(self, step: int) -> int:
        if self.graph is not None and (step + 1) * self.bs <= self.n:
            self.graph.replay()  # the usual case once captured: nothing else on the host
            return self.bs
        with warnings.catch_warnings():
            # Adam warns once that capturable=True runs slower uncaptured: true of the warm-up steps only
            warnings.filterwarnings("ignore", message=r"This instance was constructed with capturable=True")
            return self._run(step)

    def _run(self, step: int) -> int:
        size = min(self.bs, self.n - step * self.bs)
        self.optimizer.zero_grad(set_to_none=True)
        if size < self.bs or not self.capture:  # not CUDA, or the epoch's last, partial batch: eagerly
            self._step(self.offsets[:size])
            return size
        self._on_side_stream(lambda: self._step(self.offsets))  # a warm-up step
        self.warm_steps += 1
        if self.warm_steps == self.WARMUP_STEPS:
            # gradients None: the graph's backward writes them afresh on every replay (zeroed in the graph)
            self.optimizer.zero_grad(set_to_none=True)
            self.graph = self._capture(lambda: self._step(self.offsets))
        return size

    def evaluate(self, images: torch.Tensor, batch_size: int) -> float:
        return evaluate(self.model, images, batch_size)

    def close(self) -> None:
        self.graph = None  # the CUDA graph goes, and its memory pool with it

    # The CUDA calls, apart so that the CPU tests can stand in for them.

    @staticmethod
    def _can_capture(dev: torch.device) -> bool:
        return dev.type == "cuda"

    def _on_side_stream(self, fn: Callable[[], None]) -> None:
        """Run fn on the warm-up stream, after the current stream's work and before its next."""
        if self.side is None:
            self.side = torch.cuda.Stream(self.train_x.device)
        current = torch.cuda.current_stream(self.train_x.device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            fn()
        current.wait_stream(self.side)

    def _capture(self, fn: Callable[[], None]) -> torch.cuda.CUDAGraph:
        """Record fn's kernels as a CUDA graph (nothing runs now), on the warm-up stream, whose cuBLAS
        and cuDNN state exists already; other threads may use CUDA meanwhile ("thread_local")."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.side, capture_error_mode="thread_local"):
            fn()
        return graph


_cudnn_lock = threading.Lock()
_cudnn_users: list[bool] = []  # one entry per run inside _cudnn_benchmark(); the first holds the caller's value


@contextmanager
def _cudnn_benchmark() -> Iterator[None]:
    """cuDNN's algorithm search on for the block. The flag is process-wide, so overlapping runs share
    it: the first to enter saves the value it found, the last to leave puts it back."""
    with _cudnn_lock:
        _cudnn_users.append(torch.backends.cudnn.benchmark)
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        with _cudnn_lock:
            before = _cudnn_users.pop()
            if not _cudnn_users:
                torch.backends.cudnn.benchmark = before


def _cpu_kernels(
    stack: ExitStack, spec: EngineSpec, mode: str | Mapping[str, str], model: nn.Module, sample: torch.Tensor
) -> dict[str, str]:
    """Put the CPU model's convolutions on the kernels of `mode` until `stack` closes; say which."""
    if mode == "auto" and not spec.graph:
        tuning = kernel_tune.tune(model, sample)  # it knows which layers' inputs need a gradient
        stack.enter_context(kern.use(model, tuning.plans))
        return tuning.kernels
    needs = {name: needs_x for name, (_, needs_x) in kernel_tune.layer_inputs(model, sample).items()}
    if spec.graph or mode == "default":
        stack.enter_context(kern.fast_cpu_kernels(model))
        return kern.describe(kern.default_plans(model), needs)
    plans = kern.plans_from(model, mode) if isinstance(mode, Mapping) else kern.fixed(model, mode)
    stack.enter_context(kern.use(model, plans))
    return kern.describe(plans, needs)


@contextmanager
def open_stepper(
    spec: EngineSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    train_x: torch.Tensor,
    batch_size: int,
    kernels: str | Mapping[str, str] | None = None,
) -> Iterator[Stepper]:
    """The stepper for `spec`, with the kernels and settings it uses for the block; all undone on exit.

    `kernels` (KERNEL_MODES, or a dict as stepper.kernels gives; None: $CONVAE_KERNELS, else "auto")
    picks the CPU convolutions' kernels of the eager engine; the graph engines keep the default ones.
    With "auto" the candidates are timed here, on this thread at the stepper's thread count and batch
    part (convae.kernels.tune: a few hundred milliseconds, nothing when this process has timed the
    same shapes before)."""
    mode = kernel_mode(kernels)
    with ExitStack() as stack:
        if spec.graph and train_x.device.type == "cuda":
            stack.enter_context(_cudnn_benchmark())  # the batch shape never changes: search once
        if spec.graph:
            stepper: Stepper = DeviceSteps(model, optimizer, loss_fn, train_x, batch_size, spec)
        else:
            stepper = EagerSteps(model, optimizer, loss_fn, train_x, batch_size)
        stack.callback(stepper.close)
        if train_x.device.type == "cpu":
            sample = train_x[: stepper.part].unsqueeze(1).float().div(255)  # (part, 1, 28, 28), as to_float
            stepper.kernels = _cpu_kernels(stack, spec, mode, model, sample)
        yield stepper
