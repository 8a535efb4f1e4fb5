"""Trained models on disk: one checkpoint file per run, written atomically, read safely.

A checkpoint holds the state dict, the config, the loss history and the class means (Eq. 2) in one
file. It is always read with `torch.load(weights_only=True)`, which refuses to run code. Before
anything is built, its size on disk, its config's Q1, Q2 and K (convae.model.SIZE_RANGES) and its
tensors' shapes are checked, so a file naming a huge model costs no more than a normal one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from convae import resume
from convae.data import PROJECT_DIR
from convae.files import Claim, FileCache, FolderListing, is_claimed, remove_parts, write_atomic
from convae.model import AutoEncoder, state_dict_shapes
from convae.resume import EpochState, ResumeError
from convae.snapshots import Plane, read_stored, stored
from convae.student import bounded_guess, clean_name
from convae.train import History, TrainConfig, TrainResult

log = logging.getLogger("convae.store")

FORMAT = "convae-checkpoint"
VERSION = 1
SHIPPED_DIR = PROJECT_DIR / "models"  # checkpoints that ship with the project (read-only)
# The largest allowed model (Q1 = Q2 = 128, K = 64) saves to about 7 MB; anything far larger is refused unread.
MAX_CHECKPOINT_BYTES = 50 * 1024 * 1024
LOCKS = ".locks"  # the runs folder's lock files (convae.files.Claim): one per configuration in training


class CheckpointError(ValueError):
    """A checkpoint could not be used; the message says which file, why, and what to do."""


class RunBusyError(RuntimeError):
    """Another training (another server or command on the same runs folder) holds this configuration."""


@dataclass
class StoredRun:
    """A trained model as the store keeps it."""

    config: TrainConfig
    model: AutoEncoder
    history: History
    class_means: torch.Tensor  # (10, K)
    seconds: float
    created: str  # ISO time
    device: str
    path: Path | None = None
    shipped: bool = False
    owner: str | None = None  # the name of the student who trained it (convae.student.clean_name)
    guess: float | None = None  # their guess of the final validation MSE, made before training
    snapshots: Plane | None = None  # the latent space as it formed (convae.snapshots); None for older runs
    snapshots_note: str = ""  # why stored snapshots are not shown (damaged), else ''

    @property
    def val_loss(self) -> float:
        return self.history.epochs[-1]["val_loss"]

    @property
    def train_loss(self) -> float:
        return self.history.epochs[-1]["train_loss"]

    @property
    def complete(self) -> bool:
        """False for the model of a run stopped before its last epoch."""
        return len(self.history.epochs) >= self.config.epochs

    @property
    def label(self) -> str:
        """'stopped after epoch 3 of 10' for a stopped run, else ''."""
        return "" if self.complete else f"stopped after epoch {len(self.history.epochs)} of {self.config.epochs}"


def run_root(override: str | os.PathLike | None = None) -> Path:
    """The store folder: the argument, else $CONVAE_RUNS_DIR, else runs/ in the project."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("CONVAE_RUNS_DIR")
    return Path(env).expanduser() if env else PROJECT_DIR / "runs"


def checkpoint_dict(
    result: TrainResult, class_means: torch.Tensor, owner: str | None = None, guess: float | None = None
) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": result.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()},
        "history": result.history.to_dict(),
        "class_means": class_means.detach().cpu().float(),
        "seconds": float(result.seconds),
        "device": result.device,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "owner": clean_name(owner),
        "guess": bounded_guess(guess),
        "snapshots": stored(result.snapshots),
    }


