"""What each training preset reaches per K, how long it takes, and whether any run ends blank.

For every preset (convae.presets), K and seed it trains the preset's settings with the dashboard's
default collapse handling (restart with the next seed) and prints one row per run, then a summary
per preset and K: validation MSE after the first and the last epoch (median and worst), restarts,
blank runs, wall time and CPU time (of the runs that recorded it; a pause does not count there).

    .venv/bin/python -m scripts.presets_table                          # quick and good, K 1..64, seeds 0-4
    .venv/bin/python -m scripts.presets_table --presets quick --k 10 --seeds 2
    .venv/bin/python -m scripts.presets_table --presets assignment --starts default mean \\
        --record docs/data/recipe-runs.jsonl                           # the recipe's 80 runs (hours)

`--starts default mean` trains every run twice: with the preset's own output start and with the
mean-brightness start (the other remedy), and adds a table comparing the two, side by side. With `--record FILE`
every finished run is appended to FILE (one JSON line) and runs already there are not trained again,
so a long table can be stopped and started again, and split over processes (`--shard 1/2` and
`--shard 2/2`, one thread each, writing to the same file). `--table-only` prints the tables of the
record without training.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from convae.analysis import blank_mse, learned_nothing
from convae.data import load_splits
from convae.presets import PRESETS, apply_preset
from convae.train import DEFAULT_START_SEEDS, TrainConfig, train

STARTS = ("default", "mean")  # the preset's own output start, or the mean-brightness start


def planned(args: argparse.Namespace) -> list[dict]:
    """Every run asked for, seed by seed (so that a partial record covers every K)."""
    return [
        {"preset": p, "start": s, "k": k, "seed": seed}
        for p in args.presets
        for s in args.starts
        for seed in range(args.seeds)
        for k in args.k
    ]


def run_key(row: dict) -> tuple:
    return (row["preset"], row["start"], row["k"], row["seed"])


def read_record(path: Path | None) -> list[dict]:
    """The runs already recorded (malformed lines are skipped, so a line cut short by a kill does no harm)."""
    if path is None or not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            run_key(row)
        except (ValueError, KeyError, TypeError):
            continue
        rows.append(row)
    return rows


def mean_start_used(row: dict) -> bool:
    """Whether the start that learned began at the mean brightness; rows recorded before the record kept it
    follow train()'s rule: the restart after DEFAULT_START_SEEDS collapsed seeds switches to that start."""
    if "mean_init_used" in row:
        return bool(row["mean_init_used"])
    return bool(row["mean_init"]) or row["restarts"] >= DEFAULT_START_SEEDS


def train_one(plan: dict, splits, blank: float) -> dict:
    config = apply_preset(TrainConfig(k=plan["k"], seed=plan["seed"]), plan["preset"])
    if plan["start"] == "mean":
        config = TrainConfig.from_dict({**config.to_dict(), "mean_init": True})
    t0, c0 = time.perf_counter(), time.process_time()
    result = train(config, splits, device="cpu")
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    vals = [float(e["val_loss"]) for e in result.history.epochs]
    return {
        **plan,
        "mean_init": config.mean_init,
        "val_by_epoch": vals,
        "restarts": len(result.history.restarts),
        "seed_used": result.history.seed,
        "mean_init_used": bool(result.history.mean_init),  # the start that learned (a restart may switch to it)
        "blank": learned_nothing(vals[-1], blank),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),  # all the process's threads; unlike seconds, a pause does not count
        "threads": torch.get_num_threads(),
        "load_average": round(os.getloadavg()[0], 1),
    }


