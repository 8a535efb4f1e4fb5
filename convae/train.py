"""The training loop (Task 5): one config in, plain progress events out.

The recipe is the assignment's: MSE between output and input, Adam (lr 0.001), batch 32, 10 epochs,
a shuffled training set, the running average training loss per epoch and the validation loss at
the end of each epoch. How each step runs is the engine's business (convae.engines): the data set
sits on the device as one uint8 tensor, batches are gathered by index in the order
DataLoader(shuffle=True) would draw them with the same seed, Adam is fused, and the per-step losses
stay on the device, read a few times a second for progress (no host sync per step).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from convae import kernels
from convae.analysis import blank_mse
from convae.collapse import CHECK_EVERY, CollapseWatch, Vitals, is_check_step, read_vitals
from convae.config import TrainConfig as TrainConfig  # re-exported: most callers import it from here
from convae.data import Splits, to_float
from convae.engines import ENGINES as ENGINES  # re-exported: callers import these two from here too
from convae.engines import EngineSpec, open_stepper
from convae.engines import evaluate as evaluate
from convae.history import History as History  # re-exported, as are Progress and TrainConfig
from convae.history import Progress as Progress
from convae.model import AutoEncoder
from convae.optim import Adam
from convae.resume import EpochState, capture
from convae.snapshots import N_IMAGES, Mark, Recorder, Snapshots, copy_weights

REPORT_EVERY_S = 0.2  # progress events at least this often (the live chart gains ~5 points a second)
PREVIEW_EVERY_S = 1.0  # "watch it learn" reconstructions this often
_INIT_LOCK = threading.Lock()  # torch's global RNG: one run at a time seeds it and draws its weights
MAX_RESTARTS = 6  # restarts after collapses before giving up (each costs about a hundred steps)
# After this many collapsed seeds with PyTorch's default start, the next restart also starts the output at
# the mean brightness (labelled; K = 1 collapsed on all 15 seeds tried with the default start).
DEFAULT_START_SEEDS = 4


@dataclass
class TrainResult:
    config: TrainConfig
    model: AutoEncoder  # on the CPU, in eval mode
    history: History
    seconds: float
    device: str
    snapshots: Snapshots | None = None  # the latent codes of fixed validation images as it trained


class Collapsed(RuntimeError):  # noqa: N818 (public name, like the two above)
    """The run collapsed into blank images and `on_collapse` said to stop (or every restart collapsed)."""


class _CollapseSeen(Exception):  # noqa: N818 (internal signal from one attempt to train())
    def __init__(self, step: int, readings: list[dict]) -> None:
        super().__init__(f"collapsed at step {step}")
        self.step, self.readings = step, readings


class TrainingStopped(Exception):  # noqa: N818 (public name, used by jobs and tests)
    """Raised when the stop flag was set. `kept` is the run as it stood at the end of its last finished
    epoch (None when stopped during the first): the caller may keep that model, or resume from it."""

    def __init__(self, message: str, kept: EpochState | None = None) -> None:
        super().__init__(message)
        self.kept = kept


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


class _Clock:
    """A run's clocks: wall time since the start; time in training steps alone, for samples/s (reports,
    previews and validation excluded); and when the last progress report and preview were made."""

    def __init__(self, epochs: int, steps_per_epoch: int, epochs_before: int = 0) -> None:
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.steps_before = epochs_before * steps_per_epoch  # a resumed run's steps done before this start
        self.start = time.perf_counter()
        self.train_s = 0.0
        self.samples = 0
        self.steps_since = self.last_report = self.last_preview = self.start

    def started(self) -> None:
        """The 'start' event is out: report and preview intervals count from now."""
        self.last_report = self.last_preview = time.perf_counter()

    def steps_begin(self) -> None:
        self.steps_since = time.perf_counter()

    def steps_pause(self, now: float) -> None:
        self.train_s += now - self.steps_since

    def reported(self) -> None:
        """A report went out: the next is due REPORT_EVERY_S from now, and the steps go on."""
        self.last_report = self.steps_since = time.perf_counter()

    def report_due(self, now: float) -> bool:
        return now - self.last_report >= REPORT_EVERY_S

    def take_preview(self, now: float) -> bool:
        """True (and the preview clock restarted) when a new preview is due."""
        if now - self.last_preview < PREVIEW_EVERY_S:
            return False
        self.last_preview = now
        return True

    def event(self, kind: str, epoch: int, step: int, **kw) -> Progress:
        done = (epoch - 1) * self.steps_per_epoch + step
        total = self.epochs * self.steps_per_epoch
        rate = self.samples / self.train_s if self.train_s > 0 else 0.0
        elapsed = time.perf_counter() - self.start
        eta = elapsed / (done - self.steps_before) * (total - done) if done > self.steps_before else None
        return Progress(
            kind, epoch, self.epochs, step, self.steps_per_epoch, samples_per_s=rate, elapsed_s=elapsed, eta_s=eta, **kw
        )


def _training_images(splits: Splits, config: TrainConfig) -> torch.Tensor:
    train_x = splits.train_images
    if config.train_size is None:
        return train_x
    if config.train_size > train_x.shape[0]:
        raise ValueError(f"train_size {config.train_size} is larger than the training set ({train_x.shape[0]} images).")
    return train_x[: config.train_size]


def _initial_model(config: TrainConfig, train_x: torch.Tensor) -> AutoEncoder:
    """The untrained model of `config.seed` (PyTorch's default initialisation from torch's global RNG)."""
    with _INIT_LOCK:  # another run seeding the global RNG in between would change these weights
        torch.manual_seed(config.seed)
        model = AutoEncoder(config.q1, config.q2, config.k)
    if config.mean_init:
        model.start_at_mean(train_x.to(torch.float64).mean().item() / 255)
    return model


def train(
    config: TrainConfig,
    splits: Splits,
    on_event: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    device: str = "auto",
    engine: str = "eager",
    resume: EpochState | None = None,
    on_epoch: Callable[[EpochState], None] | None = None,
) -> TrainResult:
    """Train an auto-encoder by the assignment's recipe and return it with its history: from scratch, or
    from `resume` (a run kept at an epoch end, of this configuration) on, to the same end.

    `engine` (one of ENGINES, see convae.engines) picks how the steps run, never what they compute.
    A run that collapses into blank images in its first steps (convae.collapse) is handled as
    `config.on_collapse` says: started again with the next seed and the same recipe ('restart',
    recorded in the history and announced by a 'restart' event), stopped with Collapsed ('stop'),
    or left to go on ('continue'). Raises TrainingStopped when `stop` is set (checked between any
    two steps; it carries the last finished epoch) and NonFiniteLoss when the training or validation
    loss becomes NaN or infinite. `on_epoch` gets the run's state at the end of every epoch, to keep.
    """
    if resume is not None and resume.config.key() != config.key():
        raise ValueError(f"Cannot resume {config.key()} from a run of {resume.config.key()}.")
    spec = EngineSpec.parse(engine)
    emit = on_event or (lambda _p: None)
    dev = pick_device(device)
    data = _RunData(
        train_x=_training_images(splits, config).to(dev),
        val_x=splits.val_images.to(dev),
        preview_x=to_float(splits.val_images[preview_indices(splits.val_labels)].to(dev)),
        snap_x=splits.val_images[:N_IMAGES].to(dev),
    )
    started = time.perf_counter() - (resume.seconds if resume else 0.0)
    blank = blank_mse(data.train_x.cpu())
    # A resumed run goes on with the seed and start actually in use, after the restarts it had already.
    restarts: list[dict] = list(resume.history.restarts) if resume else []
    attempt = resume.attempt if resume else config

    def keep(state: EpochState) -> None:
        """An epoch ended: its state, as the configuration asked for knows it, to the caller."""
        state.config, state.seconds = config, time.perf_counter() - started
        state.history.restarts = list(restarts)
        if on_epoch is not None:
            on_epoch(state)

    while True:
        watch = CollapseWatch(blank)
        try:
            result = _train_once(attempt, data, spec, emit, stop, watch, resume, keep)
        except _CollapseSeen as seen:
            resume = None  # the next seed starts from scratch
            note = (
                f"seed {attempt.seed} collapsed at step {seen.step} (blank output, loss stuck at the all-black "
                f"{blank:.3f})"
            )
            if config.on_collapse == "stop" or len(restarts) >= MAX_RESTARTS:
                tried = f" after {len(restarts)} restarts" if restarts else ""
                raise Collapsed(
                    f"The run learned nothing{tried}: {note}. Train again with another seed, or tick the "
                    "mean-brightness start (--mean-init), which avoids it."
                ) from None
            mean_start = attempt.mean_init or len(restarts) + 1 >= DEFAULT_START_SEEDS
            attempt = dataclasses.replace(attempt, seed=attempt.seed + 1, mean_init=mean_start)
            note += f", restarted with seed {attempt.seed}"
            if mean_start and not config.mean_init:
                note += " and the output starting at the mean brightness (not the assignment's start)"
            restarts.append({"seed": attempt.seed - 1, "step": seen.step, "next_seed": attempt.seed, "note": note})
            restarts[-1]["vitals"] = seen.readings
            spe = math.ceil(data.train_x.shape[0] / config.batch_size)
            emit(Progress("restart", 1, config.epochs, 0, spe, note=note))
            continue
        result.history.restarts = restarts
        # stored under the configuration asked for; the time includes any collapsed attempts
        return dataclasses.replace(result, config=config, seconds=time.perf_counter() - started)


@dataclass
class _RunData:
    """The tensors one run reads, on its device."""

    train_x: torch.Tensor  # (N, 28, 28) uint8
    val_x: torch.Tensor  # (10000, 28, 28) uint8
    preview_x: torch.Tensor  # (10, 1, 28, 28) float, one validation digit per class
    snap_x: torch.Tensor  # (N, 28, 28) uint8, the validation images of the latent snapshots


def _train_once(
    config: TrainConfig,
    data: _RunData,
    spec: EngineSpec,
    emit: Callable[[Progress], None],
    stop: threading.Event | None,
    watch: CollapseWatch,
    resume: EpochState | None,
    keep: Callable[[EpochState], None],
) -> TrainResult:
    """One attempt of the recipe with config.seed, from scratch or from `resume`; raises _CollapseSeen
    when `watch` calls a collapse and config.on_collapse is not 'continue'."""
    train_x = data.train_x
    dev = train_x.device
    n, bs = train_x.shape[0], config.batch_size
    steps_per_epoch = math.ceil(n / bs)
    shuffle = torch.Generator().manual_seed(config.seed)

    model = _initial_model(config, train_x)
    if resume is not None:
        model.load_state_dict(resume.weights)
    model = model.to(dev)
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)  # the convolution weights; undone at the end
    fused = dev.type in ("cpu", "cuda")
    optimizer = Adam(model.parameters(), lr=config.lr, fused=fused, capturable=spec.graph)  # torch's, see optim
    history = History(seed=config.seed, mean_init=config.mean_init)
    kept = resume  # the last finished epoch: what a Stop keeps
    if resume is not None:  # everything the next epoch depends on, as it was at the end of resume.epoch
        groups = optimizer.state_dict()["param_groups"]  # this engine's own Adam settings
        optimizer.load_state_dict({"state": resume.adam_state(list(model.parameters())), "param_groups": groups})
        shuffle.set_state(resume.shuffle)
        history = History.from_dict(resume.history.to_dict())
        history.restarts = []  # train() puts them back at the end, as for a run never interrupted
        for reading in history.vitals:
            watch.update(Vitals(**reading))
    first = resume.epoch + 1 if resume is not None else 1
    clock = _Clock(config.epochs, steps_per_epoch, first - 1)
    snaps = Recorder(data.snap_x, config.epochs, steps_per_epoch, resume.snapshots if resume is not None else None)

    def shots(snapshots: Snapshots | None, epoch: int, step: int) -> dict:
        """An event's share of a snapshot: the snapshots so far (when one was taken) and a copy of the weights."""
        taken = {"snapshots": snapshots} if snapshots is not None else {}
        return {**taken, "weights": copy_weights(model, Mark(epoch, step, steps_per_epoch).label)}

    @torch.no_grad()
    def preview() -> torch.Tensor:
        return model(data.preview_x).squeeze(1).float().cpu()

    def report(losses: torch.Tensor, epoch: int, step: int, now: float) -> None:
        """A point of the loss curve and a 'step' event: the running average of this epoch's losses."""
        clock.steps_pause(now)
        running = losses.mean().item()  # the one host sync, a few times a second
        _check_finite(losses, epoch, config)
        history.steps.append((epoch - 1) * steps_per_epoch + step)
        history.step_losses.append(running)
        extra = {"preview": preview()} if clock.take_preview(now) else {}
        if snaps.due(epoch, step):
            extra |= shots(snaps.take(model, epoch, step), epoch, step)
        emit(clock.event("step", epoch, step, train_loss=running, **extra))
        clock.reported()

    def check_health(losses: torch.Tensor, global_step: int) -> None:
        """A reading of the first steps' health (convae.collapse); a collapse ends this attempt."""
        recent = losses[-CHECK_EVERY:].mean().item()
        vitals = read_vitals(model, data.preview_x, global_step, recent)
        collapsed = watch.update(vitals)
        history.vitals = watch.to_list()
        if collapsed and config.on_collapse != "continue":
            raise _CollapseSeen(global_step, history.vitals)

    started_on = kernels.recorded(model, resume.history.kernels) if resume is not None else None
    with open_stepper(spec, model, optimizer, nn.MSELoss(), train_x, bs, started_on) as stepper:
        history.kernels = dict(stepper.kernels)
        emit(clock.event("start", first, 0, preview=preview(), **shots(snaps.start(model, first), first, 0)))
        clock.started()
        for epoch in range(first, config.epochs + 1):
            epoch_start = time.perf_counter()
            stepper.start_epoch(epoch_order(n, shuffle))
            model.train()
            clock.steps_begin()
            for step in range(steps_per_epoch):
                if stop is not None and stop.is_set():
                    raise TrainingStopped(f"stopped at epoch {epoch}, step {step}", kept)
                clock.samples += stepper.step(step)
                global_step = (epoch - 1) * steps_per_epoch + step + 1
                if is_check_step(global_step):
                    check_health(stepper.losses[: step + 1], global_step)
                now = time.perf_counter()
                if clock.report_due(now) or step == steps_per_epoch - 1 or snaps.due(epoch, step + 1):
                    report(stepper.losses[: step + 1], epoch, step + 1, now)

            train_loss = stepper.losses.mean().item()
            model.eval()
            val_loss = stepper.evaluate(data.val_x, config.val_batch_size)
            if not math.isfinite(val_loss):
                where = f"the end of epoch {epoch}"
                raise NonFiniteLoss(_nonfinite_message("validation loss", val_loss, where, config))
            seconds = time.perf_counter() - epoch_start
            history.epochs.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": seconds})
            taken = snaps.epoch_end(model, epoch)
            kept = capture(config, epoch, model, optimizer, shuffle, history, snaps.current or None)
            keep(kept)  # before the event: the caller holds epoch k's state before anyone hears that it ended
            shot = {"preview": preview(), **shots(taken, epoch, steps_per_epoch)}
            emit(clock.event("epoch", epoch, steps_per_epoch, train_loss=train_loss, val_loss=val_loss, **shot))

    optimizer.zero_grad(set_to_none=True)  # the returned model carries no gradients
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    seconds = time.perf_counter() - clock.start
    last = history.epochs[-1]
    emit(clock.event("done", config.epochs, steps_per_epoch, train_loss=last["train_loss"], val_loss=last["val_loss"]))
    return TrainResult(config, model, history, seconds, str(dev), snaps.current or None)


def kept_result(state: EpochState) -> TrainResult:
    """The model of a kept epoch as a TrainResult (to store the model of a stopped run)."""
    return TrainResult(state.config, state.build_model(), state.history, state.seconds, state.device, state.snapshots)


def _nonfinite_message(what: str, value: float, where: str, config: TrainConfig) -> str:
    return (
        f"The {what} became {value} at {where}: the run diverged. Lower the learning rate "
        f"(it was {config.lr:g}; try {config.lr / 10:g}, the assignment uses 0.001) and train again."
    )


def _check_finite(losses: torch.Tensor, epoch: int, config: TrainConfig) -> None:
    """NonFiniteLoss naming the first step of the epoch whose loss is NaN or infinite, if any."""
    bad = (~torch.isfinite(losses)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise NonFiniteLoss(
            _nonfinite_message("training loss", float(losses[i]), f"epoch {epoch}, step {i + 1}", config)
        )
