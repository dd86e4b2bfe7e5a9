"""The course's classic autoregressive models of binary images (CS294-158, lecture 2), as
arcodec models: ``forward(x)`` maps integer images (B, 1, H, W) to logits (B, K, 1, H, W).

* ``fvsbn`` — fully visible sigmoid belief network (Frey, 1998): one logistic (softmax,
  for K > 2) regression per pixel on every previous pixel, p(x_d | x_<d) = softmax(W_d x_<d + b_d).
* ``nade`` — NADE (Larochelle and Murray, 2011): one hidden layer whose weights are shared
  by all the conditionals, h_d = sigmoid(c + W_<d x_<d), p(x_d | x_<d) = softmax(V_d h_d + b_d).
  a_d = c + W_<d x_<d is a running sum, so the full pass is one cumulative sum.
* ``made`` — a :class:`~arcodec.models.made.MADE` over the pixels in raster order.
* ``row-lstm`` — a Row LSTM in the spirit of van den Oord et al. (2016, "Pixel Recurrent
  Neural Networks"): an LSTM that steps down the rows; the state of row i comes from the
  state of row i-1 (a width-3 convolution, all columns at once) and from the input, through
  a convolution over the pixels to the left of each pixel in row i and one over the rows
  just above. A pixel sees a cone of the rows above and the pixels just to its left.

FVSBN, NADE and MADE are defined over a raster sequence of at most ``pixels`` values:
an (h, w) image (or tile, or the top rows of one) is read as the first h * w of them, so
the top rows of an image get the same logits as in the whole image, which is what the
encoder's bands and the naive decoder need. The Row LSTM works on any height and width.

Exact mode (the codec's, :mod:`arcodec.exact`): every weighted sum is a sum of
products of grid activations and integer weights (exact in float64 in any order); the
sigmoid and tanh come from the integer-built tables; products of two grid values are
rounded back to the grid.

Decoding: every model has a stepper (``incremental``), bit-identical to its full pass in
exact mode, that keeps running sums instead of rerunning the model at every pixel. Per
pixel it costs O(K d) for FVSBN at pixel d (a dot product with the d pixels before it; the
model reads each of its K D^2 / 2 weights once per image, so no decoder does better), O(K
hidden) for NADE, O(K hidden) plus, amortized, O(layers hidden^2 / D) for MADE (a hidden
unit is computed once, at the first pixel whose output may read it), and O(1) for the Row
LSTM. The codec's naive full pass costs a whole forward pass per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from arcodec import exact
from arcodec.models.layers import CausalConv2d, quantized_cached
from arcodec.models.made import MADE, MaskedLinear
from arcodec.models.pixelcnn import LevelModel
from arcodec.registry import register_model


def _check(channels: int, levels: int, pixels: int = 1) -> None:
    if channels != 1:
        raise ValueError("the classic models code one channel (channels=1)")
    if levels < 2 or pixels < 1:
        raise ValueError("levels >= 2 and pixels >= 1 are required")


def sigmoid_exact(x: torch.Tensor) -> torch.Tensor:
    """sigmoid of grid values through the integer-built table, rounded onto the grid."""
    n = exact.TABLE_RANGE * 2**exact.ACT_FRAC
    idx = (torch.round(x * 2.0**exact.ACT_FRAC).clamp_(-n, n) + n).long()
    return exact.to_grid(torch.take(exact.gate_tables()[1], idx))


@dataclass(frozen=True)
class FVSBNConfig:
    channels: int = 1
    levels: int = 2
    pixels: int = 784  # the longest raster sequence (28 x 28)

    def __post_init__(self):
        _check(self.channels, self.levels, self.pixels)


@dataclass(frozen=True)
class NADEConfig:
    channels: int = 1
    levels: int = 2
    pixels: int = 784
    hidden: int = 500  # the shared hidden layer (500 in Larochelle and Murray)

    def __post_init__(self):
        _check(self.channels, self.levels, self.pixels)
        if self.hidden < 1:
            raise ValueError("hidden >= 1 is required")


@dataclass(frozen=True)
class ImageMADEConfig:
    channels: int = 1
    levels: int = 2
    pixels: int = 784
    hidden: int = 500  # width of each hidden layer
    layers: int = 1  # hidden layers

    def __post_init__(self):
        _check(self.channels, self.levels, self.pixels)
        if self.hidden < 1 or self.layers < 1:
            raise ValueError("hidden >= 1 and layers >= 1 are required")


class _Sequence(LevelModel):
    """A model of the raster sequence of at most ``config.pixels`` values (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, D, K = h * w, self.config.pixels, self.config.levels
        if c != 1 or n > D:
            raise ValueError(f"{self.arch} codes (B, 1, H, W) images of at most {D} pixels, got {tuple(x.shape)}")
        s = x.reshape(b, n)
        if n < D:  # the later values are never read by the first n outputs (causality)
            s = torch.cat([s, s.new_zeros(b, D - n)], dim=1)
        return self.sequence(s)[:, :, :n].reshape(b, K, 1, h, w)

    def sequence(self, s: torch.Tensor) -> torch.Tensor:
        """(B, D) values -> logits (B, K, D)."""
        raise NotImplementedError


@register_model("fvsbn", FVSBNConfig)
class FVSBN(_Sequence):
    """A logistic (softmax) regression per pixel on the values of all previous pixels."""

    def __init__(self, config: FVSBNConfig):
        super().__init__()
        self.config = c = config
        D, K = c.pixels, c.levels
        out_pixel = torch.arange(D).repeat_interleave(K)  # output unit (d, k) at d * K + k
        self.linear = MaskedLinear(D, D * K, (out_pixel[:, None] > torch.arange(D)[None, :]).float())

    def sequence(self, s: torch.Tensor) -> torch.Tensor:
        D, K = self.config.pixels, self.config.levels
        v = self.embed(s)  # values in [-1, 1]
        return self.linear(v).view(len(s), D, K).transpose(1, 2)

    def incremental(self, batch: int, height: int, width: int) -> "FVSBNStepper":
        return FVSBNStepper(self, batch, height, width)


@register_model("nade", NADEConfig)
class NADE(_Sequence):
    """h_d = sigmoid(c + sum_{j<d} W_j v_j), logits_d = V_d h_d + b_d (module docstring)."""

    def __init__(self, config: NADEConfig):
        super().__init__()
        self.config = c = config
        D, K, H = c.pixels, c.levels, c.hidden
        self.W = nn.Parameter(torch.randn(H, D) * (1.0 / D**0.5))
        self.c = nn.Parameter(torch.zeros(H))
        self.V = nn.Parameter(torch.randn(D, K, H) * (1.0 / H**0.5))
        self.b = nn.Parameter(torch.zeros(D, K))

    def sequence(self, s: torch.Tensor) -> torch.Tensor:
        v = self.embed(s)  # (B, D)
        if self.exact:  # 64 images at a time: the (B, hidden, D) float64 sums are large
            return torch.cat([self._exact(v[i: i + 64]) for i in range(0, len(v), 64)])
        terms = v.unsqueeze(1) * self.W.unsqueeze(0)  # (B, H, D)
        a = self.c.view(1, -1, 1) + terms.cumsum(dim=2) - terms  # sum over j < d
        h = torch.sigmoid(a)
        return torch.einsum("bhd,dkh->bkd", h, self.V) + self.b.t().unsqueeze(0)

    def _exact(self, v: torch.Tensor) -> torch.Tensor:
        """The same sums on the grid: integer weights times grid values are exact in float64,
        and so are their running sums (at most D * 2**(ACT_FRAC + 10 + WEIGHT_BITS) < 2**53)."""
        D, K, H = self.config.pixels, self.config.levels, self.config.hidden
        (wq, cq, s), (vq, bq, t) = self._quantized()
        terms = v.unsqueeze(1) * wq.unsqueeze(0)  # multiples of 2**-ACT_FRAC
        a = cq.view(1, -1, 1) + terms.cumsum(dim=2) - terms
        h = sigmoid_exact(_rescale(a, s))
        out = torch.einsum("bhd,dkh->bkd", h, vq.view(D, K, H)) + bq.view(D, K).t().unsqueeze(0)
        return _rescale(out, t)

    def _quantized(self):
        """((W, c, shift), (V as (D K, hidden), b as (D K), shift)) quantized for exact mode, cached."""
        D, K, H = self.config.pixels, self.config.levels, self.config.hidden
        return quantized_cached(self, (self.W, self.c, self.V, self.b), lambda: (
            exact.quantize_conv(self.W, self.c), exact.quantize_conv(self.V.view(D * K, H), self.b.reshape(D * K))))

    def incremental(self, batch: int, height: int, width: int) -> "NADEStepper":
        return NADEStepper(self, batch, height, width)


def _rescale(acc: torch.Tensor, s: int) -> torch.Tensor:
    """A sum of grid values times integer weights w * 2**s back onto the activation grid."""
    return acc.mul(2.0 ** (exact.ACT_FRAC - s)).round_().mul_(2.0**-exact.ACT_FRAC).clamp_(
        -exact.ACT_LIMIT, exact.ACT_LIMIT)


@register_model("made", ImageMADEConfig)
class ImageMADE(_Sequence):
    """A MADE over the pixels in raster order (one-hot inputs, K logits per pixel)."""

    def __init__(self, config: ImageMADEConfig):
        super().__init__()
        self.config = c = config
        self.made = MADE(c.pixels, c.levels, (c.hidden,) * c.layers)

    def sequence(self, s: torch.Tensor) -> torch.Tensor:
        return self.made(s)

    def incremental(self, batch: int, height: int, width: int) -> "ImageMADEStepper":
        return ImageMADEStepper(self, batch, height, width)


# ------------------------------------------------------------------- sequence steppers

def _linear_weights(layer: MaskedLinear, exact_mode: bool):
    """(weights (out, in), bias, shift) as ``layer``'s forward uses them: its cached integer
    weights and their shift in exact mode, else the masked float weights (shift None)."""
    if exact_mode:
        wq, bq, s = layer._quantized()
        return wq.view(wq.shape[0], -1), bq, s
    return (layer.linear.weight * layer.mask).detach(), layer.linear.bias.detach(), None


def _finish(acc: torch.Tensor, s: int | None) -> torch.Tensor:
    """A weighted sum back onto the grid in exact mode (shift s); as it is in float mode."""
    return acc if s is None else _rescale(acc, s)


class _SequenceStepper:
    """Decoder steps of a raster-sequence model on an (h, w) tile, pixel (r, c) being value
    d = r * w + c of the sequence: ``step`` folds the pixels before d that the state has not
    seen into it, one at a time (``fold``), then gives pixel d's logits (``logits``). A step
    for another batch or tile shape, or for a pixel before the last one folded, starts afresh
    (``start``: the weights, the buffers).

    Exact mode: every sum has the full pass's terms (its weights, permuted at most), bar
    terms that a mask makes zero, so it has the same value, whatever the order of the terms."""

    def __init__(self, model: _Sequence, batch: int, height: int, width: int):
        self.m = model
        self.shape: tuple[int, int, int] | None = None  # (batch, h, w) of the state
        self.seen = 0  # pixels folded into the state

    def begin_row(self, x: torch.Tensor, r: int) -> None:
        pass

    @torch.no_grad()
    def step(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        b, _, h, w = x.shape
        d = r * w + c
        if (b, h, w) != self.shape or d < self.seen:
            D = self.m.config.pixels
            if h * w > D:
                raise ValueError(f"{self.m.arch} codes images of at most {D} pixels, got {h} x {w}")
            self.start(b, h * w)
            self.shape, self.seen = (b, h, w), 0
        for j in range(self.seen, d):
            self.fold(x[:, 0, j // w, j % w], j)
        self.seen = d
        return self.logits(d).unsqueeze(2)  # (B, K, 1)

    def start(self, b: int, n: int) -> None:
        """An empty state for b tiles of n pixels."""
        raise NotImplementedError

    def fold(self, v: torch.Tensor, j: int) -> None:
        """Pixel j's values (B,) into the state."""
        raise NotImplementedError

    def logits(self, d: int) -> torch.Tensor:
        """(B, K) logits of pixel d, the pixels before it folded in."""
        raise NotImplementedError


class FVSBNStepper(_SequenceStepper):
    """Pixel d's K rows of the masked weights times the d embedded values before it (kept in
    a buffer), plus the bias: O(K d) a pixel."""

    def start(self, b: int, n: int) -> None:
        self.w, self.bias, self.s = _linear_weights(self.m.linear, self.m.exact)
        self.levels = self.m.embed(torch.arange(self.m.config.levels))  # the embedding of each level
        self.v = self.w.new_zeros(b, n)

    def fold(self, v: torch.Tensor, j: int) -> None:
        self.v[:, j] = self.levels[v]

    def logits(self, d: int) -> torch.Tensor:
        K = self.m.config.levels
        rows = slice(d * K, (d + 1) * K)
        return _finish(torch.addmm(self.bias[rows], self.v[:, :d], self.w[rows, :d].t()), self.s)


class NADEStepper(_SequenceStepper):
    """The hidden pre-activation a = c + sum_{j<d} W_j v_j as a running sum (one column of W a
    pixel), then the sigmoid and pixel d's K output rows: O(K hidden) a pixel."""

    def start(self, b: int, n: int) -> None:
        m = self.m
        D, K, H = m.config.pixels, m.config.levels, m.config.hidden
        if m.exact:
            (w, c, self.s), (v, bias, self.t) = m._quantized()
        else:
            w, c, v, bias = m.W, m.c, m.V.view(D * K, H), m.b.reshape(D * K)
            self.s = self.t = None
        self.columns = w.detach().t().contiguous()  # (D, hidden): pixel j's weights in row j
        self.V, self.b = v.detach().view(D, K, H), bias.detach().view(D, K)
        self.levels = m.embed(torch.arange(K)).unsqueeze(1)  # the embedding of each level, (K, 1)
        self.a = c.detach().expand(b, H).clone()

    def fold(self, v: torch.Tensor, j: int) -> None:
        self.a.addcmul_(self.levels[v], self.columns[j])

    def logits(self, d: int) -> torch.Tensor:
        h = sigmoid_exact(_rescale(self.a, self.s)) if self.m.exact else torch.sigmoid(self.a)
        return _finish(torch.addmm(self.b[d], h, self.V[d].t()), self.t)


class ImageMADEStepper(_SequenceStepper):
    """MADE's first hidden layer as a running sum (pixel j adds the weight column of its value);
    every hidden unit is computed once, at the first pixel whose output may read it; pixel d's
    logits read the units computed so far. O(K hidden) a pixel, plus the deeper layers' units,
    O(layers hidden^2) an image.

    A unit's *need* is the number of leading pixels it depends on, from the masks: the largest
    need among its inputs, pixel j's one-hot inputs needing j + 1. Each layer's units are kept
    sorted by need (its weights' rows, and the next layer's columns, permuted alike), so the
    units ready at pixel d (need <= d) are a prefix."""

    def __init__(self, model: ImageMADE, batch: int, height: int, width: int):
        super().__init__(model, batch, height, width)
        made = model.made
        D, K = made.dims, made.levels
        need = torch.arange(1, D + 1).repeat_interleave(K)  # input unit (j, k) at j * K + k
        self.order: list[torch.Tensor] = []  # per layer: its units sorted by need
        self.ready: list[list[int]] = []  # per layer: units with need <= d, for d = 0..D
        for layer in made.layers:
            need = (layer.mask.bool() * need).amax(dim=1)
            order = torch.argsort(need, stable=True)
            self.order.append(order)
            self.ready.append(torch.searchsorted(need[order], torch.arange(D + 1), right=True).tolist())
        out_need = (made.out.mask.bool() * need).amax(dim=1)
        if bool((out_need > torch.arange(D).repeat_interleave(K)).any()):
            raise ValueError("this MADE is not autoregressive in raster order")

    def start(self, b: int, n: int) -> None:
        made = self.m.made
        D, K = made.dims, made.levels
        self.w, self.bias, self.s = [], [], []  # hidden layers, units sorted by need
        prev = None
        for layer, order in zip(made.layers, self.order):
            w, bias, s = _linear_weights(layer, self.m.exact)
            w = w[order] if prev is None else w[order][:, prev]
            self.w.append(w)
            self.bias.append(bias[order])
            self.s.append(s)
            prev = order
        self.columns = self.w[0].t().reshape(D, K, -1).contiguous()  # pixel j, value k: column j * K + k
        w, self.out_b, self.out_s = _linear_weights(made.out, self.m.exact)
        self.out_w = w[:, prev]
        self.acc = self.bias[0].expand(b, -1).clone()  # the first layer's sums
        self.h = [self.acc.new_zeros(b, len(order)) for order in self.order]
        self.done = [0] * len(self.w)  # units computed, per layer

    def fold(self, v: torch.Tensor, j: int) -> None:
        self.acc.add_(self.columns[j].index_select(0, v))

    def logits(self, d: int) -> torch.Tensor:
        for i, (ready, h) in enumerate(zip(self.ready, self.h)):
            a, b = self.done[i], ready[d]
            if b > a:
                if i == 0:
                    pre = self.acc[:, a:b]
                else:
                    k = self.ready[i - 1][d]
                    pre = torch.addmm(self.bias[i][a:b], self.h[i - 1][:, :k], self.w[i][a:b, :k].t())
                h[:, a:b] = torch.relu(_finish(pre, self.s[i]))
                self.done[i] = b
        K, k = self.m.config.levels, self.ready[-1][d]
        rows = slice(d * K, (d + 1) * K)
        return _finish(torch.addmm(self.out_b[rows], self.h[-1][:, :k], self.out_w[rows, :k].t()), self.out_s)


# ----------------------------------------------------------------------------- Row LSTM

@dataclass(frozen=True)
class RowLSTMConfig:
    channels: int = 1
    levels: int = 2
    hidden: int = 64  # LSTM state per pixel
    kernel: int = 3  # state-to-state convolution: columns j-1..j+1 of the row above
    left: int = 4  # the input convolution sees the pixels j-left..j-1 of the row
    above: int = 2  # and the rows i-above..i-1,
    above_width: int = 5  # columns j-2..j+2 (odd)
    head: int = 64  # width of the 1x1 output layer

    def __post_init__(self):
        _check(self.channels, self.levels)
        if self.hidden < 1 or self.head < 1 or self.left < 1 or self.above < 1:
            raise ValueError("hidden, head, left and above must be >= 1")
        if self.kernel % 2 == 0 or self.above_width % 2 == 0:
            raise ValueError("kernel and above_width must be odd")


@register_model("row-lstm", RowLSTMConfig)
class RowLSTM(LevelModel):
    """An LSTM down the rows, all columns of a row at once (module docstring)."""

    def __init__(self, config: RowLSTMConfig):
        super().__init__()
        self.config = c = config
        g = 4 * c.hidden  # input, forget, output gates and the candidate
        self.from_left = CausalConv2d(1, g, (1, c.left), "right", shift=True)
        self.from_above = CausalConv2d(1, g, (c.above, c.above_width), "down", shift=True, bias=False)
        self.from_state = CausalConv2d(c.hidden, g, (1, c.kernel), "down", bias=False)
        self.head1 = CausalConv2d(c.hidden, c.head, (1, 1), "point")
        self.head2 = CausalConv2d(c.head, c.levels, (1, 1), "point")

    def inputs(self, v: torch.Tensor) -> torch.Tensor:
        """The input's share of the gates of every pixel: (B, 4 hidden, H, W)."""
        return self.clamped_sum(self.from_left(v), self.from_above(v))

    def cell(self, gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTM update (h, c) from the gates' pre-activations and the previous cell state."""
        i, f, o, u = gates.chunk(4, dim=1)
        if self.exact:
            cell = exact.to_grid(sigmoid_exact(f) * cell + exact.gate(u, i))
            return exact.gate(cell, o), cell
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(u)
        return torch.sigmoid(o) * torch.tanh(cell), cell

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head2(torch.relu(self.head1(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, H, W = x.shape
        g_in = self.inputs(self.embed(x))
        dtype = torch.float64 if self.exact else g_in.dtype
        h = g_in.new_zeros(b, self.config.hidden, 1, W, dtype=dtype)
        cell = torch.zeros_like(h)
        rows = []
        for g_row in g_in.split(1, dim=2):  # one split, not H slices (each slice's backward fills a whole tensor)
            h, cell = self.cell(self.clamped_sum(g_row, self.from_state(h)), cell)
            rows.append(h)
        out = self.logits(torch.cat(rows, dim=2))  # (B, K, H, W)
        return out.unsqueeze(2)

    def incremental(self, batch: int, height: int, width: int) -> "RowLSTMStepper":
        return RowLSTMStepper(self)


class RowLSTMStepper:
    """Decoder steps: at the start of row r, the state's and the rows above's share of the
    gates for the whole row; at pixel (r, c) the pixels to its left, one LSTM update at
    column c, the head. In exact mode every value equals the full pass's (the convolutions
    are exact on crops, the sums are added in the same order)."""

    def __init__(self, model: RowLSTM):
        self.m = model
        self.h = self.cell = None  # (B, hidden, 1, W): row r-1's state, overwritten column by column
        self.above = self.state = None  # (B, 4 hidden, 1, W): row r's gates from the rows above, the state
        self.at = None  # (row, column) of the last pixel whose state is computed

    @torch.no_grad()
    def begin_row(self, x: torch.Tensor, r: int) -> None:
        """Start row r; the state of any pixel above that no step computed (a sampler that
        is given the first rows starts only their rows) is computed first, from x."""
        W = x.shape[3]
        if r > 0:
            if self.h is None:
                self._start(x, 0)
            while self.at != (r - 1, W - 1):
                row, col = self.at
                if col == W - 1:
                    self._start(x, row + 1)
                    row, col = row + 1, -1
                self.step(x, row, col + 1)
        self._start(x, r)

    def _start(self, x: torch.Tensor, r: int) -> None:
        m = self.m
        b, _, _, W = x.shape
        if r == 0 or self.h is None:
            dtype = torch.float64 if m.exact else torch.float32
            self.h = torch.zeros(b, m.config.hidden, 1, W, dtype=dtype)
            self.cell = torch.zeros_like(self.h)
        lo = max(0, r - m.config.above)
        self.above = m.from_above(m.embed(x[:, :, lo: r + 1]))[:, :, -1:]
        self.state = m.from_state(self.h)
        self.h, self.cell = self.h.clone(), self.cell.clone()  # row r's values replace row r-1's
        self.at = (r, -1)

    @torch.no_grad()
    def step(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        m = self.m
        left = m.from_left.last_column(m.embed(x[:, :, r: r + 1, : c + 1]))
        gates = m.clamped_sum(m.clamped_sum(left, self.above[..., c: c + 1]), self.state[..., c: c + 1])
        h, cell = m.cell(gates, self.cell[..., c: c + 1])
        self.h[..., c: c + 1], self.cell[..., c: c + 1] = h, cell
        self.at = (r, c)
        return m.logits(h)[:, :, 0, 0].unsqueeze(2)  # (B, K, 1)


__all__ = ["FVSBN", "NADE", "ImageMADE", "RowLSTM", "sigmoid_exact"]
