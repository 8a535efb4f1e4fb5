"""The training engine (Task 5): one config in, plain progress events out.

The recipe is the assignment's: MSE between output and input, Adam (lr 0.001), batch 32, 10 epochs,
a shuffled training set, the running average training loss per epoch and the validation loss at
the end of each epoch. Only the engine is fast (docs/performance.md has the measurements):

- the data set sits on the device as one uint8 tensor and batches are gathered by index, in the
  order DataLoader(shuffle=True) would draw them with the same seed;
- Adam is fused; per-step losses stay on the device (no host sync per step) and are read a few
  times a second for progress;
- on the CPU, the transposed convolution with one output channel (the decoder's last layer) runs
  its forward pass on ATen's im2col kernel, not oneDNN's, which is about six times slower there;
- on a CPU with two or more threads, each batch is computed as two half-batches on two threads
  (gradients summed, so the same step) instead of splitting every operation across the threads;
- opt-in, for CUDA (`engine="graph"` and the other graph engines of ENGINES): the whole step, batch
  gather and Adam included, captured once as a CUDA graph and replayed (see _DeviceSteps).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from convae.data import DATASETS, Splits, to_float
from convae.model import AutoEncoder, check_sizes

# how the steps run (see train()); "eager" is the default, the others are meant for CUDA GPUs
ENGINES = ("eager", "graph", "graph-compile", "graph-channels-last", "graph-compile-channels-last")
REPORT_EVERY_S = 0.2  # progress events at least this often (the live chart gains ~5 points a second)
PREVIEW_EVERY_S = 1.0  # "watch it learn" reconstructions this often


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are the assignment's."""

    q1: int = 32
    q2: int = 32
    k: int = 10
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32
    val_batch_size: int = 100
    train_size: int | None = None  # None: the full training set; else the first N images
    seed: int = 0
    dataset: str = "mnist"
    # Not the assignment's: start the output at the mean pixel instead of 0.5 (see AutoEncoder.start_at_mean).
    mean_init: bool = False

    def __post_init__(self) -> None:
        check_sizes(self.q1, self.q2, self.k)
        _check_int("epochs", self.epochs, 1, 1000, "Use 1 to 1000 (the assignment uses 10).")
        _check_int("batch_size", self.batch_size, 1, 65536, "Use 1 or more (the assignment uses 32).")
        _check_int("val_batch_size", self.val_batch_size, 1, 65536, "Use 1 or more (the assignment uses 100).")
        _check_int("seed", self.seed, 0, 2**63 - 1, "Use a whole number of 0 or more.")
        if self.train_size is not None:
            _check_int("train_size", self.train_size, 1, 10**9, "Use a positive number of images, or none for all.")
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, (int, float))
            or not math.isfinite(self.lr)
            or not 0 < self.lr <= 1
        ):
            raise ValueError(
                f"lr (learning rate) must be a number in (0, 1], got {self.lr!r}. The assignment uses 0.001."
            )
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}.")

    @property
    def is_assignment_recipe(self) -> bool:
        """True when batch size and learning rate are the assignment's (32 and 0.001)."""
        return self.batch_size == 32 and self.lr == 1e-3 and self.val_batch_size == 100

    def key(self) -> str:
        """A short, file-name-safe identity of the run (same key: same model, same results)."""
        size = "all" if self.train_size is None else str(self.train_size)
        return (
            f"{self.dataset}-q{self.q1}-{self.q2}-k{self.k}-e{self.epochs}-lr{self.lr:g}"
            f"-b{self.batch_size}-n{size}-s{self.seed}" + ("-mi" if self.mean_init else "")
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _check_int(name: str, value: object, lo: int, hi: int, advice: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}. {advice}")


@dataclass
class Progress:
    """One progress event. `kind` is 'start', 'step', 'epoch' or 'done'."""

    kind: str
    epoch: int  # 1-based epoch in progress (or just finished, for 'epoch')
    epochs: int
    step: int  # steps done in this epoch
    steps_per_epoch: int
    train_loss: float | None = None  # running average over this epoch so far
    val_loss: float | None = None  # set on 'epoch' and 'done'
    samples_per_s: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    preview: torch.Tensor | None = None  # (n, 28, 28) float reconstructions of fixed digits

    @property
    def global_step(self) -> int:
        return (self.epoch - 1) * self.steps_per_epoch + self.step

    @property
    def fraction(self) -> float:
        return min(1.0, self.global_step / max(1, self.epochs * self.steps_per_epoch))


@dataclass
class History:
    """Loss history: running-loss points along the steps, and one row per finished epoch."""

    steps: list[int] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)  # {epoch, train_loss, val_loss, seconds}

    def to_dict(self) -> dict:
        return {"steps": self.steps, "step_losses": self.step_losses, "epochs": self.epochs}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(list(d.get("steps", [])), list(d.get("step_losses", [])), list(d.get("epochs", [])))


