"""The candidate kernels of a CPU convolution's three products (convae.kernels chooses among them).

Each convolution and transposed convolution does three products in a training step: the forward,
the gradient of its input and the gradient of its weight (and bias). The candidates (CANDIDATES)
compute the same sums in other orders, so they agree up to float rounding; their speed depends on the
shapes and on the CPU:

- "onednn": PyTorch's default on the CPU (aten.convolution and aten.convolution_backward).
- "channels-last": the same on NHWC copies of the tensors, oneDNN's native layout, results handed back
  in NCHW (in the channels-last layout this is "onednn").
- "im2col": the patches of the whole batch gathered in one copy (in NHWC order, so the copy moves
  whole channel vectors), then one matrix multiplication at sgemm speed; the gradients are two more
  multiplications, and a transposed convolution is the same with the roles swapped (col2im, a sum of
  kernel-sized shifted slices, where a convolution has im2col).
- "per-image": ATen's own kernels (slow_conv2d, slow_conv_transpose2d): im2col and one gemm per image.
  Its forward with oneDNN's gradients is the one-output path (`convae.kernels.fast_cpu_kernels`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

Pair = tuple[int, int]


@dataclass(frozen=True)
class Geometry:
    """What a kernel needs to know of a layer besides its tensors, and the layout the run keeps them in."""

    transposed: bool
    kernel: Pair
    stride: Pair
    padding: Pair
    output_padding: Pair
    channels_last: bool = False  # weights and activations in NHWC order (else NCHW)

    @classmethod
    def of(cls, layer: nn.Module, channels_last: bool = False) -> Geometry:
        return cls(
            type(layer) is nn.ConvTranspose2d,
            tuple(layer.kernel_size),
            tuple(layer.stride),
            tuple(layer.padding),
            tuple(layer.output_padding),
            channels_last,
        )

    def out_size(self, size: Pair) -> Pair:
        """The spatial size of the layer's output for an input of `size`."""
        k, s, p, op = self.kernel, self.stride, self.padding, self.output_padding
        if self.transposed:
            return tuple((size[i] - 1) * s[i] - 2 * p[i] + k[i] + op[i] for i in range(2))
        return tuple((size[i] + 2 * p[i] - k[i]) // s[i] + 1 for i in range(2))


def supported(layer: nn.Module) -> bool:
    """Whether the kernels here can run this layer: a plain 2-d (transposed) convolution on the CPU."""
    return (
        type(layer) in (nn.Conv2d, nn.ConvTranspose2d)
        and layer.groups == 1
        and tuple(layer.dilation) == (1, 1)
        and layer.padding_mode == "zeros"
        and not isinstance(layer.padding, str)
        and layer.weight.device.type == "cpu"
        and layer.weight.dtype in (torch.float32, torch.float64)
    )


# ----------------------------------------------------------------------------------------- candidates
# Each takes the layer's tensors, its Geometry and `memo`, a dict that lives from the forward to the end
# of the backward of one call (or None): a candidate may leave there what a later product can reuse.


class OneDNN:
    """PyTorch's own dispatch (oneDNN for float32 on the CPU), on NHWC tensors in the channels-last layout
    (oneDNN's native one; results then come in it too). Weight gradients come in the weight's layout."""

    @staticmethod
    def forward(x, w, b, geo: Geometry, _memo) -> torch.Tensor:
        if geo.channels_last:
            x, w = _nhwc(x), _nhwc(w)
        return torch.ops.aten.convolution(
            x, w, b, geo.stride, geo.padding, (1, 1), geo.transposed, geo.output_padding, 1
        )

    @staticmethod
    def input_grad(g, x, w, geo: Geometry, _memo) -> torch.Tensor:
        if geo.channels_last:
            g, x, w = _nhwc(g), _nhwc(x), _nhwc(w)
        return torch.ops.aten.convolution_backward(
            g, x, w, None, geo.stride, geo.padding, (1, 1), geo.transposed, geo.output_padding, 1, [True, False, False]
        )[0]

    @staticmethod
    def weight_grad(g, x, w, geo: Geometry, bias: bool, _memo) -> tuple[torch.Tensor, torch.Tensor | None]:
        w_layout = torch.channels_last if _is_nhwc(w) else torch.contiguous_format
        if geo.channels_last:
            g, x, w = _nhwc(g), _nhwc(x), _nhwc(w)
        sizes = [g.shape[1]] if bias else None
        _, gw, gb = torch.ops.aten.convolution_backward(
            g, x, w, sizes, geo.stride, geo.padding, (1, 1), geo.transposed, geo.output_padding, 1, [False, True, bias]
        )
        return gw.contiguous(memory_format=w_layout), gb


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _is_nhwc(t: torch.Tensor) -> bool:
    return not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


class ChannelsLast:
    """oneDNN on NHWC tensors, results handed back in the NCHW layout (for a run that keeps that one)."""

    @staticmethod
    def forward(x, w, b, geo: Geometry, memo) -> torch.Tensor:
        return OneDNN.forward(x, w, b, dataclasses.replace(geo, channels_last=True), memo).contiguous()

    @staticmethod
    def input_grad(g, x, w, geo: Geometry, memo) -> torch.Tensor:
        return OneDNN.input_grad(g, x, w, dataclasses.replace(geo, channels_last=True), memo).contiguous()

    @staticmethod
    def weight_grad(g, x, w, geo: Geometry, bias: bool, memo) -> tuple[torch.Tensor, torch.Tensor | None]:
        return OneDNN.weight_grad(g, x, w, dataclasses.replace(geo, channels_last=True), bias, memo)


class PerImage:
    """ATen's slow_conv2d / slow_conv_transpose2d: im2col and a gemm for each image of the batch.

    A transposed convolution's input gradient is the convolution of the output gradient with the same
    weight, and its weight gradient the convolution's weight gradient with input and output swapped.
    """

    @staticmethod
    def forward(x, w, b, geo: Geometry, _memo) -> torch.Tensor:
        if geo.transposed:
            return torch.ops.aten.slow_conv_transpose2d(
                x, w, geo.kernel, b, geo.stride, geo.padding, geo.output_padding, (1, 1)
            )
        return torch.ops.aten._slow_conv2d_forward(x.contiguous(), w, geo.kernel, b, geo.stride, geo.padding)

    @staticmethod
    def input_grad(g, x, w, geo: Geometry, _memo) -> torch.Tensor:
        if geo.transposed:
            return torch.ops.aten._slow_conv2d_forward(g.contiguous(), w, geo.kernel, None, geo.stride, geo.padding)
        return torch.ops.aten._slow_conv2d_backward(
            g.contiguous(), x.contiguous(), w, geo.kernel, geo.stride, geo.padding, [True, False, False]
        )[0]

    @staticmethod
    def weight_grad(g, x, w, geo: Geometry, bias: bool, _memo) -> tuple[torch.Tensor, torch.Tensor | None]:
        if geo.transposed:
            _, gw, _ = torch.ops.aten._slow_conv2d_backward(
                x.contiguous(), g.contiguous(), w, geo.kernel, geo.stride, geo.padding, [False, True, False]
            )
            return gw, g.sum((0, 2, 3)) if bias else None
        _, gw, gb = torch.ops.aten._slow_conv2d_backward(
            g.contiguous(), x.contiguous(), w, geo.kernel, geo.stride, geo.padding, [False, True, bias]
        )
        return gw, gb


def _padded_size(n: int, out: int, k: int, s: int, p: int) -> int:
    """Rows (or columns) of the zero-padded image: the input at offset p and every kernel window."""
    return max(n + p, (out - 1) * s + k)


def im2col(x: torch.Tensor, geo: Geometry, out: Pair) -> torch.Tensor:
    """The patches of x (B, C, H, W) under every output position, as rows: (B * oh * ow, kh * kw * C).

    Columns run over (kh, kw, C), so the one copy that gathers them moves whole channel vectors."""
    B, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = geo.kernel, geo.stride, geo.padding
    buf = x.new_zeros(B, _padded_size(H, out[0], kh, sh, ph), _padded_size(W, out[1], kw, sw, pw), C)
    buf[:, ph : ph + H, pw : pw + W] = x.permute(0, 2, 3, 1)
    sb, sy, sx, sc = buf.stride()
    patches = buf.as_strided((B, out[0], out[1], kh, kw, C), (sb, sh * sy, sw * sx, sy, sx, sc))
    return patches.reshape(B * out[0] * out[1], kh * kw * C)


def col2im(cols: torch.Tensor, shape: tuple[int, int, int, int], geo: Geometry, out: Pair) -> torch.Tensor:
    """The adjoint of im2col: each row's patch added back where it came from; (B, C, H, W) in the run's
    layout."""
    B, C, H, W = shape
    (kh, kw), (sh, sw), (ph, pw) = geo.kernel, geo.stride, geo.padding
    buf = cols.new_zeros(B, _padded_size(H, out[0], kh, sh, ph), _padded_size(W, out[1], kw, sw, pw), C)
    patches = cols.view(B, out[0], out[1], kh, kw, C)
    for i in range(kh):
        for j in range(kw):
            buf[:, i : i + sh * (out[0] - 1) + 1 : sh, j : j + sw * (out[1] - 1) + 1 : sw].add_(patches[:, :, :, i, j])
    y = buf[:, ph : ph + H, pw : pw + W].permute(0, 3, 1, 2)
    return y.contiguous(memory_format=torch.channels_last if geo.channels_last else torch.contiguous_format)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B * H * W, C): one row per pixel."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _from_rows(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(B * H * W, C) -> (B, C, H, W) in the channels-last layout, without a copy."""
    B, C, H, W = shape
    return t.view(B, H, W, C).permute(0, 3, 1, 2)


