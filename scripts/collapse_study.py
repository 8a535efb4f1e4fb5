"""How often the assignment's recipe collapses into blank images, and whether the detector sees it.

For each K and seed it trains the first steps of the recipe (batch 32, Adam 0.001, the full training
set) with on_collapse="continue", so that every run goes on as the plain recipe would; it takes the
detector's readings (convae.collapse) and calls a run blank when its validation loss after those steps
is no better than an all-black image. It prints one row per run: blank or learning, and the step at
which the detector called a collapse (or none). `--save FILE` writes the readings as JSON (the
detector's tests replay them).

    .venv/bin/python -m scripts.collapse_study                      # K in 1..64, seeds 0-4, 400 steps
    .venv/bin/python -m scripts.collapse_study --k 2 10 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from convae.analysis import blank_mse, learned_nothing
from convae.collapse import CollapseWatch, Vitals
from convae.data import load_splits
from convae.train import TrainConfig, train


def detected_at(readings: list[dict], blank: float) -> int | None:
    """The step at which the detector, replayed on the readings, calls a collapse (None: never)."""
    watch = CollapseWatch(blank)
    for r in readings:
        if watch.update(Vitals(**r)):
            return r["step"]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 5, 10, 16, 32, 64])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (default 5)")
    parser.add_argument("--steps", type=int, default=400, help="training steps of batch 32 (default 400)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", type=Path, help="write the readings and outcomes as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_splits()
    rows = []
    print(f"{'K':>3} {'seed':>4}  {'val MSE':>8}  {'outcome':<8}  detector")
    for k in args.k:
        for seed in range(args.seeds):
            config = TrainConfig(k=k, seed=seed, epochs=1, train_size=args.steps * 32, on_collapse="continue")
            t0 = time.perf_counter()
            result = train(config, splits, device="cpu")
            val = result.history.epochs[-1]["val_loss"]
            blank = blank_mse(splits.train_images[: config.train_size])
            outcome = "blank" if learned_nothing(val, blank_mse(splits.val_images)) else "learning"
            step = detected_at(result.history.vitals, blank)
            print(
                f"{k:>3} {seed:>4}  {val:8.4f}  {outcome:<8}  "
                f"{'collapse at step ' + str(step) if step else 'no alarm'}  ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            rows.append(
                {
                    "k": k,
                    "seed": seed,
                    "val_loss": val,
                    "blank_loss": blank,
                    "outcome": outcome,
                    "readings": result.history.vitals,
                }
            )
    missed = [r for r in rows if r["outcome"] == "blank" and detected_at(r["readings"], r["blank_loss"]) is None]
    false = [r for r in rows if r["outcome"] == "learning" and detected_at(r["readings"], r["blank_loss"])]
    blank_runs = sum(r["outcome"] == "blank" for r in rows)
    print(f"\n{blank_runs} of {len(rows)} runs blank; detector: {len(missed)} missed, {len(false)} false alarms")
    if args.save:
        args.save.write_text(json.dumps(rows, indent=1) + "\n")
        print(f"readings written to {args.save}")
    return 1 if missed or false else 0


if __name__ == "__main__":
    raise SystemExit(main())
