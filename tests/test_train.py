"""The training engine: the assignment's recipe, config checks, events, stop flag, divergence."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

import convae.engines as engines
import convae.kernels as kernels
import convae.train as engine
from convae.data import to_float
from convae.engines import ENGINES, EngineSpec
from convae.model import AutoEncoder
from convae.train import (
    History,
    NonFiniteLoss,
    Progress,
    TrainConfig,
    TrainingStopped,
    evaluate,
    preview_indices,
    train,
)
from tests.conftest import tiny_config


@pytest.fixture
def every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Report progress after every step (the engine otherwise reports by the clock)."""
    monkeypatch.setattr(engine, "REPORT_EVERY_S", 0.0)


def test_defaults_are_the_assignments() -> None:
    c = TrainConfig()
    assert (c.q1, c.q2, c.k) == (32, 32, 10)
    assert c.batch_size == 32
    assert c.val_batch_size == 100
    assert c.lr == 1e-3
    assert c.epochs == 10
    assert c.train_size is None  # all 60,000 images
    assert c.dataset == "mnist"
    assert c.is_assignment_recipe
    assert not TrainConfig(lr=1e-2).is_assignment_recipe
    assert not TrainConfig(batch_size=64).is_assignment_recipe


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"lr": 0}, "lr"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"lr": math.inf}, "lr"),
        ({"lr": 2}, "lr"),
        ({"lr": "0.001"}, "lr"),
        ({"lr": True}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"val_batch_size": 0}, "val_batch_size"),
        ({"train_size": 0}, "train_size"),
        ({"train_size": -5}, "train_size"),
        ({"seed": -1}, "seed"),
        ({"dataset": "cifar10"}, "dataset"),
        ({"q1": 0}, "Q1"),
        ({"q2": -2}, "Q2"),
        ({"k": 1.0}, "K"),
    ],
)
def test_invalid_config_names_the_field(changes: dict, name: str) -> None:
    with pytest.raises(ValueError) as info:
        TrainConfig(**changes)
    message = str(info.value)
    assert message.startswith(name) or f" {name} " in message or f"{name} " in message
    value = next(iter(changes.values()))
    assert repr(value) in message or str(value) in message


def test_config_key_and_dict_round_trip() -> None:
    c = TrainConfig(q1=8, q2=16, k=3, epochs=2, lr=5e-4, batch_size=64, train_size=1000, seed=4)
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert TrainConfig.from_dict({**c.to_dict(), "unknown": 1}) == c
    key = c.key()
    assert key == "mnist-q8-16-k3-e2-lr0.0005-b64-n1000-s4"
    assert all(ch.isalnum() or ch in "-._" for ch in key)
    assert TrainConfig().key() != TrainConfig(seed=1).key()
    assert TrainConfig().key() != TrainConfig(dataset="fashion-mnist").key()
    assert "nall" in TrainConfig().key()


def test_train_size_larger_than_the_data(splits) -> None:
    with pytest.raises(ValueError, match=r"train_size 1000 is larger than the training set \(300 images\)"):
        train(tiny_config(train_size=1000), splits, device="cpu")


@pytest.mark.usefixtures("every_step")
def test_same_config_and_seed_give_identical_history(splits) -> None:
    config = tiny_config(epochs=2, train_size=96)
    a = train(config, splits, device="cpu")
    b = train(config, splits, device="cpu")
    assert a.history.steps == b.history.steps == list(range(1, 7))
    assert a.history.step_losses == b.history.step_losses
    assert [(e["train_loss"], e["val_loss"]) for e in a.history.epochs] == [
        (e["train_loss"], e["val_loss"]) for e in b.history.epochs
    ]
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    c = train(tiny_config(epochs=2, train_size=96, seed=1), splits, device="cpu")
    assert c.history.step_losses != a.history.step_losses  # the seed matters


