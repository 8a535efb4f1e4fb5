"""The core of the lesson pages: PCA as the linear baseline, sweeps of stored runs, the layer-by-layer
trace of one image, their PNG figures, and `python -m scripts.sweep`, on small generated data."""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from convae.data import check_files, data_root, load_splits, to_float
from convae.figures import comparison_image, pairs_image, pca_comparison_image, sweep_image
from convae.inside import trace
from convae.model import AutoEncoder
from convae.pca import MAX_K, fit_pca, pca_parameters
from convae.presets import apply_preset
from convae.store import StoredRun
from convae.sweep import CSV_COLUMNS, K_GRID, Q_GRID, Recipe, find_sweep, parameter_count, sweep_csv, sweep_for
from convae.train import History, TrainConfig

# ------------------------------------------------------------------------------------- PCA


@pytest.fixture(scope="module")
def pca(splits):
    return fit_pca(splits, max_k=20)


def test_pca_mse_matches_an_explicit_reconstruction(pca, splits) -> None:
    x = to_float(splits.val_images).squeeze(1)
    for k in (1, 2, 7, 20):
        recon = pca.reconstruct(splits.val_images, k)
        assert recon.shape == (len(x), 28, 28)
        assert pca.mse(k) == pytest.approx(float(((recon - x) ** 2).mean()), rel=1e-4)


def test_pca_components_are_orthonormal_and_the_error_falls_with_k(pca) -> None:
    gram = pca.components @ pca.components.T
    assert torch.allclose(gram, torch.eye(20), atol=1e-4)
    assert (pca.val_mse[1:] <= pca.val_mse[:-1] + 1e-7).all()  # more components never hurt
    assert (pca.explained[1:] <= pca.explained[:-1] + 1e-7).all() and float(pca.explained.sum()) <= 1 + 1e-6
    assert pca.seconds > 0


def test_pca_agrees_with_torch_svd(pca, splits) -> None:
    """The closed form (eigh of the covariance) spans the same subspace as an SVD of the centred images."""
    x = to_float(splits.train_images).reshape(len(splits.train_images), -1).double()
    _, _, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    for k in (1, 5):
        ours = pca.components[:k].double()
        projector = vh[:k].T @ vh[:k]
        assert torch.allclose(ours @ projector, ours, atol=1e-3)


def test_pca_refuses_a_k_it_does_not_have(pca) -> None:
    for bad in (0, 21, 2.5, True):
        with pytest.raises(ValueError, match="K must be a whole number"):
            pca.mse(bad)
    assert pca_parameters(10) == 784 * 11


@pytest.mark.slow
def test_pca_on_real_mnist_matches_the_issue_figures() -> None:
    """About 0.034 at K = 10 and 0.009 at K = 64 on the real MNIST test images (skipped without them)."""
    if check_files(data_root(), "mnist"):
        pytest.skip("the real MNIST files are not provisioned here")
    pca = fit_pca(load_splits(data_root(), "mnist"))
    assert len(pca.val_mse) == MAX_K
    assert pca.mse(10) == pytest.approx(0.0341, abs=5e-4)
    assert pca.mse(64) == pytest.approx(0.00905, abs=3e-4)
    assert pca.mse(1) > pca.mse(2) > pca.mse(10)


# ----------------------------------------------------------------------------------- sweeps


def stored(config: TrainConfig, val_loss: float, shipped: bool = False, epochs: int | None = None) -> StoredRun:
    """A stored run of `config` whose last epoch (of `epochs`, default all) ended at `val_loss`."""
    n = config.epochs if epochs is None else epochs
    history = History(epochs=[{"epoch": e, "train_loss": val_loss, "val_loss": val_loss} for e in range(1, n + 1)])
    model = AutoEncoder(config.q1, config.q2, config.k)
    return StoredRun(
        config, model, history, torch.zeros(10, config.k), 1.0, "2026-01-01T00:00:00", "cpu", None, shipped
    )


