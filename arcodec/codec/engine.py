"""The integer engine of the local photo models: exact by construction.

Built from a trained :class:`arcodec.models.local.LocalPhotoModel` (the model itself stays
plain float PyTorch), in the manner of integer-only inference (Jacob et al. 2018):

* weights are int16, one scale per output channel (``round(w / s_c)``, s_c = max|w_c| /
  32767): int8 weights cost the shipped photo model 1.5 % of its NLL, int16 with 12-bit
  activations 0.01 % (``benchmarks/engine_precision.py`` measures the whole engine);
* activations are unsigned integers 0..ACT_MAX (12 bits) on two scales: the residual stream
  t (after the first convolution and after every block) and each block's inner activation
  u; the input is the pixel level as 2k - (K - 1), the float model's [-1, 1] times K - 1;
* a layer is one matrix product of integers whose partial sums are exact in the product's
  type, so the result does not depend on the order of summation, the batch, the thread count
  or the machine: float32 when every partial sum stays below 2**24 (int8 weights, 10-bit
  activations), float64 otherwise (below 2**53: int16 weights and 12-bit activations over
  96 inputs reach 2**34);
* requantisation: (acc + bias_q) * M_c, rounded half up, clamped (ReLU and saturation):
  elementwise arithmetic in the product's type with constants computed once from the
  weights, the same IEEE result everywhere (no reduction, so no order to depend on); the
  residual sum is an integer addition;
* the head's raw parameters come out as integers on the 2**-12 grid; the colour coupling
  is integer arithmetic too (:meth:`LocalEngine.channel_params`), and
  :mod:`arcodec.codec.mixture` turns the result into the coder's frequency tables.

The activation scales are calibrated on training images (the model's ``calibrate``, run
by ``arcodec train`` at every checkpoint and by ``arcodec export``) and stored in the
model's ``act_max`` buffer, so they travel with the weights (and their sha256). A model
that was never calibrated gets scales from interval
bounds of its weights (exact but coarse: fine for tests, not for shipping).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from arcodec.codec.mixture import frequencies
from arcodec import exact

ACT_BITS = 12
ACT_MAX = (1 << ACT_BITS) - 1
WEIGHT_MAX = 32767
EXACT_F32 = 1 << 24  # integers below this are exact in float32


def _quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """(integer-valued float64 weights (out, in) of at most WEIGHT_MAX in magnitude,
    per-output-channel scales (out,) float64)."""
    w = w.detach().double().reshape(len(w), -1)
    peak = w.abs().amax(dim=1)
    scale = torch.where(peak > 0, peak / WEIGHT_MAX, torch.ones_like(peak))
    return torch.round(w / scale[:, None]), scale.numpy()


class _Layer:
    """One matrix product and its requantisation: y = clamp(round_half_up((x @ W^T + b_q) M))."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, in_scale: float, out_scale: float,
                 in_max: int, lo: int | None, hi: int | None):
        wq, ws = _quantize_weight(weight)
        n = wq.shape[1]
        self.dtype = torch.float32 if n * WEIGHT_MAX * in_max < EXACT_F32 else torch.float64
        self.wt = wq.t().contiguous().to(self.dtype)  # (in, out)
        real = ws * in_scale  # the value of one unit of the accumulator, per output channel
        b = bias.detach().double().numpy()
        # requantisation constants in the product's type: the elementwise steps below are
        # IEEE operations on the same numbers everywhere
        self.bias = torch.from_numpy(np.round(b / real)).to(self.dtype)  # in accumulator units
        self.mul = torch.from_numpy(real / out_scale).to(self.dtype)
        self.lo, self.hi = lo, hi

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, in) integer-valued -> (N, out) integers (in the layer's type)."""
        y = (x.to(self.dtype) @ self.wt).add_(self.bias).mul_(self.mul).add_(0.5).floor_()
        if self.lo is not None:
            y.clamp_(self.lo, self.hi)
        return y


class LocalEngine:
    """Integer inference of a local photo model; see the module docstring."""

    def __init__(self, model):
        cfg = model.config
        self.model = model
        self.config = cfg
        self.horizon = cfg.horizon
        K = cfg.levels
        t_max, u_max = _scales(model)
        st = t_max / ACT_MAX  # value of one unit of the residual stream
        w_in = (model.inp.conv.weight * model.inp.mask).detach()
        self.window = w_in.shape[1:]  # (C, h + 1, 2h + 1)
        # input units: 1 / (K - 1) (the level 2k - (K - 1))
        self.first = _Layer(w_in, model.inp.conv.bias, 1.0 / (K - 1), st, K - 1, 0, ACT_MAX)
        self.blocks = []
        for (a, b), um in zip(model.blocks, u_max):
            su = um / ACT_MAX
            inner = _Layer(a.conv.weight, a.conv.bias, st, su, ACT_MAX, 0, ACT_MAX)
            outer = _Layer(b.conv.weight, b.conv.bias, su, st, ACT_MAX, None, None)
            self.blocks.append((inner, outer))
        self.head = _Layer(model.out.conv.weight, model.out.conv.bias, st, 2.0**-exact.ACT_FRAC, ACT_MAX, None, None)
        self.layout = model.head_layout()
        self._tanh = np.round(exact.gate_tables()[0].numpy() * 2.0**exact.TABLE_FRAC).astype(np.int64)
        self._tanh_n = exact.TABLE_RANGE << exact.ACT_FRAC
        k = np.arange(K, dtype=np.int64)  # level k on [-1, 1], 2**-12 units, rounded half up (in integers)
        self._level_q = (2 * (2 * k - (K - 1)) * (1 << exact.ACT_FRAC) + (K - 1)) // (2 * (K - 1))

    # ------------------------------------------------------------------ the network
    def _trunk(self, cols: torch.Tensor) -> torch.Tensor:
        """Windows flattened (N, C (h+1) (2h+1)) of input units -> raw parameters (N, P) int64."""
        t = self.first(cols)
        for inner, outer in self.blocks:
            t = (t + outer(inner(t))).clamp_(0, ACT_MAX)
        return self.head(t).long()

    def input_units(self, x: torch.Tensor) -> torch.Tensor:
        """Integer levels -> the engine's input units 2k - (K - 1) (float32)."""
        return (x * 2 - (self.config.levels - 1)).to(torch.float32)

    def params(self, x: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """Raw parameters (B, P, r1 - r0, W) int64 of rows r0..r1-1 of integer images x
        (B, C, H, W): every window of those rows, zero-padded outside the image."""
        h = self.horizon
        b, c, _, w = x.shape
        lo = max(0, r0 - h)
        xs = self.input_units(x[:, :, lo:r1])
        xs = F.pad(xs, (h, h, h - (r0 - lo), 0))  # rows r0-h..r1-1, columns -h..W+h-1
        cols = F.unfold(xs, self.window[1:])  # (B, C (h+1) (2h+1), (r1 - r0) W), the same order as the weights
        out = self._trunk(cols.transpose(1, 2).reshape(-1, cols.shape[1]))
        return out.view(b, r1 - r0, w, -1).permute(0, 3, 1, 2)

    def params_at(self, windows: torch.Tensor) -> torch.Tensor:
        """Raw parameters (N, P) int64 from windows (N, C, h + 1, 2h + 1) of input units, or
        the same flattened (N, C (h + 1) (2h + 1))."""
        return self._trunk(windows.reshape(len(windows), -1))

    def channel_params(self, raw: np.ndarray, prev: np.ndarray, ch: int):
        """(logits, means, log scales), each (N, M) int64 in 2**-12 units, of channel ``ch`` of
        N pixels from their raw parameters (N, P) int64 and their levels ``prev`` (N, C) (the
        channels before ``ch`` decoded). The colour coupling in integers: tanh of the
        coefficient from the exact table (2**-24 units) times the earlier level in 2**-12
        units, summed and rounded half up onto the 2**-12 grid."""
        lay = self.layout[ch]
        lg = raw[:, slice(*lay["logits"])]
        mu = raw[:, slice(*lay["means"])]
        ls = raw[:, slice(*lay["log_scales"])]
        if lay["coupling"]:
            acc = np.zeros_like(mu)
            for a, b, prev_ch in lay["coupling"]:
                coef = np.clip(raw[:, a:b], -self._tanh_n, self._tanh_n) + self._tanh_n
                acc += self._tanh[coef] * self._level_q[prev[:, prev_ch]][:, None]
            mu = mu + ((acc + (1 << (exact.TABLE_FRAC - 1))) >> exact.TABLE_FRAC)
        return lg, mu, ls

    def tables(self, raw: np.ndarray, prev: np.ndarray, ch: int) -> np.ndarray:
        """The coder's integer frequency tables (N, K) of channel ``ch`` (see :meth:`channel_params`)."""
        return frequencies(*self.channel_params(raw, prev, ch), self.config.levels)


def _scales(model) -> tuple[float, list[float]]:
    """(largest value of the residual stream, largest inner activation of each block): the
    calibrated ``act_max`` buffer, or interval bounds from the weights when it is zero."""
    stored = model.act_max.double().tolist()
    if all(v > 0 for v in stored):
        return stored[0], stored[1:]
    # |input| <= 1: bound every activation by the sum of |weights| (math.fsum: exact rounding)
    def bound(w, b, x):
        w = w.detach().double().reshape(len(w), -1)
        return max(math.fsum(abs(v) for v in row) * x + abs(float(bb)) for row, bb in zip(w.tolist(), b.tolist()))
    t = bound(model.inp.conv.weight * model.inp.mask, model.inp.conv.bias, 1.0)
    us = []
    for a, b in model.blocks:
        u = bound(a.conv.weight, a.conv.bias, t)
        t = t + bound(b.conv.weight, b.conv.bias, u)
        us.append(u)
    return max(t, 1e-6), [max(u, 1e-6) for u in us]
