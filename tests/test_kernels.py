"""convae.kernels: every candidate computes what nn.Conv2d / nn.ConvTranspose2d compute, and tuning picks
among them without touching the run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import convae.conv_candidates as cands
import convae.engines as engines
import convae.kernel_tune as ktune
import convae.kernels as kern
import convae.train
from convae.model import AutoEncoder
from convae.train import train
from tests.conftest import tiny_config

# (layer, input shape): both strides, odd sizes, one channel in or out, with and without bias, output
# padding, a kernel larger than the stride and one smaller than the padding allows
GEOMETRIES = [
    (lambda: nn.Conv2d(3, 4, 5, stride=2, padding=2), (2, 3, 9, 9)),
    (lambda: nn.Conv2d(1, 4, 5, stride=2, padding=2), (2, 1, 8, 8)),
    (lambda: nn.Conv2d(3, 2, 3, stride=1, padding=0, bias=False), (2, 3, 6, 7)),
    (lambda: nn.ConvTranspose2d(3, 2, 5, stride=2, padding=2, output_padding=1), (2, 3, 4, 4)),
    (lambda: nn.ConvTranspose2d(3, 1, 5, stride=2, padding=2, output_padding=1), (2, 3, 5, 5)),
    (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=0, bias=False), (2, 2, 3, 4)),
    (lambda: nn.ConvTranspose2d(2, 3, 4, stride=3, padding=1, output_padding=2), (1, 2, 3, 3)),
]
# (forward, input_grad, weight_grad): each candidate in all three products (the im2col ones share their
# patches between products), and candidates side by side in one layer
MIXES = [(c, c, c) for c in cands.CANDIDATES] + [("per-image", "im2col", "channels-last")]


def _inputs(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (x, layer.weight, *([layer.bias] if layer.bias is not None else []))


def _on_plan(plan: kern.Plan):
    def forward(x: torch.Tensor, weight: torch.Tensor, *bias: torch.Tensor) -> torch.Tensor:
        return kern._PlannedConv.apply(x, weight, bias[0] if bias else None, plan, torch.is_grad_enabled())

    return forward


@pytest.mark.parametrize("make, shape", GEOMETRIES)
@pytest.mark.parametrize("mix", MIXES, ids="-".join)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_every_candidate_is_the_layers_own_maths(make, shape, mix: tuple[str, str, str], channels_last: bool) -> None:
    """float64: forward equal to the layer's, gradients checked against finite differences (gradcheck,
    fast mode) and, each one, against the layer's own autograd."""
    torch.manual_seed(0)
    layer = make().double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    inputs = _inputs(layer, x)
    forward = _on_plan(kern.Plan(cands.Geometry.of(layer, channels_last), *mix))

    assert torch.autograd.gradcheck(forward, inputs, fast_mode=True)
    mine, theirs = forward(*inputs), layer(x)
    assert mine.shape == theirs.shape
    torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-12)
    upstream = torch.randn_like(theirs)
    for got, want in zip(
        torch.autograd.grad(mine, inputs, upstream), torch.autograd.grad(theirs, inputs, upstream), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("candidate", list(cands.CANDIDATES))
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_every_candidate_on_the_real_shapes_in_float32(candidate: str, channels_last: bool) -> None:
    """The assignment's model (32/32/10) on a half-batch of 16: the output and every parameter's
    gradient within float32 rounding of PyTorch's own, and the weight gradients in the weights' layout."""
    torch.manual_seed(0)
    model = AutoEncoder()
    x = torch.rand(16, 1, 28, 28)
    nn.functional.mse_loss(model(x), x).backward()
    want = [p.grad.clone() for p in model.parameters()]
    out_want = model(x).detach()
    model.zero_grad(set_to_none=True)

    plans = {
        n: kern.Plan(cands.Geometry.of(m, channels_last), candidate, candidate, candidate)
        for n, m in model.named_modules()
        if cands.supported(m)
    }
    assert list(plans) == ["encoder.net.0", "encoder.net.2", "decoder.net.3", "decoder.net.5"]
    with kern.use(model, plans):
        out = model(x)
        nn.functional.mse_loss(out, x).backward()
    torch.testing.assert_close(out, out_want, rtol=1e-4, atol=1e-6)
    for p, g in zip(model.parameters(), want, strict=True):
        assert p.grad.is_contiguous()  # what AccumulateGrad and fused Adam expect of these parameters
        torch.testing.assert_close(p.grad, g, rtol=1e-3, atol=1e-6 * g.abs().max().item())


def test_use_patches_only_the_layers_it_changes_and_only_inside_the_block() -> None:
    model = AutoEncoder(4, 4, 2)
    names = ["encoder.net.0", "encoder.net.2", "decoder.net.3", "decoder.net.5"]
    mods = dict(model.named_modules())
    plans = {n: kern.Plan(cands.Geometry.of(mods[n])) for n in names}  # oneDNN in NCHW: the layers' own
    plans["decoder.net.5"] = kern.Plan(cands.Geometry.of(mods["decoder.net.5"]), "per-image")
    with kern.use(model, plans):
        assert [n for n, m in model.named_modules() if "forward" in m.__dict__] == ["decoder.net.5"]
    assert all("forward" not in m.__dict__ for m in model.modules())


# ------------------------------------------------------------------------------------------ tuning


@pytest.fixture
def fresh_cache():
    ktune.clear_cache()
    yield
    ktune.clear_cache()


def _sample(n: int = 16) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


@pytest.mark.usefixtures("fresh_cache")
def test_tuning_names_a_kernel_for_every_product_and_leaves_the_run_alone() -> None:
    torch.manual_seed(0)
    model = AutoEncoder(8, 8, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    tuning = ktune.tune(model, _sample(), budget_s=0.0)

    kernels = tuning.kernels
    assert kernels["layout"] in ("nchw", "channels-last")
    # the first layer's input needs no gradient, so it has no input-gradient kernel to choose
    expected = {"encoder.net.0.forward", "encoder.net.0.weight_grad"} | {
        f"{layer}.{p}" for layer in ("encoder.net.2", "decoder.net.3", "decoder.net.5") for p in kern.PRODUCTS
    }
    assert set(kernels) - {"layout"} == expected
    assert set(kernels.values()) - {"nchw", "channels-last"} <= set(cands.CANDIDATES)
    assert all(v == "layout" or isinstance(v, str) for v in kernels)  # a plain, JSON-ready dict
    for layer, products in tuning.seconds.items():  # every candidate timed; the choice among the fastest
        plan = tuning.plans[layer]
        for times in products.values():
            assert set(times) <= set(cands.CANDIDATES) and all(t > 0 for t in times.values())
        own = sum(times["onednn"] for times in products.values())
        mine = sum(times[getattr(plan, product)] for product, times in products.items())
        # a product leaves oneDNN for a candidate at least 10 % faster; a layer leaves it at all only when
        # that saves at least 10 % of the layer's time (else it keeps its own autograd node)
        picks = sum(
            min(t.values()) if min(t.values()) <= ktune.MARGIN * t["onednn"] else t["onednn"] for t in products.values()
        )
        assert plan.native == (picks > ktune.MARGIN * own)
        if not plan.native:
            assert mine == pytest.approx(picks) and mine <= ktune.MARGIN * own
    assert tuning.rounds == 1  # no budget: one warm-up and one timed round, no more
    assert tuning.tune_s > 0
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.usefixtures("fresh_cache")
def test_tuning_time_is_bounded_by_rounds_and_budget() -> None:
    model = AutoEncoder(4, 4, 2)
    assert ktune.tune(model, _sample(), budget_s=60.0).rounds == ktune.ROUNDS  # a small model: all rounds
    ktune.clear_cache()
    assert ktune.tune(model, _sample(), budget_s=0.0).rounds == 1


@pytest.mark.usefixtures("fresh_cache")
def test_a_choice_is_made_once_per_shape_and_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    model = AutoEncoder(4, 4, 2)
    first = ktune.tune(model, _sample(), budget_s=0.0)

    def no_race(*_args, **_kwargs):
        raise AssertionError("timed again")

    monkeypatch.setattr(ktune, "_race", no_race)
    again = ktune.tune(AutoEncoder(4, 4, 2), _sample(), budget_s=0.0)  # another model, the same shapes
    assert again.plans == first.plans and again.tune_s == 0.0
    monkeypatch.undo()
    other = ktune.tune(model, _sample(8), budget_s=0.0)  # another batch size: timed afresh
    assert other.tune_s > 0


@pytest.mark.usefixtures("fresh_cache")
def test_a_candidate_that_computes_something_else_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """However fast it is: the first round's gradients are checked against oneDNN's."""

    class Wrong(cands.OneDNN):
        @staticmethod
        def forward(x, w, b, geo, memo):
            return cands.OneDNN.forward(x, w, b, geo, memo) * 1.01

    monkeypatch.setitem(cands.CANDIDATES, "wrong", Wrong)
    tuning = ktune.tune(AutoEncoder(4, 4, 2), _sample(), budget_s=0.0, candidates=("onednn", "wrong"))
    assert "wrong" not in tuning.kernels.values()
    assert all("wrong" not in times for products in tuning.seconds.values() for times in products.values())


# ------------------------------------------------------------------------------- in the engine


def test_kernel_modes_are_checked_and_named() -> None:
    assert engines.kernel_mode(None) in engines.KERNEL_MODES
    assert engines.kernel_mode("default") == "default"
    valid = ", ".join(engines.KERNEL_MODES)
    with pytest.raises(ValueError, match=f"^kernels must be one of {valid}, got 'fast'\\.$"):
        engines.kernel_mode("fast")


def test_the_environment_picks_the_kernel_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(engines.KERNELS_ENV, "default")
    assert engines.kernel_mode(None) == "default"
    assert engines.kernel_mode("auto") == "auto"  # asked for explicitly: that wins
    monkeypatch.setenv(engines.KERNELS_ENV, "turbo")
    with pytest.raises(ValueError, match=r"^\$CONVAE_KERNELS must be one of auto, default, .*got 'turbo'\.$"):
        engines.kernel_mode(None)


@pytest.mark.parametrize("mode", ["auto", "default", *cands.CANDIDATES])
def test_the_stepper_says_which_kernels_it_runs(splits, mode: str) -> None:
    model = AutoEncoder(4, 4, 2)
    optimizer = torch.optim.Adam(model.parameters())
    spec = engines.EngineSpec.parse("eager")
    with engines.open_stepper(spec, model, optimizer, nn.MSELoss(), splits.train_images[:64], 32, mode) as stepper:
        kernels = dict(stepper.kernels)
        patched = {n for n, m in model.named_modules() if "forward" in m.__dict__}
    assert kernels["layout"] in ("nchw", "channels-last")
    assert "encoder.net.0.forward" in kernels and "encoder.net.0.input_grad" not in kernels  # the images need none
    if mode == "default":  # oneDNN, and the decoder's last layer on the one-output path
        assert kernels["decoder.net.5.forward"] == "per-image" and patched == {"decoder.net.5"}
        assert {v for k, v in kernels.items() if k not in ("layout", "decoder.net.5.forward")} == {"onednn"}
    elif mode in cands.CANDIDATES:
        assert {v for k, v in kernels.items() if k != "layout"} == {mode}
    assert all("forward" not in m.__dict__ for m in model.modules())  # given back on exit


def test_graph_engines_keep_the_default_kernels(splits) -> None:
    model = AutoEncoder(4, 4, 2)
    optimizer = torch.optim.Adam(model.parameters())
    spec = engines.EngineSpec.parse("graph")
    with engines.open_stepper(spec, model, optimizer, nn.MSELoss(), splits.train_images[:64], 32, "auto") as stepper:
        assert stepper.kernels["decoder.net.5.forward"] == "per-image"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", ["auto", "im2col", "per-image", "channels-last"])
def test_a_run_on_other_kernels_learns_the_same(
    splits, monkeypatch: pytest.MonkeyPatch, mode: str, threads: int
) -> None:
    """Two epochs of the tiny model: the same losses as on the default kernels up to float rounding (the
    bench reports the real model against the plain loop; tests/test_bench.py checks that within 2 %)."""
    monkeypatch.setattr(convae.train, "REPORT_EVERY_S", 0.0)  # a loss point after every step, not by the clock
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        config = tiny_config(epochs=2, train_size=96)
        monkeypatch.setenv(engines.KERNELS_ENV, "default")
        default = train(config, splits, device="cpu")
        monkeypatch.setenv(engines.KERNELS_ENV, mode)
        other = train(config, splits, device="cpu")
        again = train(config, splits, device="cpu")
    finally:
        torch.set_num_threads(before)
    assert len(other.history.step_losses) == 6
    if mode in cands.CANDIDATES:  # the run's history says which kernels it ran
        assert {v for k, v in other.history.kernels.items() if k != "layout"} == {mode}
    assert default.history.kernels["decoder.net.5.forward"] == "per-image"
    assert other.history.step_losses == again.history.step_losses  # the choice is kept: same bits
    assert other.history.step_losses == pytest.approx(default.history.step_losses, rel=1e-4)
    for a, b in zip(other.history.epochs, default.history.epochs, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert math.isfinite(a["val_loss"])


def test_a_recorded_choice_runs_again_as_it_was(splits) -> None:
    """stepper.kernels, given back to open_stepper (a resumed run, say), runs exactly those kernels."""
    model = AutoEncoder(4, 4, 2)
    recorded = {
        "layout": "channels-last",
        "encoder.net.0.forward": "per-image",
        "encoder.net.0.weight_grad": "im2col",
        "decoder.net.5.forward": "per-image",
        "decoder.net.5.weight_grad": "channels-last",
    }
    plans = kern.plans_from(model, recorded)
    assert plans["encoder.net.0"] == kern.Plan(
        cands.Geometry.of(model.encoder.net[0], True), "per-image", "onednn", "im2col"
    )
    assert plans["encoder.net.2"] == kern.Plan(cands.Geometry.of(model.encoder.net[2], True))  # not named: oneDNN
    spec = engines.EngineSpec.parse("eager")
    optimizer = torch.optim.Adam(model.parameters())
    with engines.open_stepper(spec, model, optimizer, nn.MSELoss(), splits.train_images[:64], 32, recorded) as s:
        again = dict(s.kernels)
    assert {k: v for k, v in again.items() if v != "onednn"} == recorded
    assert kern.plans_from(model, again) == plans  # and what it says it ran reads back the same

    with pytest.raises(ValueError, match=r"^kernel for decoder\.net\.3\.forward must be one of onednn, .*got 'fft'\.$"):
        kern.plans_from(model, {"decoder.net.3.forward": "fft"})
    with pytest.raises(
        ValueError, match=r"^these kernel entries name no convolution of this model: encoder\.net\.9\.x\.$"
    ):
        kern.plans_from(model, {"encoder.net.9.x": "onednn"})
    with pytest.raises(ValueError, match=r"^kernel layout must be nchw or channels-last, got 'nhwc'\.$"):
        kern.plans_from(model, {"layout": "nhwc"})


def test_a_kernel_record_read_from_a_file_is_bounded_and_summed_up() -> None:
    from convae.history import MAX_KERNEL_ENTRIES, History

    record = {"layout": "nchw", "a.forward": "onednn", "a.weight_grad": "im2col", "b.forward": "onednn"}
    assert History.from_dict({"kernels": record}).kernels == record
    assert kern.summary(record) == "nchw: onednn 2, im2col 1"
    assert kern.summary({}) == ""
    hostile = {"x" * 10_000: "<b>" * 1000, "n": 5, 7: "onednn", **{f"k{i}": "onednn" for i in range(500)}}
    kept = History.from_dict({"kernels": hostile}).kernels
    assert len(kept) <= MAX_KERNEL_ENTRIES and all(len(k) <= 80 and len(v) <= 80 for k, v in kept.items())
    assert "n" not in kept and 7 not in kept
    assert History.from_dict({"kernels": ["onednn"]}).kernels == {}


def test_a_resumed_run_goes_on_on_the_kernels_it_started_with(splits, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = []
    config = tiny_config(epochs=2, train_size=96)
    monkeypatch.setenv(engines.KERNELS_ENV, "im2col")
    first = train(config, splits, device="cpu", on_epoch=kept.append)
    monkeypatch.setenv(engines.KERNELS_ENV, "per-image")  # what a fresh run would take now
    resumed = train(config, splits, device="cpu", resume=kept[0])
    assert resumed.history.kernels == first.history.kernels
    assert {v for k, v in resumed.history.kernels.items() if k != "layout"} == {"im2col"}
    assert resumed.history.epochs[-1]["val_loss"] == pytest.approx(first.history.epochs[-1]["val_loss"], rel=1e-6)
    fresh = train(config, splits, device="cpu")
    assert {v for k, v in fresh.history.kernels.items() if k != "layout"} == {"per-image"}


def test_recorded_kernels_that_do_not_fit_the_model_are_chosen_afresh() -> None:
    model = AutoEncoder(4, 4, 2)
    assert kern.recorded(model, {}) is None
    assert kern.recorded(model, {"layout": "nchw", "no.such.layer.forward": "im2col"}) is None
    assert kern.recorded(model, {"layout": "sideways"}) is None
    fits = {"layout": "nchw", "decoder.net.5.forward": "per-image"}
    assert kern.recorded(model, fits) == fits
