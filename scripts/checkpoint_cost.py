"""What keeping every epoch costs: the time to copy a run's state at an epoch end (convae.resume.capture),
which the training waits for, and to write it atomically (RunStore.keep_epoch: serialise, write, fsync,
rename), which jobs and the command line do in a thread beside the training (convae.resume.EpochWriter);
both against the epoch's time. Here the write is timed in line, on its own.

    .venv/bin/python -m scripts.checkpoint_cost                  # the assignment's configuration, 2 epochs
    .venv/bin/python -m scripts.checkpoint_cost --epochs 3 --q1 64 --q2 64 --k 32 --train-size 10000

It trains on the data in $CONVAE_DATA_DIR (or data/) and keeps the epochs in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import convae.train as engine
from convae.data import ensure_data, load_splits
from convae.store import RunStore
from convae.train import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--q1", type=int, default=32)
    p.add_argument("--q2", type=int, default=32)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    config = TrainConfig(q1=args.q1, q2=args.q2, k=args.k, epochs=args.epochs, train_size=args.train_size)
    splits = load_splits(ensure_data())
    captures: list[float] = []
    real_capture = engine.capture

    def timed_capture(*a, **kw):
        t = time.perf_counter()
        state = real_capture(*a, **kw)
        captures.append(time.perf_counter() - t)
        return state

    engine.capture = timed_capture
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder), shipped=None)
        rows = []

        def keep(state) -> None:
            t = time.perf_counter()
            store.keep_epoch(state)
            size = store.kept_path(config).stat().st_size
            rows.append((state.epoch, state.history.epochs[-1]["seconds"], captures[-1], time.perf_counter() - t, size))

        train(config, splits, device=args.device, on_epoch=keep)
    print(f"{config.key()} on {args.device}, load average {os.getloadavg()[0]:.1f} at the end")
    print("epoch  epoch s  copy ms  write ms  file MB  the training waits  copy and write in line")
    for epoch, seconds, copy_s, write_s, size in rows:
        waits, in_line = copy_s / seconds, (copy_s + write_s) / seconds
        print(
            f"{epoch:5d}  {seconds:7.2f}  {copy_s * 1e3:7.2f}  {write_s * 1e3:8.2f}  {size / 1e6:7.2f}  "
            f"{waits:17.3%}  {in_line:22.3%}"
        )


if __name__ == "__main__":
    main()