def save_checkpoint(
    path: Path, result: TrainResult, class_means: torch.Tensor, owner: str | None = None, guess: float | None = None
) -> Path:
    """Write a checkpoint to a temporary file beside `path`, flush it to disk, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialised in memory first (a few MB at most): a full disk then fails as an OSError from write()
    # or fsync(), not as an internal error from the middle of torch's zip writer.
    buffer = io.BytesIO()
    torch.save(checkpoint_dict(result, class_means, owner, guess), buffer)
    write_atomic(path, buffer.getbuffer())
    return path


def _from_dict(ckpt: object, where: str) -> StoredRun:
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a convae checkpoint (no '{FORMAT}' marker). Train a model instead.")
    try:
        raw = ckpt["config"]
        try:
            expected = state_dict_shapes(raw["q1"], raw["q2"], raw["k"])
        except ValueError as e:
            raise CheckpointError(f"{where} was refused: {e} Train the model again with allowed sizes.") from None
        config = TrainConfig.from_dict(raw)
        state = ckpt["state_dict"]
        wrong = [
            f"{name}: {tuple(state[name].shape) if name in state else 'missing'} (expected {shape})"
            for name, shape in expected.items()
            if name not in state or tuple(state[name].shape) != shape
        ]
        if wrong or set(state) != set(expected):
            raise CheckpointError(
                f"{where} does not fit the architecture its config names (Q1={config.q1}, Q2={config.q2}, "
                f"K={config.k}): {'; '.join(wrong[:3]) or 'unexpected tensors'}. It was made by other code."
            )
        means = ckpt["class_means"]
        if tuple(means.shape) != (10, config.k):
            raise CheckpointError(f"{where}: class means have shape {tuple(means.shape)}, expected (10, {config.k}).")
        history = History.from_dict(ckpt["history"])
        if not history.epochs:
            raise CheckpointError(f"{where} holds no finished epoch.")
        model = AutoEncoder(config.q1, config.q2, config.k)  # only now: sizes and shapes are known to fit
        model.load_state_dict(state)
        snapshots, snapshots_note = read_stored(ckpt.get("snapshots"), config.k)
        return StoredRun(
            config,
            model.eval(),
            history,
            means,
            float(ckpt.get("seconds", 0.0)),
            str(ckpt.get("created", "")),
            str(ckpt.get("device", "")),
            owner=clean_name(ckpt.get("owner")),  # untrusted: bounded, plain text
            guess=bounded_guess(ckpt.get("guess")),
            snapshots=snapshots,
            snapshots_note=snapshots_note,
        )
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{where} is damaged or incomplete ({type(e).__name__}: {e}).") from e


def _unreadable_reason(error: Exception) -> str:
    """Why torch.load failed, in plain words. Torch's own text for a refused pickle begins with advice
    to load it again with weights_only=False, which must not reach a reader as if it were ours."""
    text = str(error)
    planted = re.search(r"unsupported GLOBAL ([\w.]+)", text)
    if planted:
        return f"it holds a Python object ({planted.group(1)}) that would run code when loaded, so it was refused"
    if "Weights only load failed" in text:
        return "it holds something other than tensors and plain values (random or foreign data)"
    if "central directory" in text or "PytorchStreamReader" in text:
        return "it is not a complete archive (the file is cut short or damaged)"
    if isinstance(error, OSError):  # the disk or the file system: its own words say what to do
        first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        return first[:200].rstrip(".")
    # Anything else is the unpickler tripping over bytes that are not a pickle at all ("pop from empty
    # list", "0", a codec error...): words that would mean nothing to a reader.
    return "its bytes are not a checkpoint's (random or foreign data)"


def load_checkpoint(source: Path | bytes, name: str | None = None) -> StoredRun:
    """Read a checkpoint file (or its bytes) safely; CheckpointError says what is wrong with it."""
    where = name or (str(source) if not isinstance(source, bytes) else "the uploaded file")
    try:
        size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
        if size > MAX_CHECKPOINT_BYTES:
            limit = MAX_CHECKPOINT_BYTES / 2**20
            raise CheckpointError(
                f"{where} was refused unread: it is {size / 2**20:,.1f} MiB and the limit is {limit:.1f} MiB "
                "(a checkpoint of the largest allowed model is under 10 MiB)."
            )
        ckpt = torch.load(
            io.BytesIO(source) if isinstance(source, bytes) else source, map_location="cpu", weights_only=True
        )
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{where} does not exist.") from None
    except Exception as e:  # torch raises many kinds for damaged or unsafe files
        reason = _unreadable_reason(e)
        tail = "" if "would run code" in reason else " It is damaged, truncated, or not a convae checkpoint."
        raise CheckpointError(f"{where} could not be read safely: {reason}.{tail}") from e
    run = _from_dict(ckpt, where)
    if not isinstance(source, bytes):
        run.path = Path(source)
    return run


class RunStore:
    """The folder of trained runs (plus the shipped seed models), one `<config key>.pt` each."""

    def __init__(self, root: Path | None = None, shipped: Path | None = SHIPPED_DIR) -> None:
        self.root = run_root(root)
        self.shipped = shipped
        # Runs and kept epochs as read from their files, read again when a file changes.
        self._runs = FileCache(partial(_load_run, shipped=False))
        self._shipped_runs = FileCache(partial(_load_run, shipped=True))
        self._kept_states = FileCache(_load_kept)
        self._listing = FolderListing(".pt")  # <folder>/*.pt and <folder>/*/*.pt, read again when they change

    def path_for(self, config: TrainConfig) -> Path:
        return self.root / f"{config.key()}.pt"

    def save(
        self, result: TrainResult, class_means: torch.Tensor, owner: str | None = None, guess: float | None = None
    ) -> StoredRun:
        """Write a run's checkpoint, with the name and guess of the student who trained it, if any."""
        try:
            path = save_checkpoint(self.path_for(result.config), result, class_means, owner, guess)
        except OSError as e:
            raise OSError(
                f"Could not save the trained model under {self.root} ({e.strerror or e}). Free disk space "
                "or set CONVAE_RUNS_DIR to a writable folder, then train again."
            ) from e
        return self._read(path, shipped=False)

    def _read(self, path: Path, shipped: bool) -> StoredRun:
        value = (self._shipped_runs if shipped else self._runs).get(path)
        if isinstance(value, CheckpointError):
            raise value
        return value

    def scan(self) -> tuple[list[StoredRun], list[str]]:
        """All readable runs (newest first; shipped ones last) and a line per file that was skipped."""
        runs, problems = [], []
        folders = [(self.root, False)] + ([(self.shipped, True)] if self.shipped else [])
        seen: set[str] = set()
        for folder, shipped in folders:
            for path in self._listing.files(folder):
                try:
                    run = self._read(path, shipped)
                except CheckpointError as e:
                    problems.append(str(e))
                    continue
                except OSError as e:
                    problems.append(f"{path} could not be read: {e}")
                    continue
                if run.config.key() in seen:
                    continue
                seen.add(run.config.key())
                runs.append(run)
        runs.sort(key=lambda r: (not r.shipped, r.created), reverse=True)
        return runs, problems

    def get(self, config: TrainConfig) -> StoredRun | None:
        """The stored run for exactly this config, from the store or the shipped models."""
        name = f"{config.key()}.pt"
        for folder, shipped in [(self.root, False)] + ([(self.shipped, True)] if self.shipped else []):
            # The same places scan() looks: <folder>/<key>.pt, then <folder>/<any>/<key>.pt (e.g. mnist-seed/).
            paths = [p for p in self._listing.files(folder) if p.name == name]
            for path in sorted(paths, key=lambda p: p.parent != folder):
                try:
                    return self._read(path, shipped)
                except (CheckpointError, OSError):
                    continue
        return None

    def completed_since(self, config: TrainConfig, since: float) -> StoredRun | None:
        """The complete model of `config` in this folder if it was written at or after time `since`."""
        run = self.get(config)
        if run is None or run.shipped or not run.complete or run.path is None:
            return None
        try:
            return run if run.path.stat().st_mtime >= since else None
        except OSError:
            return None

    # ------------------------------------------------------------ runs that did not end (convae.resume)

    def kept_path(self, config: TrainConfig) -> Path:
        """Where a run of `config` keeps its last finished epoch: `<key>.resume` beside `<key>.pt`."""
        return self.root / f"{config.key()}{resume.SUFFIX}"

    @contextlib.contextmanager
    def claim(self, config: TrainConfig, wait_s: float = 2.0) -> Iterator[None]:
        """Hold `config`'s files for one training: RunBusyError if another training (another server or command
        on this folder) holds them. Temporary files that a killed writer left for them are removed."""
        claim = Claim(self.root / LOCKS / f"{config.key()}.lock")
        if not claim.acquire(wait_s):
            raise RunBusyError(
                f"{config.key()} is being trained by another server or command that uses the runs folder "
                f"{self.root}. Its model shows here when it is done."
            )
        try:
            for name in (self.path_for(config).name, self.kept_path(config).name):
                for part in remove_parts(self.root, name):
                    log.info("removed %s, left by a write that was cut off", part.name)
            yield
        finally:
            claim.release()

    def in_use(self, config: TrainConfig) -> bool:
        """True while a training (here or in another process) holds `config`'s files."""
        return is_claimed(self.root / LOCKS / f"{config.key()}.lock")

    def keep_epoch(self, state: EpochState) -> None:
        """Write a run's state at an epoch end over the one before (atomic: a crash keeps one or the other)."""
        resume.save_state(self.kept_path(state.config), state)

    def load_epoch(self, config: TrainConfig) -> EpochState | None:
        """The kept epoch of `config`, read afresh (None if there is none); ResumeError if it is unusable."""
        path = self.kept_path(config)
        return resume.load_state(path, config) if path.is_file() else None

    def drop_epoch(self, config: TrainConfig) -> None:
        self.kept_path(config).unlink(missing_ok=True)

    def kept_epoch(self, config: TrainConfig) -> EpochState | None:
        """For the pages: the kept epoch of `config` if it can be resumed (readable, not being trained)."""
        path = self.kept_path(config)
        if not path.is_file() or self.in_use(config):
            return None
        state = self._kept(path)
        return state if state is not None and state.config.key() == config.key() else None

    def kept_epochs(self) -> list[EpochState]:
        """Every run of this folder that can be resumed (stopped or cut off), newest first."""
        if not self.root.is_dir():
            return []
        paths = sorted(self.root.glob(f"*{resume.SUFFIX}"), key=_mtime, reverse=True)
        states = [s for s in map(self._kept, paths) if s is not None]
        return [s for s in states if not self.in_use(s.config)]

    def _kept(self, path: Path) -> EpochState | None:
        """A kept epoch, cached while the file is unchanged; None (and a log line) when it is unusable."""
        try:
            return self._kept_states.get(path)
        except OSError:
            return None


def _load_run(path: Path, shipped: bool) -> StoredRun | CheckpointError:
    try:
        run = load_checkpoint(path)
    except CheckpointError as e:
        return e
    run.shipped = shipped
    return run


def _load_kept(path: Path) -> EpochState | None:
    try:
        return resume.load_state(path)
    except ResumeError as e:
        log.warning("%s It cannot be resumed; training that configuration starts from scratch.", e)
        return None


def _mtime(path: Path) -> int:
    """When a file was last written (0 for a file that went in the meantime)."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