def test_parameter_count_is_the_models() -> None:
    for sizes in ((32, 32, 10), (4, 8, 1), (64, 64, 64)):
        assert parameter_count(*sizes) == sum(p.numel() for p in AutoEncoder(*sizes).parameters())


def test_a_k_sweep_groups_runs_by_recipe_and_finds_its_gaps() -> None:
    quick = apply_preset(TrainConfig(), "quick")
    runs = [
        stored(TrainConfig(), 0.0127, shipped=True),
        stored(TrainConfig(k=2), 0.04),
        stored(TrainConfig(k=2, seed=1), 0.05),
        stored(apply_preset(TrainConfig(k=4), "quick"), 0.03),
        stored(TrainConfig(q1=16, k=3), 0.02),  # another architecture
        stored(TrainConfig(k=3, dataset="fashion-mnist"), 0.02),  # another data set
        stored(TrainConfig(k=6), 0.02, epochs=3),  # stopped after 3 of its 10 epochs
    ]
    sw = sweep_for(runs, "k", TrainConfig())
    assert list(sw.groups) == [Recipe.of(TrainConfig()), Recipe.of(quick)]  # the assignment's first
    assert [sw.setting(r) for r in sw.groups[Recipe.of(TrainConfig())]] == [2, 2, 10]
    assert [r.val_loss for r in sw.groups[Recipe.of(TrainConfig())]][:2] == [0.04, 0.05]  # best first
    assert sw.missing(Recipe.of(quick)) == [k for k in K_GRID if k != 4]
    assert "assignment's recipe" in Recipe.of(TrainConfig()).label
    assert "quick preset" in Recipe.of(quick).label and "not the assignment's" in Recipe.of(quick).label
    assert Recipe.of(TrainConfig(epochs=3)).label.startswith("custom")
    gap = sw.config_for(6, quick)
    assert (gap.q1, gap.q2, gap.k, gap.epochs, gap.batch_size) == (32, 32, 6, 1, 128)


def test_a_q_sweep_takes_runs_with_equal_channels_at_its_k() -> None:
    runs = [stored(TrainConfig(q1=q, q2=q), 0.1 / q) for q in (4, 16)]
    runs += [stored(TrainConfig(q1=8, q2=16), 0.01), stored(TrainConfig(q1=8, q2=8, k=3), 0.01)]
    sw = find_sweep(runs, "q", "mnist", (10,))
    (group,) = sw.groups.values()
    assert [sw.setting(r) for r in group] == [4, 16]
    assert sw.missing(Recipe.of(TrainConfig())) == [q for q in Q_GRID if q not in (4, 16)]
    config = sw.config_for(64, TrainConfig(k=3))
    assert (config.q1, config.q2, config.k) == (64, 64, 10)
    with pytest.raises(ValueError, match="kind must be one of"):
        find_sweep(runs, "z", "mnist", (10,))


def test_sweep_csv_has_a_row_per_run_with_pca_beside_it() -> None:
    sw = sweep_for([stored(TrainConfig(k=k), 0.1 / k) for k in (1, 10)], "k", TrainConfig())
    rows = list(csv.DictReader(io.StringIO(sweep_csv(sw, {1: 0.06, 10: 0.034}))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["k"], r["pca_val_mse"], r["restarts"]) for r in rows] == [
        ("1", "0.060000", "0"),
        ("10", "0.034000", "0"),
    ]
    assert rows[1]["parameters"] == str(parameter_count(32, 32, 10))


# ------------------------------------------------------------------------------ inside view


