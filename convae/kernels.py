"""Convolution kernels chosen by measurement, per model, on the CPU at hand (like cudnn.benchmark).

A Plan names, for one layer, the candidate (convae.conv_candidates) that runs each of its three
products: the forward, the input gradient and the weight (and bias) gradient. oneDNN (PyTorch's
default) is fast for some of this model's products and several times slower than the others for
some, and which ones differs between AVX2 and AVX-512. `convae.kernel_tune.tune` times the candidates
in a few training steps of the model itself and keeps the fastest; `use` makes the layers run on the
chosen plans within a block; `describe` gives a choice as a plain dict for a run's history and
metrics, and `plans_from` reads one back.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from convae.conv_candidates import CANDIDATES, Geometry, supported

PRODUCTS = ("forward", "input_grad", "weight_grad")


@dataclass(frozen=True)
class Plan:
    """The candidate chosen for each product of one layer (and, while tuning, where their times go)."""

    geometry: Geometry
    forward: str = "onednn"
    input_grad: str = "onednn"
    weight_grad: str = "onednn"
    timings: dict[str, list[float]] | None = field(default=None, compare=False, repr=False)

    @property
    def native(self) -> bool:
        """Whether this is what the layer does by itself (oneDNN, NCHW): then it is left to do so."""
        return not self.geometry.channels_last and {self.forward, self.input_grad, self.weight_grad} == {"onednn"}

    def choice(self, needs_input_grad: bool = True) -> dict[str, str]:
        """The plain record of it: {product: candidate}, without the input gradient when none is needed."""
        return {p: getattr(self, p) for p in PRODUCTS if p != "input_grad" or needs_input_grad}


class _PlannedConv(torch.autograd.Function):
    """A (transposed) convolution whose three products run on the kernels a Plan names."""

    @staticmethod
    def forward(ctx, x, weight, bias, plan: Plan, keep: bool):
        ctx.plan, ctx.has_bias = plan, bias is not None
        ctx.memo = {} if keep and plan.timings is None else None  # tuning times each product on its own
        ctx.save_for_backward(x, weight)
        return _timed(plan, "forward", CANDIDATES[plan.forward].forward, x, weight, bias, plan.geometry, ctx.memo)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        plan, memo, geo = ctx.plan, ctx.memo, ctx.plan.geometry
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _timed(plan, "input_grad", CANDIDATES[plan.input_grad].input_grad, g, x, w, geo, memo)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            impl = CANDIDATES[plan.weight_grad].weight_grad
            gw, gb = _timed(plan, "weight_grad", impl, g, x, w, geo, ctx.has_bias, memo)
        ctx.memo = None
        return gx, gw, gb, None, None


def _timed(plan: Plan, product: str, fn: Callable, *args):
    """fn(*args), its time noted in plan.timings while tuning."""
    if plan.timings is None:
        return fn(*args)
    clock = kernel_clock()
    t0 = clock()
    out = fn(*args)
    plan.timings[product].append(clock() - t0)
    return out


def kernel_clock() -> Callable[[], float]:
    """The clock to time kernels by: with one intra-op thread, this thread's CPU time, which does not
    count the time other programs on a busy machine hold the core; else the wall clock."""
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


def planned(layer: nn.Module, plan: Plan, x: torch.Tensor) -> torch.Tensor:
    """layer(x) on the kernels of `plan`."""
    return _PlannedConv.apply(x, layer.weight, layer.bias, plan, torch.is_grad_enabled())


@contextmanager
def use(model: nn.Module, plans: dict[str, Plan]) -> Iterator[None]:
    """Within the block, run each named layer of `model` on the kernels of its plan (a layer whose plan is
    its own kernels keeps its own forward, and PyTorch's autograd node); given back on exit."""
    layers = dict(model.named_modules())
    patched = {name: layers[name] for name, plan in plans.items() if not plan.native or plan.timings is not None}
    for name, m in patched.items():
        m.forward = functools.partial(planned, m, plans[name])
    try:
        yield
    finally:
        for m in patched.values():
            del m.forward


def describe(plans: dict[str, Plan], needs_input_grad: dict[str, bool]) -> dict[str, str]:
    """Plans as a plain dict: the layout, then each layer's products and their kernels (the input
    gradient of a layer whose input needs none left out)."""
    nhwc = any(plan.geometry.channels_last for plan in plans.values())
    out = {"layout": "channels-last" if nhwc else "nchw"}
    for name, plan in plans.items():
        for product, kernel in plan.choice(needs_input_grad.get(name, True)).items():
            out[f"{name}.{product}"] = kernel
    return out


def plans_from(model: nn.Module, kernels: Mapping[str, str]) -> dict[str, Plan]:
    """The plans that a `describe` dict names, for this model (a resumed run can go on on the kernels
    it started with); ValueError naming what does not fit."""
    layout = kernels.get("layout", "nchw")
    if layout not in ("nchw", "channels-last"):
        raise ValueError(f"kernel layout must be nchw or channels-last, got {layout!r}.")
    plans, known = {}, {"layout"}
    for name, m in model.named_modules():
        if not supported(m):
            continue
        picks = {p: kernels.get(f"{name}.{p}", "onednn") for p in PRODUCTS}
        known |= {f"{name}.{p}" for p in PRODUCTS}
        for product, kernel in picks.items():
            if kernel not in CANDIDATES:
                raise ValueError(f"kernel for {name}.{product} must be one of {', '.join(CANDIDATES)}, got {kernel!r}.")
        plans[name] = Plan(Geometry.of(m, layout == "channels-last"), *picks.values())
    unknown = sorted(set(kernels) - known)
    if unknown:
        raise ValueError(f"these kernel entries name no convolution of this model: {', '.join(unknown)}.")
    return plans


def fixed(model: nn.Module, candidate: str) -> dict[str, Plan]:
    """Every supported layer on one candidate for all three products (NCHW)."""
    if candidate not in CANDIDATES:
        raise ValueError(f"kernel candidate must be one of {', '.join(CANDIDATES)}, got {candidate!r}.")
    return {
        name: Plan(Geometry.of(m), candidate, candidate, candidate) for name, m in model.named_modules() if supported(m)
    }


def recorded(model: nn.Module, kernels: Mapping[str, str]) -> Mapping[str, str] | None:
    """A run's recorded kernels (History.kernels) if they name this model's layers, else None (then the
    run chooses afresh): a resumed run goes on on the kernels it started with."""
    if not kernels:
        return None
    try:
        plans_from(model, kernels)
    except ValueError:
        return None
    return kernels


def summary(kernels: Mapping[str, str]) -> str:
    """A one-line account of a `describe` dict, for a log: the layout and how many products run on each
    kernel, e.g. "nchw: onednn 6, per-image 3, im2col 1" ("" when there is nothing to say)."""
    counts: dict[str, int] = {}
    for name, kernel in kernels.items():
        if name != "layout":
            counts[kernel] = counts.get(kernel, 0) + 1
    if not counts:
        return ""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"{kernels.get('layout', 'nchw')}: " + ", ".join(f"{k} {n}" for k, n in ranked)


# ------------------------------------------- the fixed choice of before ($CONVAE_KERNELS=default)


class _ConvTranspose2dOneOutput(torch.autograd.Function):
    """conv_transpose2d on the CPU for one output channel: the same maths on other kernels.

    Forward uses ATen's im2col kernel, which is much faster here than oneDNN's (PyTorch's default);
    backward goes to the default kernels through aten.convolution_backward. Groups 1, dilation 1.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, output_padding):
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, output_padding)
        kernel = weight.shape[2:]
        return torch.ops.aten.slow_conv_transpose2d(x, weight, kernel, bias, stride, padding, output_padding, (1, 1))

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, output_padding = ctx.geometry
        mask = list(ctx.needs_input_grad[:3])
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[1]], stride, padding, (1, 1), True, output_padding, 1, mask
        )
        return gx, gw, gb, None, None, None


def _one_output(layer: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    return _ConvTranspose2dOneOutput.apply(
        x, layer.weight, layer.bias, layer.stride, layer.padding, layer.output_padding
    )


def _one_output_layers(model: nn.Module) -> list[nn.Module]:
    return [
        m
        for m in model.modules()
        if type(m) is nn.ConvTranspose2d
        and m.out_channels == 1
        and m.groups == 1
        and m.dilation == (1, 1)
        and m.weight.device.type == "cpu"
    ]


@contextmanager
def fast_cpu_kernels(model: nn.Module) -> Iterator[None]:
    """Within the block, run this CPU model's one-output-channel transposed convolutions on the kernels
    of _ConvTranspose2dOneOutput (same results up to float rounding); a no-op on other devices."""
    layers = _one_output_layers(model)
    for m in layers:
        m.forward = functools.partial(_one_output, m)
    try:
        yield
    finally:
        for m in layers:
            del m.forward


def default_plans(model: nn.Module) -> dict[str, Plan]:
    """What fast_cpu_kernels runs, as convae.kernels plans (to say so in stepper.kernels)."""
    one_output = {id(m) for m in _one_output_layers(model)}
    return {
        name: Plan(Geometry.of(m), "per-image" if id(m) in one_output else "onednn")
        for name, m in model.named_modules()
        if supported(m)
    }