def test_result(trained, splits) -> None:
    assert trained.device == "cpu"
    assert trained.config == tiny_config()
    assert isinstance(trained.model, AutoEncoder)
    assert trained.model.sizes == (4, 4, 2)
    assert not trained.model.training  # returned in eval mode
    assert all(p.device.type == "cpu" for p in trained.model.parameters())
    assert trained.seconds > 0
    (row,) = trained.history.epochs
    assert set(row) == {"epoch", "train_loss", "val_loss", "seconds"}
    assert row["epoch"] == 1
    assert row["val_loss"] == pytest.approx(evaluate(trained.model, splits.val_images), rel=1e-6)
    assert trained.history.steps[-1] == math.ceil(200 / 32)
    assert trained.history.step_losses[-1] == pytest.approx(row["train_loss"], rel=1e-6)


@pytest.mark.usefixtures("every_step")
def test_events(splits) -> None:
    events: list[Progress] = []
    config = tiny_config(epochs=2, train_size=100, batch_size=32)
    result = train(config, splits, events.append, device="cpu")
    kinds = [e.kind for e in events]
    steps_per_epoch = 4  # ceil(100 / 32)
    assert kinds[0] == "start"
    assert kinds[-1] == "done"
    assert kinds.count("start") == 1 and kinds.count("done") == 1
    assert kinds.count("step") == 2 * steps_per_epoch
    epoch_events = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in epoch_events] == [1, 2]
    for e, row in zip(epoch_events, result.history.epochs, strict=True):
        assert e.val_loss is not None and math.isfinite(e.val_loss)
        assert e.val_loss == row["val_loss"] and e.train_loss == row["train_loss"]
    # an epoch event follows the last step of its epoch
    assert kinds.index("epoch") == kinds.index("step") + steps_per_epoch
    steps = [e for e in events if e.kind == "step"]
    assert [e.global_step for e in steps] == list(range(1, 2 * steps_per_epoch + 1))
    assert all(e.steps_per_epoch == steps_per_epoch and e.epochs == 2 for e in events)
    assert all(e.train_loss is not None and e.train_loss > 0 for e in steps)
    assert events[-1].val_loss == result.history.epochs[-1]["val_loss"]
    assert events[-1].fraction == 1.0
    assert events[0].fraction == 0.0
    assert events[0].preview is not None and events[0].preview.shape == (10, 28, 28)
    assert epoch_events[0].preview is not None
    assert steps[-1].samples_per_s > 0


def _stop_after_step_2(splits, engine: str = "eager", **changes) -> list[Progress]:
    """Train, set the stop flag from the step-2 event, check the run stops there; returns the events."""
    stop = threading.Event()
    events: list[Progress] = []

    def on_event(p: Progress) -> None:
        events.append(p)
        if p.kind == "step" and p.step == 2:
            stop.set()

    with pytest.raises(TrainingStopped, match=r"epoch 1, step 2"):
        train(tiny_config(**changes), splits, on_event, stop=stop, device="cpu", engine=engine)
    return events


@pytest.mark.usefixtures("every_step")
def test_stop_flag_from_the_callback_stops_within_one_step(splits) -> None:
    events = _stop_after_step_2(splits)
    assert [e.kind for e in events] == ["start", "step", "step"]  # no step after the flag


def test_stop_flag_set_before_the_first_step(splits) -> None:
    stop = threading.Event()
    events: list[Progress] = []

    def on_event(p: Progress) -> None:
        events.append(p)
        stop.set()

    with pytest.raises(TrainingStopped):
        train(tiny_config(), splits, on_event, stop=stop, device="cpu")
    assert [e.kind for e in events] == ["start"]


def test_stop_flag_between_epochs(splits) -> None:
    stop = threading.Event()

    def on_event(p: Progress) -> None:
        if p.kind == "epoch":
            stop.set()

    with pytest.raises(TrainingStopped, match="epoch 2, step 0"):
        train(tiny_config(epochs=3, train_size=64), splits, on_event, stop=stop, device="cpu")


