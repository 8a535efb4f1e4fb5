"""What a run keeps at the end of every epoch, so that it can go on after a Stop or a crash.

An `EpochState` holds everything the next epoch depends on: the weights, Adam's moments and step
count, the data order's generator, the history so far, and the seed actually in use (a run that
collapsed was restarted with another seed; convae.collapse). A run resumed from it continues with
the next epoch and ends as the same run never interrupted would, to float rounding.

On disk it is `<config key>.resume` beside the run's checkpoint, written atomically and replaced
each epoch; the final checkpoint removes it. It is read with `torch.load(weights_only=True)`, after
a size check, and every part is checked against the architecture its config names before use.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from convae.config import TrainConfig
from convae.files import write_atomic
from convae.history import History
from convae.model import AutoEncoder, state_dict_shapes
from convae.snapshots import SnapshotError, Snapshots

log = logging.getLogger("convae.resume")

FORMAT = "convae-resume"
VERSION = 1
SUFFIX = ".resume"
# Weights and two Adam moments of the largest allowed model (Q1 = Q2 = 128, K = 64) come to about 21 MB, its
# latent snapshots (convae.snapshots) to 12.8 MB at most.
MAX_RESUME_BYTES = 64 * 1024 * 1024
ADAM_KEYS = {"step", "exp_avg", "exp_avg_sq"}


class ResumeError(ValueError):
    """A kept epoch could not be used; the message says which file and why."""


@dataclass
class EpochState:
    """A run as it stood at the end of epoch `epoch`: what it needs to go on from there."""

    config: TrainConfig  # the configuration asked for (the file is named after its key)
    seed: int  # the seed in use: config.seed, or a later one after a collapse restart
    mean_init: bool  # whether the run in use starts at the mean brightness (see train.DEFAULT_START_SEEDS)
    epoch: int  # epochs finished
    weights: dict[str, torch.Tensor]  # the model's state dict, on the CPU
    adam: dict[int, dict[str, torch.Tensor]]  # Adam's per-parameter state (moments, step), on the CPU
    shuffle: torch.Tensor  # the data order generator's state (uint8)
    history: History  # of the run in use, with the restarts before it
    seconds: float  # training time so far
    device: str
    stopped: bool = False  # Stop was pressed after this epoch (else: the run was cut off)
    snapshots: Snapshots | None = None  # the latent snapshots so far (convae.snapshots)

    @property
    def epochs(self) -> int:
        """The run's epochs in all."""
        return self.config.epochs

    @property
    def attempt(self) -> TrainConfig:
        """The configuration of the run in use (the asked one, with the seed and start it runs with)."""
        return dataclasses.replace(self.config, seed=self.seed, mean_init=self.mean_init)

    @property
    def label(self) -> str:
        """'stopped after epoch 3 of 10' or 'interrupted after epoch 3 of 10'."""
        how = "stopped" if self.stopped else "interrupted"
        return f"{how} after epoch {self.epoch} of {self.config.epochs}"

    def build_model(self) -> AutoEncoder:
        """The model of this epoch, on the CPU, in eval mode."""
        model = AutoEncoder(self.config.q1, self.config.q2, self.config.k)
        model.load_state_dict(self.weights)
        return model.eval()

    def adam_state(self, params: list[torch.nn.Parameter]) -> dict[int, dict[str, torch.Tensor]]:
        """Adam's state for these parameters: each moment on its parameter's device and in its layout
        (channels-last weights get channels-last moments), the step count as saved."""
        return {
            i: {k: (v if k == "step" else torch.empty_like(params[i]).copy_(v)) for k, v in s.items()}
            for i, s in self.adam.items()
        }

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "mean_init": self.mean_init,
            "epoch": self.epoch,
            "stopped": self.stopped,
            "weights": self.weights,
            "adam": self.adam,
            "shuffle": self.shuffle,
            "history": self.history.to_dict(),
            "seconds": self.seconds,
            "device": self.device,
            "snapshots": self.snapshots.to_dict() if self.snapshots else None,
        }


def capture(
    config: TrainConfig,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    history: History,
    snapshots: Snapshots | None = None,
) -> EpochState:
    """An EpochState of a run at an epoch end: CPU copies of everything (the run goes on changing its own).
    `config` is the run's own (its seed may differ from the one asked): train() puts the asked one in,
    with the restarts before this run and the time so far."""
    weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    adam = {
        i: {k: v.detach().to("cpu", copy=True).contiguous() for k, v in s.items()}
        for i, s in optimizer.state_dict()["state"].items()
    }
    return EpochState(
        config=config,
        seed=config.seed,
        mean_init=config.mean_init,
        epoch=epoch,
        weights=weights,
        adam=adam,
        shuffle=shuffle.get_state(),
        history=History.from_dict(history.to_dict()),
        seconds=0.0,
        device=str(next(model.parameters()).device),
        snapshots=snapshots,
    )


def to_bytes(state: EpochState) -> bytes:
    buffer = io.BytesIO()
    torch.save(state.to_dict(), buffer)
    return buffer.getvalue()


def save_state(path: Path, state: EpochState) -> None:
    """Write the state atomically (serialised in memory first: a full disk fails as an OSError)."""
    write_atomic(path, to_bytes(state))


