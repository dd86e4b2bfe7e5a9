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
rounded back to the grid. The Row LSTM has an O(1)-per-pixel stepper, bit-identical to its
full pass; the others decode with the codec's naive full pass.
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
        (wq, cq, s), (vq, bq, t) = quantized_cached(self, (self.W, self.c, self.V, self.b), lambda: (
            exact.quantize_conv(self.W, self.c), exact.quantize_conv(self.V.view(D * K, H), self.b.reshape(D * K))))
        terms = v.unsqueeze(1) * wq.unsqueeze(0)  # multiples of 2**-ACT_FRAC
        a = cq.view(1, -1, 1) + terms.cumsum(dim=2) - terms
        h = sigmoid_exact(_rescale(a, s))
        out = torch.einsum("bhd,dkh->bkd", h, vq.view(D, K, H)) + bq.view(D, K).t().unsqueeze(0)
        return _rescale(out, t)


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

    @torch.no_grad()
    def begin_row(self, x: torch.Tensor, r: int) -> None:
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

    @torch.no_grad()
    def step(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        m = self.m
        left = m.from_left.last_column(m.embed(x[:, :, r: r + 1, : c + 1]))
        gates = m.clamped_sum(m.clamped_sum(left, self.above[..., c: c + 1]), self.state[..., c: c + 1])
        h, cell = m.cell(gates, self.cell[..., c: c + 1])
        self.h[..., c: c + 1], self.cell[..., c: c + 1] = h, cell
        return m.logits(h)[:, :, 0, 0].unsqueeze(2)  # (B, K, 1)


__all__ = ["FVSBN", "NADE", "ImageMADE", "RowLSTM", "sigmoid_exact"]