def _poison_from(call: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every batch from the `call`-th conversion on NaN (call 1 is the preview digits)."""
    calls = {"n": 0}

    def poisoned(images: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        x = to_float(images)
        return x * math.inf if calls["n"] >= call else x  # 0 * inf is NaN

    _patch_to_float(monkeypatch, poisoned)


def _patch_to_float(monkeypatch: pytest.MonkeyPatch, replacement) -> None:
    """Replace the uint8-to-float conversion wherever the training run calls it (loop and steppers)."""
    monkeypatch.setattr(engine, "to_float", replacement)
    monkeypatch.setattr(engines, "to_float", replacement)


def test_non_finite_loss_names_epoch_and_step(splits, monkeypatch: pytest.MonkeyPatch) -> None:
    _poison_from(4, monkeypatch)  # the 3rd training batch of epoch 1
    events: list[Progress] = []
    with pytest.raises(NonFiniteLoss) as info:
        train(tiny_config(lr=1.0), splits, events.append, device="cpu")
    message = str(info.value)
    assert "epoch 1, step 3" in message
    assert "nan" in message.lower()
    assert "learning rate" in message.lower()
    assert "it was 1" in message and "try 0.1" in message
    assert "done" not in [e.kind for e in events]


@pytest.mark.usefixtures("every_step")
def test_non_finite_loss_in_a_later_epoch(splits, monkeypatch: pytest.MonkeyPatch) -> None:
    steps_per_epoch = math.ceil(64 / 32)
    # call 1: the preview digits; epoch 1: 2 steps and 1 validation batch; call 5: epoch 2, step 1
    _poison_from(1 + steps_per_epoch + 1 + 1, monkeypatch)
    with pytest.raises(NonFiniteLoss, match=r"epoch 2, step 1\b"):
        train(tiny_config(epochs=2, train_size=64), splits, device="cpu")


def test_diverging_training_raises_non_finite_loss(splits, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loss that overflows (as with a far too large learning rate) stops the run with advice."""

    class Exploding(nn.MSELoss):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            loss = super().forward(y, x)
            return loss * 1e39 if self.calls >= 2 else loss  # float32 overflows to inf

    monkeypatch.setattr(engine.nn, "MSELoss", Exploding)
    with pytest.raises(NonFiniteLoss) as info:
        train(tiny_config(lr=1.0), splits, device="cpu")
    assert "epoch 1, step 2" in str(info.value)
    assert "inf" in str(info.value)
    assert "Lower the learning rate" in str(info.value)


def test_training_lowers_the_validation_loss(splits) -> None:
    config = tiny_config(epochs=2, lr=1e-2, train_size=300)
    torch.manual_seed(config.seed)
    untrained = AutoEncoder(config.q1, config.q2, config.k)  # the engine's initial weights
    before = evaluate(untrained, splits.val_images)
    result = train(config, splits, device="cpu")
    val = [e["val_loss"] for e in result.history.epochs]
    assert val[-1] < before * 0.9
    assert val[1] < val[0]
    assert result.history.epochs[-1]["train_loss"] < before


def test_evaluate_is_the_mean_squared_error(trained, splits) -> None:
    x = to_float(splits.val_images)
    with torch.no_grad():
        expected = float(((trained.model(x) - x) ** 2).mean())
    assert evaluate(trained.model, splits.val_images) == pytest.approx(expected, rel=1e-5)
    assert evaluate(trained.model, splits.val_images, batch_size=7) == pytest.approx(expected, rel=1e-5)


def test_preview_indices_pick_one_digit_per_class(splits) -> None:
    idx = preview_indices(splits.val_labels)
    assert splits.val_labels[idx].tolist() == list(range(10))
    for c, i in enumerate(idx.tolist()):
        assert i == int((splits.val_labels == c).nonzero()[0])  # the first of its class


def test_pick_device() -> None:
    assert engine.pick_device("cpu") == torch.device("cpu")
    assert engine.pick_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            engine.pick_device("cuda")


def test_history_round_trip() -> None:
    h = History([1, 2], [0.5, 0.4], [{"epoch": 1, "train_loss": 0.45, "val_loss": 0.41, "seconds": 1.0}])
    assert History.from_dict(h.to_dict()) == h
    assert History.from_dict({}) == History()


def test_mean_init_is_off_by_default_and_named_in_the_key() -> None:
    assert TrainConfig().mean_init is False
    assert TrainConfig().key().endswith("-s0")
    assert TrainConfig(mean_init=True).key().endswith("-s0-mi")
    assert TrainConfig(mean_init=True) != TrainConfig()


@pytest.fixture
def two_threads():
    """Run the engine as on a 2-core machine: each batch as two half-batches on two threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("two_threads")
def test_two_thread_engine_is_deterministic_and_matches_one_thread(splits) -> None:
    config = tiny_config(epochs=2, train_size=96)
    a = train(config, splits, device="cpu")
    b = train(config, splits, device="cpu")
    assert a.history.step_losses == b.history.step_losses  # same seed, same history, with two threads
    assert torch.get_num_threads() == 2  # the engine gives the thread setting back
    torch.set_num_threads(1)
    single = train(config, splits, device="cpu")
    torch.set_num_threads(2)
    # Two half-batches give the same Adam steps as one batch, up to float rounding.
    assert a.history.epochs[-1]["val_loss"] == pytest.approx(single.history.epochs[-1]["val_loss"], rel=1e-3)


@pytest.mark.usefixtures("two_threads", "every_step")
def test_two_thread_engine_stops_and_detects_non_finite_loss(splits, monkeypatch) -> None:
    _stop_after_step_2(splits)

    real = engine.to_float
    calls = {"n": 0}

    def poisoned(images: torch.Tensor) -> torch.Tensor:  # the third batch holds an infinite pixel
        calls["n"] += 1
        x = real(images)
        if calls["n"] == 3:
            x = x.clone()
            x.view(-1)[0] = float("inf")
        return x

    _patch_to_float(monkeypatch, poisoned)
    with pytest.raises(NonFiniteLoss, match="Lower the learning rate"):
        train(tiny_config(), splits, device="cpu")


# ---------------------------------------------------------------- the device-indexed engines ("graph")
# On CUDA these capture each whole step as a CUDA graph; here, on the CPU, the same step form runs
# eagerly: batches gathered on the device by a step counter, losses recorded by index, capturable Adam.


def _epoch_losses(result) -> list[tuple[float, float]]:
    return [(e["train_loss"], e["val_loss"]) for e in result.history.epochs]


@pytest.mark.parametrize(
    ("engine_name", "train_size"),
    [
        ("graph", 96),  # 3 whole batches
        ("graph", 100),  # 3 whole and a partial one of 4
        ("graph-channels-last", 100),
    ],
)
@pytest.mark.usefixtures("every_step")
def test_graph_engine_learns_like_the_default_engine(splits, engine_name: str, train_size: int) -> None:
    config = tiny_config(epochs=3, train_size=train_size)
    eager = train(config, splits, device="cpu")
    graph = train(config, splits, device="cpu", engine=engine_name)
    steps = math.ceil(train_size / 32)
    assert graph.history.steps == eager.history.steps == list(range(1, 3 * steps + 1))
    # same batches in the same order, the same maths: only float rounding (capturable Adam) differs
    assert graph.history.step_losses == pytest.approx(eager.history.step_losses, rel=1e-5)
    for a, b in zip(_epoch_losses(graph), _epoch_losses(eager), strict=True):
        assert a == pytest.approx(b, rel=1e-5)
    for (name, pa), pb in zip(graph.model.state_dict().items(), eager.model.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6, msg=name)
    again = train(config, splits, device="cpu", engine=engine_name)
    assert again.history.step_losses == graph.history.step_losses  # reproducible
    for result in (eager, graph):
        assert not result.model.training
        assert all(p.grad is None and p.is_contiguous() for p in result.model.parameters())


@pytest.mark.usefixtures("every_step")
def test_graph_engine_reports_images_per_epoch_and_stops(splits) -> None:
    events: list[Progress] = []
    train(tiny_config(epochs=2, train_size=100), splits, events.append, device="cpu", engine="graph")
    ends = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in ends] == [1, 2] and all(e.step == e.steps_per_epoch == 4 for e in ends)
    assert all(math.isfinite(e.train_loss) and e.samples_per_s > 0 for e in ends)

    _stop_after_step_2(splits, engine="graph", train_size=100)


def test_graph_engine_finds_a_non_finite_loss(splits, monkeypatch: pytest.MonkeyPatch) -> None:
    _poison_from(4, monkeypatch)  # the 3rd training batch of epoch 1 (call 1 is the preview digits)
    with pytest.raises(NonFiniteLoss, match=r"epoch 1, step 3\b"):
        train(tiny_config(lr=1.0), splits, device="cpu", engine="graph")


def test_unknown_engine_is_refused(splits) -> None:
    with pytest.raises(ValueError, match="engine must be one of eager, graph, graph-compile, .*got 'turbo'"):
        train(tiny_config(), splits, device="cpu", engine="turbo")


@pytest.mark.usefixtures("every_step")
def test_graph_engine_warms_up_then_captures_once_and_replays(splits, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA sequence (warm-up steps on a side stream, one capture that runs nothing, replays, an
    eager partial batch), with the three CUDA calls stood in for: the same history as without it."""
    config = tiny_config(epochs=3, train_size=150)  # 4 whole batches of 32 and one of 22 per epoch
    plain = train(config, splits, device="cpu", engine="graph")
    calls = {"side": 0, "captures": 0, "replays": 0}

    class RecordedStep:  # a graph recorded with the gradients set to None writes them afresh on replay
        def __init__(self, steps, fn) -> None:
            self.steps, self.fn = steps, fn

        def replay(self) -> None:
            calls["replays"] += 1
            self.steps.optimizer.zero_grad(set_to_none=True)
            self.fn()

    def on_side_stream(_self, fn) -> None:
        calls["side"] += 1
        fn()

    def capture(self, fn) -> RecordedStep:
        calls["captures"] += 1
        return RecordedStep(self, fn)  # records; runs nothing now

    monkeypatch.setattr(engines.DeviceSteps, "_can_capture", staticmethod(lambda _dev: True))
    monkeypatch.setattr(engines.DeviceSteps, "_on_side_stream", on_side_stream)
    monkeypatch.setattr(engines.DeviceSteps, "_capture", capture)
    graphed = train(config, splits, device="cpu", engine="graph")
    warm = engines.DeviceSteps.WARMUP_STEPS
    assert calls == {"side": warm, "captures": 1, "replays": 3 * 4 - warm}
    assert graphed.history.step_losses == plain.history.step_losses
    assert _epoch_losses(graphed) == _epoch_losses(plain)


@pytest.mark.parametrize("threads", [1, 2])
def test_non_finite_validation_loss_says_what_to_do(splits, monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    """Training goes well but the validation loss is NaN (whole batches or split in halves on two threads)."""

    class NanWhenEvaluated(AutoEncoder):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = super().forward(x)
            return y if self.training else y * math.nan

    monkeypatch.setattr(engine, "AutoEncoder", NanWhenEvaluated)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    events: list[Progress] = []
    try:
        with pytest.raises(NonFiniteLoss) as info:
            train(tiny_config(epochs=2, lr=0.01), splits, events.append, device="cpu")
    finally:
        torch.set_num_threads(before)
    assert str(info.value) == (
        "The validation loss became nan at the end of epoch 1: the run diverged. Lower the learning rate "
        "(it was 0.01; try 0.001, the assignment uses 0.001) and train again."
    )
    kinds = [e.kind for e in events]
    assert "step" in kinds and "epoch" not in kinds and "done" not in kinds
    assert all(math.isfinite(e.train_loss) for e in events if e.kind == "step")  # training itself was fine


# ------------------------------------------------------------------------- engine names, kernels, settings


def test_engine_names_parse_once_into_switches() -> None:
    specs = {name: EngineSpec.parse(name) for name in ENGINES}
    switches = {name: (s.graph, s.compiled, s.channels_last) for name, s in specs.items()}
    assert switches == {
        "eager": (False, False, False),
        "graph": (True, False, False),
        "graph-compile": (True, True, False),
        "graph-channels-last": (True, False, True),
        "graph-compile-channels-last": (True, True, True),
    }
    assert all(s.name == name for name, s in specs.items())
    valid = "eager, graph, graph-compile, graph-channels-last, graph-compile-channels-last"
    with pytest.raises(ValueError, match=f"^engine must be one of {valid}, got 'graph-channels'\\.$"):
        EngineSpec.parse("graph-channels")


def _one_output(layer: nn.ConvTranspose2d):
    def forward(x: torch.Tensor, weight: torch.Tensor, *bias: torch.Tensor) -> torch.Tensor:
        b = bias[0] if bias else None
        return kernels._ConvTranspose2dOneOutput.apply(x, weight, b, layer.stride, layer.padding, layer.output_padding)

    return forward


@pytest.mark.parametrize("bias", [True, False])
def test_one_output_transposed_convolution_is_pytorchs_with_exact_gradients(bias: bool) -> None:
    """The CPU kernel swap for the decoder's last layer: forward equal to nn.ConvTranspose2d, backward
    checked against finite differences (gradcheck, float64) and against nn.ConvTranspose2d's own."""
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(3, 1, 5, stride=2, padding=2, output_padding=1, bias=bias).double()
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    inputs = (x, layer.weight, *([layer.bias] if bias else []))
    forward = _one_output(layer)

    assert torch.autograd.gradcheck(forward, inputs)
    mine, theirs = forward(*inputs), layer(x)
    assert mine.shape == theirs.shape == (2, 1, 14, 14)
    torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-12)
    upstream = torch.randn_like(theirs)
    for got, want in zip(
        torch.autograd.grad(mine, inputs, upstream), torch.autograd.grad(theirs, inputs, upstream), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_fast_cpu_kernels_change_only_the_last_layer_and_only_inside_the_block() -> None:
    torch.manual_seed(0)
    model = AutoEncoder(4, 4, 2)
    x = torch.rand(5, 1, 28, 28)
    plain = model(x)
    last = model.decoder.net[5]
    with kernels.fast_cpu_kernels(model):
        assert [m for m in model.modules() if "forward" in m.__dict__] == [last]  # the one-output layer only
        fast = model(x)
        fast.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    assert all("forward" not in m.__dict__ for m in model.modules())  # given back
    model.zero_grad()
    plain.sum().backward()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
    for got, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)


def test_cudnn_search_stays_on_until_the_last_overlapping_run_ends() -> None:
    """cuDNN's benchmark flag is process-wide: one graph run ending must not turn it off under another."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        first, second = engines._cudnn_benchmark(), engines._cudnn_benchmark()
        first.__enter__()
        second.__enter__()
        assert torch.backends.cudnn.benchmark
        first.__exit__(None, None, None)
        assert torch.backends.cudnn.benchmark  # the second run still has it
        second.__exit__(None, None, None)
        assert torch.backends.cudnn.benchmark is False  # the value found before the first run
    finally:
        torch.backends.cudnn.benchmark = before


@pytest.mark.parametrize("fused", [False, True])
def test_adam_without_dynamo_is_torchs_adam_bit_for_bit(fused: bool) -> None:
    from convae.optim import Adam

    torch.manual_seed(0)
    ours, theirs = AutoEncoder(4, 4, 2), AutoEncoder(4, 4, 2)
    theirs.load_state_dict(ours.state_dict())
    optimizers = (
        Adam(ours.parameters(), lr=1e-3, fused=fused),
        torch.optim.Adam(theirs.parameters(), lr=1e-3, fused=fused),
    )
    x = torch.rand(8, 1, 28, 28)
    for _ in range(5):
        for model, opt in zip((ours, theirs), optimizers, strict=True):
            opt.zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(x), x).backward()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), theirs.parameters(), strict=True))
    a, b = (opt.state_dict() for opt in optimizers)
    assert a["param_groups"] == b["param_groups"]
    assert all(torch.equal(a["state"][i][name], b["state"][i][name]) for i in a["state"] for name in a["state"][i])
    optimizers[0].load_state_dict(b)  # torch's state loads into ours
    with pytest.raises(ValueError, match="differentiable"):
        Adam(ours.parameters(), differentiable=True)


def test_training_does_not_import_torch_dynamo(data_root) -> None:
    """`torch._dynamo` costs about 2 s before the first step; nothing on the way to training needs it."""
    import subprocess
    import sys

    code = (
        "import sys; from convae.data import load_splits; from convae.train import train; "
        "from tests.conftest import tiny_config; "
        f"train(tiny_config(), load_splits({str(data_root)!r}), device='cpu'); "
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]