def _by_channel(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (C, B * H * W): one row per channel."""
    return t.transpose(0, 1).reshape(t.shape[1], -1)


def _from_channels(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(C, B * H * W) -> (B, C, H, W), contiguous."""
    B, C, H, W = shape
    return t.view(C, B, H, W).transpose(0, 1).contiguous()


class Im2col:
    """One im2col (or col2im) over the whole batch and one matrix multiplication per product.

    For a convolution with weight (O, C, kh, kw) seen as a matrix Wm (O, kh * kw * C) and the patch
    rows P = im2col(x): forward Y = P @ Wm^T, weight gradient G^T @ P and input gradient
    col2im(G @ Wm), where G (B * oh * ow, O) holds the output gradient by pixel. A transposed
    convolution (weight (Cin, Cout, kh, kw)) is the adjoint: Y = col2im(X @ Wm), input gradient
    im2col(G) @ Wm^T and weight gradient X^T @ im2col(G). Results come in the run's layout (in NCHW,
    the products are taken by channel instead of by pixel, which gives it without a copy). The patches
    of the forward (or of the output gradient) are kept in `memo` for the other product that needs them.
    """

    @staticmethod
    def _weight(w: torch.Tensor) -> torch.Tensor:
        return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)  # (O or Cin, kh * kw * C)

    @staticmethod
    def _patches(t: torch.Tensor, geo: Geometry, out: Pair, memo, key: str) -> torch.Tensor:
        if memo is not None and key in memo:
            return memo[key]
        cols = im2col(t, geo, out)
        if memo is not None:
            memo[key] = cols
        return cols

    @staticmethod
    def _dense(cols: torch.Tensor, wm: torch.Tensor, b, shape: tuple[int, ...], nhwc: bool) -> torch.Tensor:
        """cols (B * H * W, K) times wm (C, K)^T, plus b: (B, C, H, W) in the layout asked for."""
        if nhwc:
            y = cols @ wm.t() if b is None else torch.addmm(b, cols, wm.t())
            return _from_rows(y, shape)
        y = wm @ cols.t() if b is None else torch.addmm(b.unsqueeze(1), wm, cols.t())
        return _from_channels(y, shape)

    @staticmethod
    def forward(x, w, b, geo: Geometry, memo) -> torch.Tensor:
        wm = Im2col._weight(w)
        B, _, H, W = x.shape
        if geo.transposed:
            oh, ow = geo.out_size((H, W))
            y = col2im(_rows(x) @ wm, (B, w.shape[1], oh, ow), geo, (H, W))
            return y if b is None else y.add_(b.view(1, -1, 1, 1))
        out = geo.out_size((H, W))
        cols = Im2col._patches(x, geo, out, memo, "x")
        return Im2col._dense(cols, wm, b, (B, w.shape[0], *out), geo.channels_last)

    @staticmethod
    def input_grad(g, x, w, geo: Geometry, memo) -> torch.Tensor:
        wm = Im2col._weight(w)
        if geo.transposed:
            cols = Im2col._patches(g, geo, x.shape[2:], memo, "g")
            return Im2col._dense(cols, wm, None, x.shape, geo.channels_last)
        return col2im(_rows(g) @ wm, x.shape, geo, g.shape[2:])

    @staticmethod
    def weight_grad(g, x, w, geo: Geometry, bias: bool, memo) -> tuple[torch.Tensor, torch.Tensor | None]:
        if geo.transposed:
            cols = Im2col._patches(g, geo, x.shape[2:], memo, "g")
            gm = _by_channel(x) @ cols  # (Cin, kh * kw * Cout)
        else:
            cols = Im2col._patches(x, geo, g.shape[2:], memo, "x")
            gm = _by_channel(g) @ cols  # (O, kh * kw * C)
        kh, kw = geo.kernel
        gw = gm.view(w.shape[0], kh, kw, w.shape[1]).permute(0, 3, 1, 2)  # in the channels-last layout
        return gw if _is_nhwc(w) else gw.contiguous(), g.sum((0, 2, 3)) if bias else None


CANDIDATES: dict[str, type] = {"onednn": OneDNN, "channels-last": ChannelsLast, "im2col": Im2col, "per-image": PerImage}