@dataclass
class TrainResult:
    config: TrainConfig
    model: AutoEncoder  # on the CPU, in eval mode
    history: History
    seconds: float
    device: str


class TrainingStopped(Exception):  # noqa: N818 (public name, used by jobs and tests)
    """Raised when the stop flag was set; the partial model is discarded."""


class NonFiniteLoss(RuntimeError):  # noqa: N818 (public name, used by jobs and tests)
    """The loss became NaN or infinite; the message says where and what to do."""


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present, else Apple's MPS, else the CPU; or exactly what was asked for."""
    if requested != "auto":
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} was asked for, but CUDA is not available here. Use 'cpu'.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def preview_indices(labels: torch.Tensor, per_class: int = 1) -> torch.Tensor:
    """Indices of the first validation image of each class (the fixed "watch it learn" digits)."""
    idx = []
    for c in range(10):
        hits = (labels == c).nonzero().flatten()[:per_class]
        idx += hits.tolist()
    return torch.tensor(idx, dtype=torch.long)


class _ConvTranspose2dOneOutput(torch.autograd.Function):
    """conv_transpose2d for the CPU when there is one output channel: the same maths, other kernels.

    oneDNN (PyTorch's default CPU path) computes this forward pass about six times slower than ATen's
    im2col kernel (2 ms against 0.35 ms per batch of 32 on the 2-core test machine); its backward
    pass is fine, so backward goes to the default kernels through aten.convolution_backward.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, output_padding):
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, output_padding)
        kernel = weight.shape[2:]
        return torch.ops.aten.slow_conv_transpose2d(x, weight, kernel, bias, stride, padding, output_padding, (1, 1))

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, output_padding = ctx.geometry
        mask = list(ctx.needs_input_grad[:3])
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[1]], stride, padding, (1, 1), True, output_padding, 1, mask
        )
        return gx, gw, gb, None, None, None


def _one_output_forward(layer: nn.ConvTranspose2d) -> Callable[..., torch.Tensor]:
    def forward(x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None:  # the module works the output padding out itself: keep its path
            return nn.ConvTranspose2d.forward(layer, x, output_size)
        return _ConvTranspose2dOneOutput.apply(
            x, layer.weight, layer.bias, layer.stride, layer.padding, layer.output_padding
        )

    return forward


@contextmanager
def fast_cpu_kernels(model: nn.Module) -> Iterator[None]:
    """Within the block, run this CPU model's one-output-channel transposed convolutions on the faster
    kernels of _ConvTranspose2dOneOutput (same results up to float rounding); a no-op elsewhere."""
    layers = [
        m
        for m in model.modules()
        if type(m) is nn.ConvTranspose2d
        and m.out_channels == 1
        and m.groups == 1
        and m.dilation == (1, 1)
        and m.padding_mode == "zeros"
        and m.weight.device.type == "cpu"
        and m.weight.dtype in (torch.float32, torch.float64)
        and "forward" not in m.__dict__
    ]
    for m in layers:
        m.forward = _one_output_forward(m)
    try:
        yield
    finally:
        for m in layers:
            del m.forward


class _FullBatch:
    """A training step's forward and backward on the whole batch (GPUs, and CPUs with one thread)."""

    def loss_backward(self, model: nn.Module, loss_fn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Forward and backward of batch x (gradients accumulate into .grad); returns its loss."""
        loss = loss_fn(model(x), x)
        loss.backward()
        return loss.detach()

    def evaluate(self, model: nn.Module, images: torch.Tensor, batch_size: int) -> float:
        return evaluate(model, images, batch_size)

    def close(self) -> None:
        pass


class _HalfBatches(_FullBatch):
    """On a multi-core CPU, each batch's forward and backward as two half-batches on two threads.

    The loss is a mean over the batch, so half-batch losses weighted by their share add up to it and
    their gradients, accumulated into the same .grad tensors, to the full batch's gradient (a sum of
    two, so the same bits in either order: runs stay reproducible). At batch 32 this is as fast as
    PyTorch's own threading of each operation on an idle machine, and far more robust on a busy one:
    each operation's threads meet at a barrier, so one thread preempted by another program stalls the
    other, dozens of times per step; the halves meet once per step. Validation is split the same way.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads  # the caller's intra-op threads, restored on close
        self.per_half = max(1, threads // 2)
        self.pool = ThreadPoolExecutor(1, "convae-half", initializer=torch.set_num_threads, initargs=(self.per_half,))
        self.pool.submit(lambda: None).result()  # start the worker (and set its threads) now
        torch.set_num_threads(self.per_half)

    def _both(self, fn: Callable[[torch.Tensor], object], first: torch.Tensor, second: torch.Tensor) -> tuple:
        other = self.pool.submit(fn, second)
        try:
            mine = fn(first)
        finally:
            theirs = other.result()  # wait even if this half failed: never leave the other one running
        return mine, theirs

    def loss_backward(self, model: nn.Module, loss_fn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]

        def half(part: torch.Tensor) -> torch.Tensor:
            loss = loss_fn(model(part), part) * (part.shape[0] / n)
            loss.backward()
            return loss.detach()

        if n < 2:
            return half(x)
        mine, theirs = self._both(half, x[: n // 2], x[n // 2 :])
        return mine + theirs

    def evaluate(self, model: nn.Module, images: torch.Tensor, batch_size: int) -> float:
        n = images.shape[0]
        cut = n // 2 // batch_size * batch_size  # whole validation batches on each side
        if cut == 0:
            return evaluate(model, images, batch_size)
        mine, theirs = self._both(lambda part: evaluate(model, part, batch_size), images[:cut], images[cut:])
        return (mine * cut + theirs * (n - cut)) / n

    def close(self) -> None:
        self.pool.shutdown()
        torch.set_num_threads(self.threads)


class _DeviceSteps:
    """Training steps that fetch their own batch: the engines "graph", "graph-compile" and their
    "-channels-last" forms.

    The data set, the epoch's order, a step counter and the per-step losses all live on the device,
    so one whole step (gather the batch by index, forward, backward, Adam, record the loss, advance
    the counter) needs nothing from the host. On CUDA it is captured once as a CUDA graph, after a
    few real steps on a side stream to warm up, and then replayed: one launch per step instead of
    dozens, and no host work at all between steps. Adam is fused and capturable (its step count
    lives on the device); the gradients are set to None before the capture, so each replay's
    backward writes them afresh (zeroed inside the graph). Elsewhere the same step runs eagerly,
    which is what the CPU tests check against the default engine.

    "graph-compile" also compiles the model with torch.compile (kernel fusion) for the training
    step; validation and previews use the uncompiled model, which shares its parameters. With
    channels_last, the training batches are laid out channels-last, like the convolution weights
    (train() converts the model), so that cuDNN need not convert layouts around each convolution.
    """

    WARMUP_STEPS = 3

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        train_x: torch.Tensor,
        batch_size: int,
        losses: torch.Tensor,
        compile_model: bool,
        channels_last: bool = False,
    ) -> None:
        dev = train_x.device
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.optimizer, self.loss_fn, self.train_x, self.losses = optimizer, loss_fn, train_x, losses
        self.forward = torch.compile(model) if compile_model else model
        self.n, self.bs = train_x.shape[0], batch_size
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
        """Run step `step` of the epoch (steps run in order); returns its number of images."""
        if self.graph is not None and (step + 1) * self.bs <= self.n:
            self.graph.replay()  # the usual case once captured: nothing else on the host
            return self.bs
        with warnings.catch_warnings():
            # Adam warns once that capturable=True runs slower uncaptured: true of the warm-up steps only
            warnings.filterwarnings("ignore", message=r"This instance was constructed with capturable=True")
            return self._run(step)

    def _run(self, step: int) -> int:
        size = min(self.bs, self.n - step * self.bs)
        if size < self.bs:  # the epoch's last, partial batch: eagerly, with fewer offsets
            self.optimizer.zero_grad(set_to_none=True)
            self._step(self.offsets[:size])
        elif not self.capture:
            self.optimizer.zero_grad(set_to_none=True)
            self._step(self.offsets)
        else:
            self._warm_step_then_capture()
        return size

    def _warm_step_then_capture(self) -> None:
        def warm_step() -> None:
            self.optimizer.zero_grad(set_to_none=True)
            self._step(self.offsets)

        self._on_side_stream(warm_step)
        self.warm_steps += 1
        if self.warm_steps == self.WARMUP_STEPS:
            # gradients None: the graph's backward writes them afresh on every replay (zeroed in the graph)
            self.optimizer.zero_grad(set_to_none=True)
            self.graph = self._capture(lambda: self._step(self.offsets))

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


@contextmanager
def _cudnn_benchmark(on: bool) -> Iterator[None]:
    """cuDNN's algorithm search for the duration of the block (the batch shape is fixed)."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on or before
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@contextmanager
def _step_runner(dev: torch.device) -> Iterator[_FullBatch]:
    """_HalfBatches on a CPU with two or more intra-op threads, else _FullBatch; closed on exit."""
    threads = torch.get_num_threads()
    runner = _HalfBatches(threads) if dev.type == "cpu" and threads >= 2 else _FullBatch()
    try:
        yield runner
    finally:
        runner.close()


def epoch_order(n: int, generator: torch.Generator) -> torch.Tensor:
    """The shuffled order of one epoch, drawn from `generator` exactly as
    DataLoader(..., shuffle=True, generator=generator) draws it with num_workers=0: a base seed, then
    the RandomSampler's permutation, then its (empty) remainder permutation. So the engine trains on
    the same batches as the assignment's plain loop with the same seed, and the two can be compared
    step for step (convae.bench) rather than only statistically."""
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    order = torch.randperm(n, generator=generator)
    torch.randperm(n, generator=generator)
    return order


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, batch_size: int = 100) -> float:
    """Mean squared error over uint8 images (N, 28, 28), in batches (the validation loss)."""
    device = next(model.parameters()).device
    total, n = 0.0, images.shape[0]
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    for i in range(0, n, batch_size):
        x = to_float(images[i : i + batch_size].to(device, non_blocking=True))
        loss_sum += nn.functional.mse_loss(model(x), x, reduction="sum").double()
    total = loss_sum.item()
    return total / (n * 28 * 28)


def train(
    config: TrainConfig,
    splits: Splits,
    on_event: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    device: str = "auto",
    engine: str = "eager",
) -> TrainResult:
    """Train an auto-encoder from scratch by the assignment's recipe and return it with its history.

    `engine` picks how the steps run, never what they compute: "eager" (the default, any device),
    "graph" (each whole step replayed as one CUDA graph; eager steps of the same form elsewhere),
    "graph-compile" ("graph" with the model compiled by torch.compile), and either of the two with
    "-channels-last" (weights and batches in the channels-last layout during training).

    Raises TrainingStopped when `stop` is set (checked between any two steps) and NonFiniteLoss when
    the loss becomes NaN or infinite.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    emit = on_event or (lambda _p: None)
    dev = pick_device(device)
    torch.manual_seed(config.seed)
    shuffle_gen = torch.Generator().manual_seed(config.seed)

    train_x = splits.train_images
    if config.train_size is not None:
        if config.train_size > train_x.shape[0]:
            raise ValueError(
                f"train_size {config.train_size} is larger than the training set ({train_x.shape[0]} images)."
            )
        train_x = train_x[: config.train_size]
    n = train_x.shape[0]
    train_x = train_x.to(dev)
    val_x = splits.val_images.to(dev)
    preview_x = to_float(splits.val_images[preview_indices(splits.val_labels)].to(dev))

    model = AutoEncoder(config.q1, config.q2, config.k)
    if config.mean_init:
        model.start_at_mean(train_x.to(torch.float64).mean().item() / 255)
    model = model.to(dev)
    if engine.endswith("-channels-last"):
        model = model.to(memory_format=torch.channels_last)  # the convolution weights; undone at the end
    fused = dev.type in ("cpu", "cuda")
    on_device = engine != "eager"  # the batch gather and the step counter on the device (_DeviceSteps)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=fused, capturable=on_device)
    loss_fn = nn.MSELoss()

    bs = config.batch_size
    steps_per_epoch = math.ceil(n / bs)
    history = History()
    step_losses = torch.zeros(steps_per_epoch, device=dev)
    t_start = time.perf_counter()
    train_time = 0.0  # seconds spent in training steps only (for samples/s)
    samples_done = 0

    def make_event(kind: str, epoch: int, step: int, **kw) -> Progress:
        done = (epoch - 1) * steps_per_epoch + step
        total = config.epochs * steps_per_epoch
        rate = samples_done / train_time if train_time > 0 else 0.0
        elapsed = time.perf_counter() - t_start
        eta = elapsed / done * (total - done) if done else None
        return Progress(
            kind, epoch, config.epochs, step, steps_per_epoch, samples_per_s=rate, elapsed_s=elapsed, eta_s=eta, **kw
        )

    @torch.no_grad()
    def preview() -> torch.Tensor:
        return model(preview_x).squeeze(1).float().cpu()

    device_steps = None
    if on_device:
        device_steps = _DeviceSteps(
            model,
            optimizer,
            loss_fn,
            train_x,
            bs,
            step_losses,
            compile_model=engine.startswith("graph-compile"),
            channels_last=engine.endswith("-channels-last"),
        )

    # all three undone before the model is returned
    with fast_cpu_kernels(model), _step_runner(dev) as runner, _cudnn_benchmark(on_device and dev.type == "cuda"):
        emit(make_event("start", 1, 0, preview=preview()))
        last_report = last_preview = time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            order = epoch_order(n, shuffle_gen)
            if device_steps is not None:
                device_steps.start_epoch(order)
            else:
                order = order.to(dev)
            checked = 0  # steps of this epoch whose losses were checked for NaN/inf
            model.train()
            seg_start = time.perf_counter()
            for step in range(steps_per_epoch):
                if stop is not None and stop.is_set():
                    raise TrainingStopped(f"stopped at epoch {epoch}, step {step}")
                if device_steps is not None:
                    samples_done += device_steps.step(step)
                else:
                    x = to_float(train_x[order[step * bs : (step + 1) * bs]])  # (B, 1, 28, 28) in [0, 1]
                    optimizer.zero_grad(set_to_none=True)
                    step_losses[step] = runner.loss_backward(model, loss_fn, x)
                    optimizer.step()
                    samples_done += x.shape[0]

                now = time.perf_counter()
                if now - last_report >= REPORT_EVERY_S or step == steps_per_epoch - 1:
                    done_losses = step_losses[: step + 1]
                    running = done_losses.mean().item()  # the one host sync, a few times a second
                    train_time += now - seg_start
                    seg_start = now
                    _check_finite(step_losses, checked, step + 1, epoch, config)
                    checked = step + 1
                    history.steps.append((epoch - 1) * steps_per_epoch + step + 1)
                    history.step_losses.append(running)
                    kw = {}
                    if now - last_preview >= PREVIEW_EVERY_S:
                        kw["preview"] = preview()
                        last_preview = now
                    emit(make_event("step", epoch, step + 1, train_loss=running, **kw))
                    last_report = time.perf_counter()
                    seg_start = last_report
            train_loss = step_losses.mean().item()
            model.eval()
            val_loss = runner.evaluate(model, val_x, config.val_batch_size)
            if not math.isfinite(val_loss):
                raise NonFiniteLoss(_nonfinite_message(val_loss, epoch, steps_per_epoch, config, "validation loss"))
            history.epochs.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "seconds": time.perf_counter() - epoch_start,
                }
            )
            emit(
                make_event("epoch", epoch, steps_per_epoch, train_loss=train_loss, val_loss=val_loss, preview=preview())
            )
            seg_start = time.perf_counter()

    optimizer.zero_grad(set_to_none=True)  # the returned model carries no gradients (or graph memory)
    device_steps = None  # and the CUDA graph, if any, goes with its memory pool
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    seconds = time.perf_counter() - t_start
    last = history.epochs[-1]
    emit(make_event("done", config.epochs, steps_per_epoch, train_loss=last["train_loss"], val_loss=last["val_loss"]))
    return TrainResult(config, model, history, seconds, str(dev))


def _nonfinite_message(value: float, epoch: int, step: int, config: TrainConfig, what: str = "loss") -> str:
    return (
        f"The training {what} became {value} at epoch {epoch}, step {step}: the run diverged. "
        f"Lower the learning rate (it was {config.lr:g}; try {config.lr / 10:g}, the assignment uses 0.001)."
    )


def _check_finite(losses: torch.Tensor, start: int, end: int, epoch: int, config: TrainConfig) -> None:
    chunk = losses[start:end]
    bad = (~torch.isfinite(chunk)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise NonFiniteLoss(_nonfinite_message(float(chunk[i]), epoch, start + i + 1, config))
