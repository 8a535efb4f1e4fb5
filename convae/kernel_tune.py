"""Choosing a model's CPU convolution kernels by timing them (convae.kernels), as cudnn.benchmark does.

`tune` times every candidate of every product in a few training steps of the model itself (and
oneDNN with channels-last activations throughout) and keeps the fastest. Choices are cached per
shape and thread count for the life of the process, as cuDNN's are: later runs of the same model
reuse them at no cost, and give the same bits.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import threading
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from convae.conv_candidates import CANDIDATES, Geometry, supported
from convae.kernels import PRODUCTS, Plan, describe, kernel_clock, use

TUNE_BUDGET_S = 0.2  # time the candidates' steps for about this long (always one warm-up and one timed round)
ROUNDS = 5  # timed steps per candidate at most; each product's best time counts
# Another kernel replaces oneDNN's for a product, and a layer leaves oneDNN at all, and the channels-last
# layout replaces NCHW, only when at least this much faster: the timings are noisy on a busy machine, and a
# layer left on its own kernels keeps PyTorch's own autograd node (the others go through a Python one).
MARGIN = 0.9


@dataclass(frozen=True)
class Tuning:
    """What tuning one model found: the plans by layer name; the best seconds of every candidate of every
    product (in the layout chosen); each layout's step, as estimated from its best parts; the timed rounds
    run and the seconds it all took (0 when the choice came from this process's cache)."""

    plans: dict[str, Plan]
    needs_input_grad: dict[str, bool]
    seconds: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # layer, product, candidate
    step_s: dict[str, float] = field(default_factory=dict)  # layout -> estimated step seconds
    rounds: int = 0
    tune_s: float = 0.0

    @property
    def kernels(self) -> dict[str, str]:
        """The choice as a plain dict: {"layout": ..., "<layer>.<product>": candidate, ...}."""
        return describe(self.plans, self.needs_input_grad)

    @property
    def conv_s(self) -> float:
        """The estimated seconds of the chosen kernels in a step (all layers, all products)."""
        return sum(
            times[getattr(self.plans[layer], p)] for layer, ps in self.seconds.items() for p, times in ps.items()
        )


_cache_lock = threading.Lock()
_cache: dict[tuple, Tuning] = {}


def clear_cache() -> None:
    """Forget every choice made in this process (the next run times the candidates again)."""
    with _cache_lock:
        _cache.clear()


def layer_inputs(model: nn.Module, sample: torch.Tensor) -> dict[str, tuple[torch.Size, bool]]:
    """The input shape of every supported layer for this sample batch, and whether its gradient is needed."""
    found: dict[str, tuple[torch.Size, bool]] = {}
    hooks = []
    for name, m in model.named_modules():
        if supported(m):
            hooks.append(m.register_forward_pre_hook(functools.partial(_note, found, name)))
    try:
        with torch.enable_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
    return found


def _note(found: dict, name: str, _m: nn.Module, args: tuple) -> None:
    found[name] = (args[0].shape, args[0].requires_grad)


def tune(
    model: nn.Module,
    sample: torch.Tensor,
    budget_s: float = TUNE_BUDGET_S,
    candidates: tuple[str, ...] = tuple(CANDIDATES),
) -> Tuning:
    """Time the candidates in whole training steps of `model` on `sample`'s batch, on this thread at its
    intra-op thread count, and keep the layout and, in it, the kernel of each product of each supported
    layer that make the fastest step.

    Each configuration (one candidate for every product of every layer in the NCHW layout, or oneDNN
    in the channels-last one) runs forward and backward on a copy of the model (the model, its
    gradients and the global random generator are left alone), in turn, round after round: one
    untimed round, whose gradients are checked against the first configuration's (one that disagrees
    beyond float rounding is never chosen), then timed rounds until `budget_s` is spent (at least one,
    at most ROUNDS). Each product's best time counts; a layout's step is the sum of its products' best
    times and of the best time of everything else in its steps. A choice made before in this process
    for the same layers, shapes and thread count is reused.
    """
    started = time.perf_counter()
    inputs = layer_inputs(model, sample)
    layers = dict(model.named_modules())
    needs = {name: needs_x for name, (_, needs_x) in inputs.items()}
    key = (
        torch.get_num_threads(),
        tuple(candidates),
        tuple(
            (name, Geometry.of(layers[name]), tuple(shape), tuple(layers[name].weight.shape), needs_x)
            + (layers[name].bias is not None, layers[name].weight.dtype)
            for name, (shape, needs_x) in inputs.items()
        ),
    )
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return dataclasses.replace(hit, needs_input_grad=needs, tune_s=0.0)
    found = _race(model, sample, list(inputs), candidates, started + budget_s)
    found = dataclasses.replace(found, needs_input_grad=needs, tune_s=time.perf_counter() - started)
    with _cache_lock:
        _cache[key] = found
    return found


@dataclass
class _Config:
    """One configuration raced by tune(): a layout and one candidate for everything, with its times."""

    channels_last: bool
    candidate: str
    plans: dict[str, Plan]
    steps: list[float] = field(default_factory=list)  # whole forward and backward

    def rest(self) -> float:
        """The best time of a step's work outside the convolutions."""
        timed = [t for plan in self.plans.values() for t in plan.timings.values() if t]
        convs = [sum(per_step) for per_step in zip(*timed, strict=True)]
        return min(step - conv for step, conv in zip(self.steps, convs, strict=True))


def _race(model: nn.Module, sample: torch.Tensor, names: list[str], candidates: tuple[str, ...], deadline: float):
    probe = copy.deepcopy(model)
    for m in probe.modules():
        m.__dict__.pop("forward", None)  # a copy of a model on planned kernels: back to its own
    layers = dict(probe.named_modules())
    x = sample.detach().to(next(probe.parameters()).dtype)
    # In the channels-last layout only oneDNN, whose native layout it is: the other candidates would
    # convert their way back, and the layout's whole gain, if any, is oneDNN's NHWC kernels.
    pairs = [(False, c) for c in candidates] + ([(True, "onednn")] if "onednn" in candidates else [])
    configs = [
        _Config(cl, c, {n: Plan(Geometry.of(layers[n], cl), c, c, c, {p: [] for p in PRODUCTS}) for n in names})
        for cl, c in pairs
    ]
    reference: list[torch.Tensor | None] = []
    clock = kernel_clock()
    rounds = 0
    for r in range(ROUNDS + 1):
        for config in list(configs):
            probe.zero_grad(set_to_none=True)
            with use(probe, config.plans):
                t0 = clock()
                probe(x).square().mean().backward()
                config.steps.append(clock() - t0)
            if r > 0:
                continue
            grads = [None if p.grad is None else p.grad.clone() for p in probe.parameters()]
            reference = reference or grads
            if not all(_agrees(g, want) for g, want in zip(grads, reference, strict=True)):
                configs.remove(config)
            config.steps.clear()  # the first round warms up; its times do not count
            for plan in config.plans.values():
                for times in plan.timings.values():
                    times.clear()
        rounds = r
        if r >= 1 and time.perf_counter() > deadline:
            break

    def best(cl: bool) -> tuple[float, dict[str, Plan], dict]:
        mine = [c for c in configs if c.channels_last == cl]
        total, plans, seconds = min(c.rest() for c in mine), {}, {}
        for name in names:
            times = {
                p: {c.candidate: min(c.plans[name].timings[p]) for c in mine if c.plans[name].timings[p]}
                for p in PRODUCTS
            }
            seconds[name] = {p: t for p, t in times.items() if t}
            pick = {p: _pick(t) for p, t in times.items()}
            own = sum(t.get("onednn", math.inf) for t in times.values() if t)
            if not cl and sum(t[pick[p]] for p, t in times.items() if t) > MARGIN * own:
                pick = dict.fromkeys(PRODUCTS, "onednn")  # not worth leaving the layer's own autograd node
            total += sum(t[pick[p]] for p, t in times.items() if t)
            plans[name] = Plan(Geometry.of(layers[name], cl), pick["forward"], pick["input_grad"], pick["weight_grad"])
        return total, plans, seconds

    results = {cl: best(cl) for cl in sorted({c.channels_last for c in configs})}
    nhwc = True in results and (False not in results or results[True][0] <= MARGIN * results[False][0])
    _, plans, seconds = results[nhwc]
    step_s = {("channels-last" if cl else "nchw"): r[0] for cl, r in results.items()}
    return Tuning(plans, {}, seconds, step_s, rounds)


def _pick(times: dict[str, float]) -> str:
    """The fastest candidate, but oneDNN unless another beats it by the MARGIN."""
    if not times:
        return "onednn"
    fastest = min(times, key=times.get)
    if "onednn" in times and times[fastest] > MARGIN * times["onednn"]:
        return "onednn"
    return fastest


def _agrees(got: torch.Tensor | None, want: torch.Tensor | None) -> bool:
    if got is None or want is None:
        return got is want
    scale = want.abs().max().item() or 1.0
    return got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-3, atol=1e-4 * scale))
