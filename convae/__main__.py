"""Command line: `python -m convae fetch-data | train | bench`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convae import kernels
from convae.bench import add_arguments as bench_arguments
from convae.bench import positive_int
from convae.collapse import ON_COLLAPSE
from convae.data import DATASETS, DataError, checksum_problems, data_root, ensure_data, load_splits
from convae.engines import ENGINES
from convae.model import SIZE_RANGES
from convae.store import RunBusyError
from convae.train import Collapsed, TrainConfig


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.001, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a learning rate in (0, 1], got {value} (the assignment uses 0.001)")
    return value


def cmd_fetch_data(args: argparse.Namespace) -> int:
    root = ensure_data(args.data, args.dataset, progress=lambda m: print(m, flush=True), verify=True)
    bad = checksum_problems(root, args.dataset)
    if bad:
        raise DataError("After provisioning, these files still differ from the published data:\n  " + "\n  ".join(bad))
    print(
        f"{DATASETS[args.dataset].title}: all four files present and verified (SHA-256) in "
        f"{DATASETS[args.dataset].raw_dir(root)}"
    )
    from convae.pca import cached_pca  # the dashboard's first page reads it instead of fitting it

    pca = cached_pca(root, args.dataset)
    print("PCA baseline: " + (f"fitted in {pca.seconds:.1f} s and kept beside the data" if pca.seconds else "ready"))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from convae.analysis import class_means, encode
    from convae.store import RunStore, run_root, save_checkpoint

    config = TrainConfig.from_dict(vars(args))  # the options are named as the config's fields
    root = ensure_data(args.data, args.dataset, progress=lambda m: print(m, flush=True))
    splits = load_splits(root, args.dataset)
    out = Path(args.out) if args.out else run_root() / config.key()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(
            f"error: cannot create the output folder {out} ({e.strerror}); choose another with --out."
        ) from e
    print(f"Training {config.key()} on {args.device}; writing to {out}", flush=True)
    if not config.is_assignment_recipe:
        print("note: batch size or learning rate differ from the assignment's (32, 0.001).", flush=True)
    if config.mean_init:
        print("note: --mean-init is not the assignment's (it keeps PyTorch's default start).", flush=True)

    store = RunStore(out, shipped=None)  # the output folder: <key>.pt, the kept epoch <key>.resume, the claim
    with store.claim(config, wait_s=0):
        start = _resume_point(store, config, args.resume)
        result, kept = _train_with_bar(config, splits, store, start, args)
        means = class_means(encode(result.model, splits.val_images), splits.val_labels)
        ckpt = save_checkpoint(store.path_for(config), result, means)
        store.drop_epoch(config)  # complete: nothing left to resume
    if result.history.kernels:
        print(f"CPU convolution kernels: {kernels.summary(result.history.kernels)}")
    if kept:
        mean_s = sum(took for took, _ in kept) / len(kept)
        print(f"epoch checkpoints: {len(kept)} written beside the training, {mean_s:.3f} s each on average")
    metrics = {
        "config": config.to_dict(),
        "device": result.device,
        "seconds": round(result.seconds, 2),
        "resumed_after_epoch": start.epoch if start else None,
        "seed_used": result.history.seed,
        "mean_init_used": result.history.mean_init,
        "kernels": result.history.kernels,  # the CPU convolutions' kernels, chosen by measurement (convae.kernels)
        "restarts": [{k: v for k, v in r.items() if k != "vitals"} for r in result.history.restarts],
        "epochs": result.history.epochs,
        "final": {
            "train_loss": result.history.epochs[-1]["train_loss"],
            "val_loss": result.history.epochs[-1]["val_loss"],
        },
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_figures(result.model, means, splits, out)
    last = result.history.epochs[-1]
    print(
        f"done in {result.seconds:.1f} s: final training loss {last['train_loss']:.5f}, "
        f"validation loss {last['val_loss']:.5f}\n  {ckpt}\n  {out / 'metrics.json'}\n"
        f"  {out / 'reconstructions.png'}\n  {out / 'mixtures.png'}"
    )
    return 0


def _train_with_bar(config: TrainConfig, splits, store, start, args: argparse.Namespace):
    """train() with a progress bar, keeping every epoch end in `store`; the result, and for each kept
    epoch the seconds its keeping took and the seconds of the epoch."""
    from tqdm import tqdm

    from convae.resume import EpochWriter
    from convae.train import train

    bar = tqdm(
        total=config.epochs * -(-len(splits.train_images[: config.train_size]) // config.batch_size),
        unit="step",
        dynamic_ncols=True,
        file=sys.stdout,
    )
    kept: list[tuple[float, float]] = []
    last = start.epoch if start else None

    def on_event(p) -> None:
        bar.n = p.global_step
        post = {
            "epoch": f"{p.epoch}/{p.epochs}",
            "loss": f"{p.train_loss:.4f}" if p.train_loss else "-",
            "img/s": f"{p.samples_per_s:,.0f}",
        }
        if p.kind == "restart":
            bar.write(f"restart: {p.note}")
        if p.kind == "epoch":
            bar.write(f"epoch {p.epoch:2d}: train loss {p.train_loss:.5f}  validation loss {p.val_loss:.5f}")
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    def written(state, outcome) -> None:
        nonlocal last
        if isinstance(outcome, OSError):
            bar.write(f"warning: epoch {state.epoch} could not be kept on disk ({outcome.strerror or outcome}).")
        else:
            kept.append((outcome, state.history.epochs[-1]["seconds"]))
            last = state.epoch

    writer = EpochWriter(store.keep_epoch, written)
    try:
        result = train(
            config, splits, on_event, device=args.device, engine=args.engine, resume=start, on_epoch=writer.keep
        )
    except KeyboardInterrupt:
        writer.close()
        where = f"Epoch {last} of {config.epochs} is kept in {store.kept_path(config)}" if last else ""
        raise KeyboardInterrupt(where) from None
    finally:
        writer.close()  # every kept epoch on disk before the final checkpoint removes it
        bar.close()
    return result, kept


def _resume_point(store, config: TrainConfig, wanted: bool | None):
    """The kept epoch to go on from: by default the one in the output folder, if any (said so);
    --resume insists on one, --no-resume starts over."""
    from convae.resume import ResumeError

    if wanted is False:
        return None
    try:
        state = store.load_epoch(config)
    except ResumeError as e:
        if wanted:
            raise ValueError(f"--resume: {e}") from None
        print(f"note: {e} It is not resumed: training starts from the first epoch.", flush=True)
        return None
    if state is None:
        if wanted:
            raise ValueError(f"--resume: {store.kept_path(config)} does not exist; there is nothing to resume.")
        return None
    print(
        f"Resuming: {state.label} (seed {state.seed}), from {store.kept_path(config)}. "
        "--no-resume starts over instead.",
        flush=True,
    )
    return state


def write_figures(model, means, splits, out: Path) -> None:
    """Figure 1 (reconstructions.png) and Figure 2 (mixtures.png) of a model into `out`."""
    from convae.analysis import mixture_matrix, reconstruct
    from convae.figures import figure1_image, figure2_image, save_png

    originals, recons, _ = reconstruct(model, splits.val_images[:100])
    save_png(figure1_image(originals, recons), out / "reconstructions.png")
    save_png(figure2_image(mixture_matrix(model, means), splits.classes), out / "mixtures.png")


def cmd_figures(args: argparse.Namespace) -> int:
    from convae.store import load_checkpoint

    run = load_checkpoint(Path(args.checkpoint))
    splits = load_splits(ensure_data(args.data, run.config.dataset), run.config.dataset)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    write_figures(run.model, run.class_means, splits, out)
    from convae.figures import pca_comparison_image, save_png
    from convae.pca import cached_pca

    pca = cached_pca(data_root(args.data), run.config.dataset)  # the linear baseline with the model's K
    save_png(pca_comparison_image(run.model, splits.val_images[:10], pca), out / "pca-comparison.png")
    print(
        f"wrote {out / 'reconstructions.png'}, {out / 'mixtures.png'} and {out / 'pca-comparison.png'} "
        f"(validation MSE {run.val_loss:.5f}; PCA with {run.config.k} components: {pca.mse(run.config.k):.5f})"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from convae.bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m convae", description="Convolutional auto-encoder on MNIST.")
    sub = p.add_subparsers(dest="command", required=True)

    def data_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data", help=f"data root (default: $CONVAE_DATA_DIR or {data_root()})")
        sp.add_argument("--dataset", choices=list(DATASETS), default="mnist")

    f = sub.add_parser("fetch-data", help="provision and verify the data set (SHA-256)")
    data_opts(f)
    f.set_defaults(func=cmd_fetch_data)

    t = sub.add_parser("train", help="train a model by the assignment's recipe and write figures")
    data_opts(t)
    d = TrainConfig()  # the assignment's defaults: one source for the CLI and the dashboard
    sizes = (
        ("q1", "channels of the first convolution"),
        ("q2", "channels of the second convolution"),
        ("k", "latent dimensions"),
    )
    for name, what in sizes:  # above the range: refused by TrainConfig, in one line naming it and the range
        lo, hi = SIZE_RANGES[name.upper()]
        default = getattr(d, name)
        t.add_argument(f"--{name}", type=positive_int, default=default, help=f"{what}, {lo} to {hi} ({default})")
    t.add_argument("--epochs", type=positive_int, default=d.epochs)
    t.add_argument("--lr", type=_learning_rate, default=d.lr, help=f"Adam learning rate ({d.lr:g})")
    t.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    t.add_argument("--train-size", type=positive_int, default=None, help="use only the first N training images")
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument(
        "--mean-init",
        action="store_true",
        help="not the assignment's: start the output at the mean pixel (avoids blank models)",
    )
    t.add_argument(
        "--on-collapse",
        choices=ON_COLLAPSE,
        default=d.on_collapse,
        help="when the run collapses into blank images in its first steps: restart with the next seed, same "
        f"recipe (default; recorded in metrics.json), stop, or continue ({d.on_collapse})",
    )
    t.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, mps")
    t.add_argument(
        "--engine",
        choices=ENGINES,
        default="eager",
        help="how steps run, not what they compute: eager (default); the graph engines (CUDA graphs) are for GPUs",
    )
    t.add_argument("--out", help="output folder (default: runs/<config key>/)")
    t.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="go on from the epoch kept in the output folder by a run of this configuration that was cut off "
        "(the default when there is one); --no-resume starts over",
    )
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("figures", help="redraw Figure 1 and Figure 2 of a saved checkpoint")
    g.add_argument("checkpoint", help="a .pt file written by `train` or the dashboard")
    g.add_argument("--data", help=f"data root (default: $CONVAE_DATA_DIR or {data_root()})")
    g.add_argument("--out", help="output folder (default: the checkpoint's folder)")
    g.set_defaults(func=cmd_figures)

    b = sub.add_parser("bench", help="plain assignment loop vs the project's engine, side by side")
    data_opts(b)
    bench_arguments(b)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ValueError, OSError, Collapsed, RunBusyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        kept = f" {e.args[0]}: run the same command again to resume from there." if e.args and e.args[0] else ""
        print(f"interrupted; nothing was written under a final name.{kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
