"""The auto-encoder of Table 1 and Test 1 of the assignment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from convae.model import SIZE_RANGES, AutoEncoder, Decoder, Encoder, check_sizes, state_dict_shapes
from convae.train import TrainConfig

SIZES = [(32, 32, 10), (1, 3, 2), (64, 16, 32)]


@pytest.mark.parametrize(("Q1", "Q2", "K"), SIZES)
def test_test1_shapes_and_range(Q1: int, Q2: int, K: int) -> None:
    """Test 1: E(X) is (B, K); D(E(X)) is (B, 1, 28, 28) with every value in [0, 1]."""
    torch.manual_seed(0)
    B = 5
    x = torch.rand(B, 1, 28, 28)
    model = AutoEncoder(Q1, Q2, K)
    with torch.no_grad():
        z = model.encoder(x)
        y = model(x)
        y_separate = Decoder.forward(model.decoder, Encoder.forward(model.encoder, x))
    assert z.shape == (B, K)
    assert y.shape == (B, 1, 28, 28)
    assert y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(y, y_separate)  # Y = D(E(X))


@pytest.mark.parametrize(("Q1", "Q2", "K"), SIZES)
def test_standalone_encoder_and_decoder(Q1: int, Q2: int, K: int) -> None:
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        z = Encoder(Q1, Q2, K)(x)
        y = Decoder(Q1, Q2, K)(torch.randn(3, K) * 100)  # even extreme codes stay in [0, 1]
    assert z.shape == (3, K)
    assert y.shape == (3, 1, 28, 28)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_extreme_inputs_stay_in_range() -> None:
    model = AutoEncoder()
    with torch.no_grad():
        for x in (torch.zeros(2, 1, 28, 28), torch.ones(2, 1, 28, 28)):
            y = model(x)
            assert torch.isfinite(y).all()
            assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


@pytest.mark.parametrize("cls", [Encoder, Decoder, AutoEncoder])
def test_positional_sizes_and_defaults(cls: type) -> None:
    assert (cls().Q1, cls().Q2, cls().K) == (32, 32, 10)
    m = cls(5, 6, 7)  # positional, in the assignment's order Q1, Q2, K
    assert (m.Q1, m.Q2, m.K) == (5, 6, 7)
    m = cls(K=3)
    assert (m.Q1, m.Q2, m.K) == (32, 32, 3)


def test_autoencoder_holds_matching_encoder_and_decoder() -> None:
    model = AutoEncoder(5, 6, 7)
    assert isinstance(model.encoder, Encoder)
    assert isinstance(model.decoder, Decoder)
    assert model.sizes == (5, 6, 7)
    assert (model.encoder.Q1, model.encoder.Q2, model.encoder.K) == (5, 6, 7)
    assert (model.decoder.Q1, model.decoder.Q2, model.decoder.K) == (5, 6, 7)
    n_params = sum(p.numel() for p in model.parameters())
    n_parts = sum(p.numel() for p in model.encoder.parameters()) + sum(p.numel() for p in model.decoder.parameters())
    assert n_params == n_parts  # nothing besides the two halves


def _layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if not isinstance(m, (nn.Sequential, Encoder, Decoder))]


def test_encoder_layers_are_table_1a() -> None:
    Q1, Q2, K = 5, 6, 7
    layers = _layers(Encoder(Q1, Q2, K))
    assert [type(m) for m in layers] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Flatten, nn.Linear]
    c1, c2, lin = layers[0], layers[2], layers[5]
    assert (c1.in_channels, c1.out_channels) == (1, Q1)
    assert (c2.in_channels, c2.out_channels) == (Q1, Q2)
    for conv in (c1, c2):
        assert conv.kernel_size == (5, 5)
        assert conv.stride == (2, 2)
        assert conv.padding == (2, 2)
        assert conv.bias is not None
    assert (lin.in_features, lin.out_features) == (Q2 * 7 * 7, K)


def test_decoder_layers_are_table_1b() -> None:
    Q1, Q2, K = 5, 6, 7
    layers = _layers(Decoder(Q1, Q2, K))
    assert [type(m) for m in layers] == [
        nn.Linear,
        nn.ReLU,
        nn.Unflatten,
        nn.ConvTranspose2d,
        nn.ReLU,
        nn.ConvTranspose2d,
        nn.Sigmoid,
    ]
    lin, unflat, t1, t2 = layers[0], layers[2], layers[3], layers[5]
    assert (lin.in_features, lin.out_features) == (K, Q2 * 7 * 7)
    assert tuple(unflat.unflattened_size) == (Q2, 7, 7)
    assert (t1.in_channels, t1.out_channels) == (Q2, Q1)
    assert (t2.in_channels, t2.out_channels) == (Q1, 1)
    for conv in (t1, t2):
        assert conv.kernel_size == (5, 5)
        assert conv.stride == (2, 2)
        assert conv.padding == (2, 2)
        assert conv.output_padding == (1, 1)
    assert isinstance(layers[-1], nn.Sigmoid)  # the last operation


def test_intermediate_shapes() -> None:
    """28 -> 14 -> 7 in the encoder, 7 -> 14 -> 28 in the decoder."""
    Q1, Q2, K = 3, 4, 5
    enc, dec = Encoder(Q1, Q2, K), Decoder(Q1, Q2, K)
    shapes = []
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        for layer in enc.net:
            x = layer(x)
            shapes.append(tuple(x.shape))
        for layer in dec.net:
            x = layer(x)
            shapes.append(tuple(x.shape))
    assert shapes == [
        (2, Q1, 14, 14),
        (2, Q1, 14, 14),
        (2, Q2, 7, 7),
        (2, Q2, 7, 7),
        (2, Q2 * 49),
        (2, K),
        (2, Q2 * 49),
        (2, Q2 * 49),
        (2, Q2, 7, 7),
        (2, Q1, 14, 14),
        (2, Q1, 14, 14),
        (2, 1, 28, 28),
        (2, 1, 28, 28),
    ]


BAD_VALUES = [0, -1, -32, 2.0, 1.5, True, False, "8", None]


@pytest.mark.parametrize("cls", [Encoder, Decoder, AutoEncoder])
@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
def test_invalid_sizes_raise_value_error_naming_parameter_and_value(cls: type, position: int, bad: object) -> None:
    sizes: list[object] = [8, 8, 4]
    sizes[position] = bad
    name = ("Q1", "Q2", "K")[position]
    with pytest.raises(ValueError) as info:
        cls(*sizes)
    message = str(info.value)
    assert name in message
    assert repr(bad) in message or str(bad) in message


def test_invalid_size_by_keyword() -> None:
    with pytest.raises(ValueError, match=r"K .*-3"):
        AutoEncoder(K=-3)
    with pytest.raises(ValueError, match=r"Q2.*0"):
        Decoder(Q2=0)


def test_numpy_integers_are_accepted() -> None:
    import numpy as np

    model = AutoEncoder(np.int64(4), 4, 2)
    assert model.sizes == (4, 4, 2)
    assert all(isinstance(v, int) for v in model.sizes)


def test_start_at_mean_sets_the_untrained_output_to_the_mean_pixel() -> None:
    torch.manual_seed(0)
    model = AutoEncoder(8, 8, 4)
    x = torch.rand(16, 1, 28, 28)
    assert abs(model(x).mean().item() - 0.5) < 0.1  # PyTorch's default start: mid grey
    model.start_at_mean(0.13)
    assert abs(model(x).mean().item() - 0.13) < 0.05
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="mean_pixel"):
            model.start_at_mean(bad)


# ------------------------------------------------------------------ the allowed sizes, shared by every entry point


@pytest.mark.parametrize(("name", "sizes"), [("Q1", (129, 8, 4)), ("Q2", (8, 100_000, 4)), ("K", (8, 8, 65))])
def test_sizes_above_the_range_are_refused_naming_the_range(name: str, sizes: tuple[int, int, int]) -> None:
    lo, hi = SIZE_RANGES[name]
    with pytest.raises(ValueError, match=rf"^{name} must be from {lo} to {hi}, got {max(sizes)}\.$"):
        check_sizes(*sizes)
    with pytest.raises(ValueError, match=rf"^{name} must be from {lo} to {hi}"):
        TrainConfig(q1=sizes[0], q2=sizes[1], k=sizes[2])


def test_the_largest_allowed_sizes_are_accepted() -> None:
    top = tuple(SIZE_RANGES[n][1] for n in ("Q1", "Q2", "K"))
    assert check_sizes(*top) == top
    assert AutoEncoder(*top).sizes == top


@pytest.mark.parametrize("sizes", [(1, 1, 1), (4, 4, 2), (5, 7, 3), (128, 128, 64)])
def test_state_dict_shapes_match_the_model(sizes: tuple[int, int, int]) -> None:
    """The shapes a checkpoint is checked against, worked out without a model, are the model's own."""
    actual = {name: tuple(t.shape) for name, t in AutoEncoder(*sizes).state_dict().items()}
    assert state_dict_shapes(*sizes) == actual
    assert list(state_dict_shapes(*sizes)) == list(actual)  # same names in the same order
    with pytest.raises(ValueError, match="Q1 must be from 1 to 128, got 6000"):
        state_dict_shapes(6000, 6000, 10)


@pytest.mark.slow  # a subprocess: a few seconds to import torch
def test_command_line_refuses_a_huge_size_at_once_in_one_line(tmp_path: Path) -> None:
    """`python -m convae train --q1 100000`: exit code 2, one line naming Q1 and its range, nothing done."""
    env = {**os.environ, "CONVAE_DATA_DIR": str(tmp_path / "data"), "CONVAE_RUNS_DIR": str(tmp_path / "runs")}
    proc = subprocess.run(
        [sys.executable, "-m", "convae", "train", "--q1", "100000"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: Q1 must be from 1 to 128, got 100000."]
    assert proc.stdout == ""
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()  # no data fetched, nothing written
