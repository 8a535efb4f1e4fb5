"""What each training preset reaches per K, how long it takes, and whether any run ends blank.

For every preset (convae.presets), K and seed it trains the preset's settings with the dashboard's
default collapse handling (restart with the next seed) and prints one row per run, then a summary
per preset and K: validation MSE (median and worst), restarts, blank runs and wall time.

    .venv/bin/python -m scripts.presets_table                          # quick and good, K 1..64, seeds 0-4
    .venv/bin/python -m scripts.presets_table --presets quick --k 10 --seeds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from convae.analysis import blank_mse, learned_nothing
from convae.data import load_splits
from convae.presets import PRESETS, apply_preset
from convae.train import TrainConfig, train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=list(PRESETS), default=["quick", "good"])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 5, 10, 16, 32, 64])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (default 5)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_splits()
    blank = blank_mse(splits.val_images)
    print(f"torch {torch.__version__}, {args.threads} threads, load average at start {os.getloadavg()[0]:.1f}")
    print(f"{'preset':<7} {'K':>3} {'seed':>4}  {'val MSE':>8}  {'restarts':>8}  {'seconds':>7}  outcome", flush=True)
    rows = []
    for name in args.presets:
        for k in args.k:
            for seed in range(args.seeds):
                config = apply_preset(TrainConfig(k=k, seed=seed), name)
                t0 = time.perf_counter()
                result = train(config, splits, device="cpu")
                seconds = time.perf_counter() - t0
                val = result.history.epochs[-1]["val_loss"]
                is_blank = learned_nothing(val, blank)
                rows.append((name, k, val, len(result.history.restarts), seconds, is_blank))
                print(
                    f"{name:<7} {k:>3} {seed:>4}  {val:8.4f}  {len(result.history.restarts):>8}  {seconds:7.1f}  "
                    f"{'BLANK' if is_blank else 'learned'}",
                    flush=True,
                )
    print(f"\nSummary (load average at the end {os.getloadavg()[0]:.1f})")
    print("| preset | K | val MSE median | worst | restarts | blank runs | seconds median | slowest |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.presets:
        for k in args.k:
            mine = [r for r in rows if r[0] == name and r[1] == k]
            vals, secs = [r[2] for r in mine], [r[4] for r in mine]
            print(
                f"| {name} | {k} | {statistics.median(vals):.4f} | {max(vals):.4f} | {sum(r[3] for r in mine)} | "
                f"{sum(r[5] for r in mine)} of {len(mine)} | {statistics.median(secs):.0f} | {max(secs):.0f} |"
            )
    return 1 if any(r[5] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