def load_state(path: Path, config: TrainConfig | None = None) -> EpochState:
    """Read a kept epoch safely and check it (against `config` too, when given); ResumeError if unusable."""
    where = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_RESUME_BYTES:
            raise ResumeError(f"{where} was refused unread: {size / 2**20:,.1f} MiB is more than any run keeps.")
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except ResumeError:
        raise
    except FileNotFoundError:
        raise ResumeError(f"{where} does not exist.") from None
    except Exception as e:  # torch raises many kinds for damaged or unsafe files
        raise ResumeError(f"{where} could not be read safely ({type(e).__name__}); it is damaged.") from None
    try:
        state = from_dict(raw)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise ResumeError(f"{where} is damaged or incomplete ({type(e).__name__}: {e}).") from None
    if config is not None and state.config.key() != config.key():
        raise ResumeError(f"{where} belongs to {state.config.key()}, not to {config.key()}.")
    return state


def from_dict(d: object) -> EpochState:
    """An EpochState from a loaded file, every part checked before anything is built from it."""
    if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != VERSION:
        raise ValueError(f"not a kept epoch (no '{FORMAT}' marker of version {VERSION})")
    raw = d["config"]
    shapes = state_dict_shapes(raw["q1"], raw["q2"], raw["k"])  # sizes checked before any model is built
    config = TrainConfig.from_dict(raw)
    epoch, seed, mean_init = d["epoch"], d["seed"], d["mean_init"]
    if not _whole(epoch) or not 1 <= epoch <= config.epochs:
        raise ValueError(f"epoch {epoch!r} is not one of the run's 1 to {config.epochs} epochs")
    if not _whole(seed) or seed < 0 or not isinstance(mean_init, bool) or not isinstance(d["stopped"], bool):
        raise ValueError("seed, start or stop mark malformed")
    weights = d["weights"]
    if not isinstance(weights, dict) or list(weights) != list(shapes):
        raise ValueError("the weights are not those of the architecture")
    adam = d["adam"]
    if not isinstance(adam, dict) or sorted(adam) != list(range(len(shapes))):
        raise ValueError("Adam's state does not cover every parameter")
    for i, (name, shape) in enumerate(shapes.items()):
        _check_tensor(weights[name], shape, name)
        s = adam[i]
        if not isinstance(s, dict) or set(s) != ADAM_KEYS:
            raise ValueError(f"Adam's state of {name} is malformed")
        _check_tensor(s["exp_avg"], shape, f"Adam's exp_avg of {name}")
        _check_tensor(s["exp_avg_sq"], shape, f"Adam's exp_avg_sq of {name}")
        _check_tensor(s["step"], (), f"Adam's step of {name}")
    shuffle = d["shuffle"]
    reference = torch.Generator().get_state()
    if not isinstance(shuffle, torch.Tensor) or shuffle.dtype != torch.uint8 or shuffle.shape != reference.shape:
        raise ValueError("the data order's generator state is malformed")
    history = History.from_dict(d["history"]) if isinstance(d["history"], dict) else None
    if history is None or len(history.epochs) != epoch or (history.seed, history.mean_init) != (seed, mean_init):
        raise ValueError(f"the history does not hold the {epoch} epochs of seed {seed}")
    seconds = d["seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise ValueError("the training time is not a number")
    return EpochState(
        config,
        seed,
        mean_init,
        epoch,
        weights,
        adam,
        shuffle,
        history,
        float(seconds),
        str(d["device"])[:40],
        d["stopped"],
        _snapshots(d.get("snapshots"), config),
    )


class EpochWriter:
    """Writes kept epochs in a thread of its own, in order, so that the training waits for the copy of its
    state (`capture`, about a millisecond) and not for the disk. A state still waiting when a newer one
    comes is skipped: only the latest matters. `done(state, seconds or OSError)` follows each write.
    `close()` returns once every write is over (call it before anything else writes or removes the file)."""

    def __init__(self, write: Callable[[EpochState], None], done: Callable[[EpochState, float | OSError], None]):
        self._write, self._done = write, done
        self._pool = ThreadPoolExecutor(1, "convae-keep")
        self._latest: EpochState | None = None

    def keep(self, state: EpochState) -> None:
        self._latest = state
        self._pool.submit(self._run, state)

    def _run(self, state: EpochState) -> None:
        if state is not self._latest:
            return  # a newer epoch is queued behind this one
        t = time.perf_counter()
        try:
            self._write(state)
        except OSError as e:
            self._done(state, e)
            return
        self._done(state, time.perf_counter() - t)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _snapshots(value: object, config: TrainConfig) -> Snapshots | None:
    """A kept epoch's latent snapshots; damaged ones are dropped (said in the log), the rest of the state is kept."""
    if value is None:
        return None
    try:
        return Snapshots.from_dict(value, config.k)
    except (SnapshotError, TypeError, RuntimeError) as e:
        log.warning(
            "The latent snapshots kept with %s are damaged (%s): the run goes on without them.", config.key(), e
        )
        return None


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_tensor(value: object, shape: tuple[int, ...], name: str) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.float32 or tuple(value.shape) != shape:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name}: {got} (expected float32 {shape})")