def summary(rows: list[dict], args: argparse.Namespace) -> list[str]:
    out = [
        "| preset | start | K | runs | val MSE after epoch 1 (median) | after the last epoch (median) | worst "
        "| restarts | learned with the mean start | blank runs | seconds median | slowest | CPU s median | most |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in args.presets:
        for s in args.starts:
            for k in args.k:
                mine = [r for r in rows if (r["preset"], r["start"], r["k"]) == (p, s, k)]
                if not mine:
                    continue
                first = [r["val_by_epoch"][0] for r in mine]
                last = [r["val_by_epoch"][-1] for r in mine]
                secs = [r["seconds"] for r in mine]
                cpu = [r["cpu_seconds"] for r in mine if isinstance(r.get("cpu_seconds"), (int, float))]
                cpu_cols = f"{statistics.median(cpu):.0f} | {max(cpu):.0f}" if cpu else "- | -"
                out.append(
                    f"| {p} | {s} | {k} | {len(mine)} | {statistics.median(first):.4f} | {statistics.median(last):.4f} "
                    f"| {max(last):.4f} | {sum(r['restarts'] for r in mine)} | {sum(map(mean_start_used, mine))} "
                    f"| {sum(r['blank'] for r in mine)} of "
                    f"{len(mine)} | {statistics.median(secs):.0f} | {max(secs):.0f} | {cpu_cols} |"
                )
    return out


def _median(runs: list[dict], key: Callable[[dict], float | None], fmt: str) -> str:
    values = [v for v in map(key, runs) if v is not None]
    return f"{statistics.median(values):{fmt}}" if values else "-"


def comparison(rows: list[dict], args: argparse.Namespace) -> list[str]:
    """The two starts side by side per preset and K, over the seeds both have: blank runs, validation MSE
    after the first and the last epoch (medians), restarts and CPU seconds (median of the runs that
    recorded it)."""
    out = [
        "| preset | K | seeds | blank runs: default / mean start | after epoch 1 | after the last epoch "
        "| restarts | CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    columns = [
        (lambda r: r["val_by_epoch"][0], ".4f"),
        (lambda r: r["val_by_epoch"][-1], ".4f"),
        (lambda r: r.get("cpu_seconds"), ".0f"),  # older rows lack it
    ]
    for p in args.presets:
        for k in args.k:
            by = {s: {r["seed"]: r for r in rows if (r["preset"], r["start"], r["k"]) == (p, s, k)} for s in STARTS}
            seeds = sorted(set(by["default"]) & set(by["mean"]))
            if not seeds:
                continue
            d, m = [by["default"][x] for x in seeds], [by["mean"][x] for x in seeds]
            first, last, cpu = (f"{_median(d, key, fmt)} / {_median(m, key, fmt)}" for key, fmt in columns)
            out.append(
                f"| {p} | {k} | {len(seeds)} | {sum(r['blank'] for r in d)} / {sum(r['blank'] for r in m)} "
                f"| {first} | {last} | {sum(r['restarts'] for r in d)} / {sum(r['restarts'] for r in m)} | {cpu} |"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=list(PRESETS), default=["quick", "good"])
    parser.add_argument("--starts", nargs="+", choices=STARTS, default=["default"])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 5, 10, 16, 32, 64])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (default 5)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--record", type=Path, help="append each finished run here (JSON lines) and skip those in it")
    parser.add_argument("--shard", default="1/1", help="i/n: train only every n-th run of the plan, from the i-th")
    parser.add_argument("--table-only", action="store_true", help="print the tables of --record, train nothing")
    args = parser.parse_args(argv)
    try:
        index, count = (int(x) for x in args.shard.split("/"))
        if not 1 <= index <= count:
            raise ValueError
    except ValueError:
        parser.error(f"--shard takes i/n with 1 <= i <= n, such as 1/2; got {args.shard!r}")
    if args.table_only and args.record is None:
        parser.error("--table-only needs --record FILE")

    wanted = {run_key(p) for p in planned(args)}
    done = [r for r in read_record(args.record) if run_key(r) in wanted]
    recorded = {run_key(r) for r in done}
    todo = [p for n, p in enumerate(planned(args)) if n % count == index - 1 and run_key(p) not in recorded]
    rows = list(done)
    if not args.table_only and todo:
        torch.set_num_threads(args.threads)
        splits = load_splits()
        blank = blank_mse(splits.val_images)
        print(
            f"torch {torch.__version__}, {args.threads} threads, load average at start {os.getloadavg()[0]:.1f}; "
            f"{len(todo)} runs to train, {len(done)} already in the record"
        )
        head = f"{'preset':<10} {'start':<7} {'K':>3} {'seed':>4}  {'val MSE':>8}  {'restarts':>8}  {'seconds':>7}"
        print(f"{head}  outcome")
        for plan in todo:
            row = train_one(plan, splits, blank)
            rows.append(row)
            if args.record is not None:
                args.record.parent.mkdir(parents=True, exist_ok=True)
                with args.record.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            where = f"{row['preset']:<10} {row['start']:<7} {row['k']:>3} {row['seed']:>4}"
            print(
                f"{where}  {row['val_by_epoch'][-1]:8.4f}  {row['restarts']:>8}  {row['seconds']:7.1f}  "
                f"{'BLANK' if row['blank'] else 'learned'}",
                flush=True,
            )
    if args.record is not None:  # the other shards' runs too
        rows = [r for r in read_record(args.record) if run_key(r) in wanted]
    missing = len(wanted) - len({run_key(r) for r in rows})
    load = os.getloadavg()[0]
    print(f"\nSummary ({len(rows)} runs; {missing} of the plan not yet trained; load average now {load:.1f})")
    print("\n".join(summary(rows, args)))
    if set(args.starts) == set(STARTS):
        print("\nThe two starts side by side (default / mean; medians over the seeds both have):")
        print("\n".join(comparison(rows, args)))
    return 1 if any(r["blank"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
