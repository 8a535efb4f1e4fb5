"""Adam as torch.optim.Adam computes it, without importing torch._dynamo on the way to the first step.

Several methods of `torch.optim.Optimizer` (`add_param_group`, called by the constructor, `zero_grad`,
`state_dict`, `load_state_dict`) are wrapped by `torch._disable_dynamo`, and `Adam.step` by
`_use_grad_for_differentiable`. Their first calls import `torch._dynamo` (about 2 s on a 2-core machine,
before the first training step), only so that `torch.compile` does not trace into them. Nothing here
compiles the optimizer, so this subclass calls the same functions without those wrappers (`step` with
gradients off, which is all its wrapper does in eager mode). The update is the same function on the same
state: the same parameters bit for bit, and the same state_dict (tests/test_train.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

_Optimizer = torch.optim.Optimizer
_STEP: Callable = inspect.unwrap(torch.optim.Adam.step)  # Adam's own step, without the wrappers


class Adam(torch.optim.Adam):
    add_param_group = inspect.unwrap(_Optimizer.add_param_group)
    zero_grad = inspect.unwrap(_Optimizer.zero_grad)
    state_dict = inspect.unwrap(_Optimizer.state_dict)
    load_state_dict = inspect.unwrap(_Optimizer.load_state_dict)

    def __init__(self, params, **kwargs) -> None:
        if kwargs.get("differentiable"):
            raise ValueError("convae.optim.Adam does not support differentiable=True; use torch.optim.Adam.")
        super().__init__(params, **kwargs)

    def step(self, closure: Callable[[], float] | None = None):  # type: ignore[override]
        with torch.no_grad():
            return _STEP(self, closure)
