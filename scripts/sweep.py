"""Train a bottleneck sweep (and a channel sweep); write sweep.png, sweep-q.png and sweep.csv beside them.

    .venv/bin/python -m scripts.sweep                                   # the assignment's recipe, K grid + Q grid
    .venv/bin/python -m scripts.sweep --preset quick --out runs/sweep-quick --k 2 10 32 --q
    make sweep                                                          # re-creates models/mnist-sweep/

(from the repository root.) Each run is saved as `<config key>.pt` in --out, which the dashboard lists
(models/<folder>/ ships with the project; runs/ is the default store). A run already there, or among
the shipped models, is not trained again, so an interrupted sweep goes on where it stopped. Runs that
collapse into a blank output restart with the next seed (the recipe unchanged; after several, with the
output started at the mean brightness, which the run's history records). Prints one line per run and
the PCA baseline beside it.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from convae.analysis import class_means, encode
from convae.data import DATASETS, data_root, load_splits
from convae.figures import save_png, sweep_image
from convae.pca import ImagePCA, cached_pca
from convae.presets import PRESETS, apply_preset
from convae.store import RunStore
from convae.sweep import K_GRID, Q_GRID, Q_SWEEP_K, find_sweep, sweep_csv
from convae.train import TrainConfig, train


def configs(args: argparse.Namespace) -> list[TrainConfig]:
    base = apply_preset(TrainConfig(dataset=args.dataset, seed=args.seed), args.preset)
    out = [TrainConfig.from_dict({**base.to_dict(), "q1": args.q1, "q2": args.q2, "k": k}) for k in args.k]
    out += [TrainConfig.from_dict({**base.to_dict(), "q1": q, "q2": q, "k": Q_SWEEP_K}) for q in args.q]
    return list(dict.fromkeys(out))  # the K sweep and the Q sweep share Q1 = Q2 = 32, K = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset", choices=list(PRESETS), default="assignment", help="training settings (default: the assignment's)"
    )
    parser.add_argument(
        "--k", type=int, nargs="*", default=list(K_GRID), help="K values at Q1, Q2 (default: the K grid)"
    )
    parser.add_argument("--q", type=int, nargs="*", default=list(Q_GRID), help=f"Q1 = Q2 values at K = {Q_SWEEP_K}")
    parser.add_argument("--q1", type=int, default=32)
    parser.add_argument("--q2", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", choices=list(DATASETS), default="mnist")
    parser.add_argument("--out", type=Path, default=Path("runs") / "sweep")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    splits = load_splits(None, args.dataset)
    pca = cached_pca(data_root(), args.dataset)
    store = RunStore(args.out)  # with the shipped models: the assignment's K = 10 is not trained twice
    todo = configs(args)
    print(f"{len(todo)} runs, {PRESETS[args.preset].label}, into {args.out}; PCA took {pca.seconds:.1f} s", flush=True)
    started = time.perf_counter()
    for n, config in enumerate(todo, 1):
        where = f"[{n}/{len(todo)}] Q1={config.q1} Q2={config.q2} K={config.k}"
        done = store.get(config)
        if done is not None and done.complete:
            print(f"{where}: already trained, kept", flush=True)
            continue
        t0 = time.perf_counter()
        result = train(config, splits)
        store.save(result, class_means(encode(result.model, splits.val_images), splits.val_labels))
        val = result.history.epochs[-1]["val_loss"]
        restarts = len(result.history.restarts)
        print(
            f"{where}: validation MSE {val:.5f} (PCA with {config.k}: {pca.mse(config.k):.5f}) in "
            f"{time.perf_counter() - t0:.0f} s" + (f", {restarts} restart(s) after a collapse" if restarts else ""),
            flush=True,
        )
    print(f"trained in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    write_outputs(store, args, pca)
    return 0


def write_outputs(store: RunStore, args: argparse.Namespace, pca: ImagePCA) -> None:
    """sweep.csv (every stored run of the sweeps asked for), sweep.png (the K sweep) and sweep-q.png (the
    Q1 = Q2 sweep), each curve beside PCA's."""
    runs, problems = store.scan()
    for p in problems:
        print("skipped:", p)
    title = DATASETS[args.dataset].title
    ks = list(range(1, len(pca.val_mse) + 1))
    level = pca.mse(Q_SWEEP_K)
    plots = [  # (sweep, PNG name, series label, x axis, PCA's curve, title)
        (
            find_sweep(runs, "k", args.dataset, (args.q1, args.q2)) if args.k else None,
            "sweep.png",
            f"auto-encoder, Q1={args.q1} Q2={args.q2}",
            "K, the size of the latent code (log scale)",
            ("PCA with K components (the linear baseline)", ks, pca.val_mse.tolist()),
            f"{title}: validation MSE against the bottleneck K",
        ),
        (
            find_sweep(runs, "q", args.dataset, (Q_SWEEP_K,)) if args.q else None,
            "sweep-q.png",
            f"auto-encoder, K={Q_SWEEP_K}",
            "Q1 = Q2, channels of both convolutions (log scale)",
            (f"PCA with {Q_SWEEP_K} components", [min(Q_GRID), max(Q_GRID)], [level, level]),
            f"{title}: validation MSE against the channels, K = {Q_SWEEP_K}",
        ),
    ]
    mse = {k: pca.mse(k) for k in ks}
    lines: list[str] = []
    for sw, name, label, x_title, baseline, chart_title in plots:
        if sw is None or not sw.groups:
            continue
        lines += sweep_csv(sw, mse).splitlines()[0 if not lines else 1 :]
        series = [
            (f"{label}: {recipe.label}", [sw.setting(r) for r in rs], [r.val_loss for r in rs])
            for recipe, rs in sw.groups.items()
        ]
        save_png(sweep_image(series, baseline, x_title, chart_title), args.out / name)
        print(f"wrote {args.out / name}")
    if lines:  # Q1 = Q2 = 32, K = 10 belongs to both sweeps: one row
        (args.out / "sweep.csv").write_text("\n".join(dict.fromkeys(lines)) + "\n")
        print(f"wrote {args.out / 'sweep.csv'}")


if __name__ == "__main__":
    raise SystemExit(main())