@pytest.mark.parametrize("sizes", [(3, 5, 1), (4, 2, 2), (2, 3, 7)])
def test_trace_returns_every_layer_with_its_shape(sizes, splits) -> None:
    q1, q2, k = sizes
    model = AutoEncoder(q1, q2, k).train()
    t = trace(model, splits.val_images[3])
    assert t.image.shape == (28, 28) and t.filters.shape == (q1, 5, 5)
    assert (t.conv1.shape, t.conv2.shape, t.code.shape) == ((q1, 14, 14), (q2, 7, 7), (k,))
    assert (t.dec_linear.shape, t.dec_conv1.shape, t.output.shape) == ((q2, 7, 7), (q1, 14, 14), (28, 28))
    assert min(float(t.conv1.min()), float(t.conv2.min()), float(t.dec_conv1.min())) >= 0  # after ReLUs
    with torch.no_grad():
        model.eval()
        x = to_float(splits.val_images[3:4])
        assert torch.allclose(t.output, model(x)[0, 0]) and torch.allclose(t.code, model.encoder(x)[0])
    assert torch.equal(t.filters, model.encoder.net[0].weight[:, 0])
    assert t.mse == pytest.approx(float(((t.output - t.image) ** 2).mean()))


def test_trace_leaves_the_model_as_it_was(splits) -> None:
    model = AutoEncoder(2, 2, 2).train()
    trace(model, splits.val_images[0])
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="one 28 x 28 image"):
        trace(model, splits.val_images[:2])


# ---------------------------------------------------------------------------------- figures


def test_png_figures_of_the_lesson() -> None:
    imgs = torch.rand(5, 28, 28)
    assert pairs_image(imgs, imgs, imgs * 2).shape == (5, 1, 28, 86)  # triples, PCA clamped into [0, 1]
    assert float(pairs_image(imgs, imgs * 3).max()) <= 1
    rows = comparison_image([("original", imgs), ("auto-encoder", imgs), ("PCA", imgs)])
    assert rows.height == (3 * 30 + 2) * 3 and rows.width > 5 * 30 * 3
    chart = sweep_image([("ae", [1, 2, 10], [0.05, 0.04, 0.013])], ("PCA", [1, 64], [0.06, 0.009]), "K", "title")
    assert chart.size[0] == 900 and len(chart.getcolors(1 << 20) or []) > 5  # something was drawn
    with pytest.raises(ValueError, match="at least one point"):
        sweep_image([("empty", [], [])], None, "K", "title")


def test_log_ticks_give_a_narrow_range_more_than_one_tick() -> None:
    from convae.figures import _log_ticks

    assert _log_ticks(-2, 0) == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    narrow = _log_ticks(math.log10(0.0125), math.log10(0.036))  # the channel sweep's MSEs and PCA's line
    assert narrow == [0.015, 0.02, 0.025, 0.03, 0.035], narrow
    assert all(0.0125 <= t <= 0.036 for t in narrow)


def test_pca_comparison_png_has_three_rows(trained, splits, pca) -> None:
    img = pca_comparison_image(trained.model, splits.val_images[:10], pca)
    assert img.height == (3 * 30 + 2) * 3 + 30  # three rows of digits under a title
    assert img.width > 10 * 30 * 3


# ------------------------------------------------------------------------------------ script


def test_sweep_script_trains_the_gaps_and_writes_its_files(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from scripts import sweep as script

    monkeypatch.setenv("CONVAE_DATA_DIR", str(data_root))
    out = tmp_path / "sweep"
    args = ["sweep", "--preset", "quick", "--k", "1", "2", "--q", "--q1", "2", "--q2", "3", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*args, "--threads", "1"])
    assert script.main() == 0
    assert sorted(p.name for p in out.glob("*.pt")) == [
        apply_preset(TrainConfig(q1=2, q2=3, k=k), "quick").key() + ".pt" for k in (1, 2)
    ]
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(r["q1"], r["q2"], r["k"]) for r in rows] == [("2", "3", "1"), ("2", "3", "2")]
    assert all(r["recipe"].startswith("quick preset") and float(r["pca_val_mse"]) > 0 for r in rows)
    assert Image.open(out / "sweep.png").size[0] == 900 and not (out / "sweep-q.png").exists()
    assert "PCA with 1:" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", [*args, "--threads", "1"])
    assert script.main() == 0  # again: nothing left to train
    assert capsys.readouterr().out.count("already trained, kept") == 2
