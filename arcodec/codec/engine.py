"""The integer engine of the local photo models: exact by construction.

Built from the weights of a trained :class:`arcodec.models.local.LocalPhotoModel` (the model
itself stays plain float PyTorch) in numpy: from a model file without torch, or from the torch
model (:class:`LocalWeights`), in the manner of integer-only inference (Jacob et al. 2018):

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
  residual sum is an integer addition. With numba the float64 layers requantise (and add
  a block's residual) in one compiled pass of the same IEEE operations, numpy's steps
  without it: the same integers, tested element for element;
* the head's raw parameters come out as integers on the 2**-12 grid; the colour coupling
  is integer arithmetic too (:meth:`LocalEngine.channel_params`), and
  :mod:`arcodec.codec.mixture` turns the result into the coder's frequency tables;
* a model with ``surprise`` moves a channel's logits and log scales by the code lengths
  of the pixel's earlier channels, which the engine reads off the coder's own tables: u =
  ln(2**24 / f) for the frequency f of the level each earlier channel took, an integer
  logarithm (:func:`arcodec.fixed.log_q`'s mantissa table), on the 2**-12 grid, times gains
  on the 2**-24 grid. Encoder and decoder hold the same tables, so they get the same u.
* a model with ``channel_head`` gives each later channel a small head of its own: each unit
  is its raw input (the head's output, 2**-12 grid) plus integer weights (2**-24 grid) times
  the earlier channels' levels (2**-12 units) and their u, rounded half up onto the 2**-12
  grid and clamped to [0, 256] (a saturating ReLU); the units times the output weights
  (2**-24 grid), rounded the same way, plus the biases move the channel's logits, means and
  log scales. int64 throughout: the engine refuses weights that could take a sum to 2**62.

The activation scales are calibrated on training images (the model's ``calibrate``, run
by ``arcodec train`` at every checkpoint and by ``arcodec export``) and stored in the
model's ``act_max`` buffer, so they travel with the weights (and their sha256). A model
that was never calibrated gets scales from interval
bounds of its weights (exact but coarse: fine for tests, not for shipping).
"""

from __future__ import annotations

import json
import math
from functools import cached_property
from pathlib import Path

import numpy as np

from arcodec import fixed
from arcodec.errors import ModelError
from arcodec.codec.mixture import TABLE_BITS, compile_kernel, edges, frequencies
from arcodec.models.local_layout import (HEAD_G_MAX, HEAD_U_SCALE, SURPRISE_CENTRE, SURPRISE_MAX, LocalPhotoConfig,
                                        head_layout, n_params, pairs)

ACT_BITS = 12
ACT_MAX = (1 << ACT_BITS) - 1
WEIGHT_MAX = 32767
EXACT_F32 = 1 << 24  # integers below this are exact in float32


def float64(t) -> np.ndarray:
    """A weight tensor (torch: detached, on the CPU) or array as float64 numpy."""
    if hasattr(t, "detach"):
        t = t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64)


def quantize_weight(w, weight_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(integer-valued float64 weights (out, in) of at most ``weight_max`` (default
    :data:`WEIGHT_MAX`) in magnitude, per-output-channel scales (out,) float64)."""
    weight_max = WEIGHT_MAX if weight_max is None else weight_max
    w = float64(w)
    w = w.reshape(len(w), -1)
    peak = np.abs(w).max(axis=1) if w.size else np.zeros(len(w))
    scale = np.where(peak > 0, peak / weight_max, 1.0)
    return np.round(w / scale[:, None]), scale


def exact_dtype(bound: float) -> type:
    """The matrix products' type for partial sums of at most ``bound`` in magnitude: float32
    when it holds every such integer exactly, float64 (below 2**53) otherwise."""
    if bound >= 2.0**53:
        raise ValueError(f"integer layer too wide for exact arithmetic (partial sums up to {bound:.3g})")
    return np.float32 if bound < EXACT_F32 else np.float64


class IntLayer:
    """One matrix product and its requantisation: y = clamp(round_half_up((x @ W^T + b_q) M)).

    ``weight_max``: the weights' integer range per output channel (32767: int16; 127: int8,
    whose products stay exact in float32 for wider layers and larger activations).

    The layer's numbers are numpy arrays (``dtype`` a numpy type), and it computes on numpy
    arrays; with ``tensors`` (the Gated PixelCNN's engine, which runs in PyTorch) they are
    torch tensors of the same numbers (``dtype`` a torch type), and it computes on tensors.
    The quantisation is the same either way."""

    _arrays = ("wt", "bias", "mul")

    def __init__(self, weight, bias, in_scale: float, out_scale: float, in_max: int, lo: int | None,
                 hi: int | None, weight_max: int | None = None, tensors: bool = False):
        weight_max = WEIGHT_MAX if weight_max is None else weight_max
        wq, ws = quantize_weight(weight, weight_max)
        self.dtype = exact_dtype(wq.shape[1] * weight_max * in_max)
        self.wt = np.ascontiguousarray(wq.T, dtype=self.dtype)  # (in, out)
        self._constants(bias, ws * in_scale, out_scale)  # ws * in_scale: one accumulator unit's value
        self.lo, self.hi = lo, hi
        if tensors:
            self._as_tensors()

    def _constants(self, bias, real: np.ndarray, out_scale: float) -> None:
        # requantisation constants in the product's type, computed once: the elementwise
        # steps of requantize() are IEEE operations on the same numbers everywhere
        self.bias = np.round(float64(bias) / real).astype(self.dtype)  # in accumulator units
        self.mul = (real / out_scale).astype(self.dtype)

    def _as_tensors(self) -> None:
        import torch

        self.dtype = torch.float32 if self.dtype == np.float32 else torch.float64
        for name in self._arrays:
            value = getattr(self, name)
            setattr(self, name, [torch.from_numpy(v) for v in value] if isinstance(value, list)
                    else torch.from_numpy(value))

    def to(self, device) -> "IntLayer":
        """The layer's tensors on ``device`` (in place; a layer built with ``tensors``): the
        same integers, whose products stay exact wherever float32 (without TF32) or float64
        sums integers exactly (:func:`arcodec.codec.gated.use_device` turns TF32 off)."""
        for name in self._arrays:
            value = getattr(self, name)
            setattr(self, name, [v.to(device) for v in value] if isinstance(value, list) else value.to(device))
        return self

    @property
    def tensors(self) -> bool:
        return not isinstance(self.mul, np.ndarray)

    def _mm(self, x, w):
        if self.tensors:
            return x.to(self.dtype) @ w
        return x.astype(self.dtype, copy=False) @ w

    def accumulate(self, x):
        """x (N, in) integer-valued -> the exact integer sums (N, out) of x @ W^T."""
        return self._mm(x, self.wt)

    def requantize(self, acc):
        """Accumulator sums (N, out), in place -> output integers: + bias, times the
        multiplier, rounded half up, clamped."""
        if self.tensors:
            y = acc.add_(self.bias).mul_(self.mul).add_(0.5).floor_()
            return y if self.lo is None else y.clamp_(self.lo, self.hi)
        kernel = _fused(acc)
        if kernel is not None:  # the same IEEE steps in one pass over acc
            kernel(acc, self.bias, self.mul, -np.inf if self.lo is None else self.lo,
                   np.inf if self.hi is None else self.hi, acc, False)
            return acc
        acc += self.bias
        acc *= self.mul
        acc += 0.5
        np.floor(acc, out=acc)
        return acc if self.lo is None else np.clip(acc, self.lo, self.hi, out=acc)

    def __call__(self, x):
        """x (N, in) integer-valued -> (N, out) integers (in the layer's type)."""
        return self.requantize(self.accumulate(x))

    def add_into(self, t, x, lo: int, hi: int):
        """t += self(x), clamped to [lo, hi], in place: a residual block's sum (an integer
        addition). Numpy layers without clamps of their own only."""
        acc = self.accumulate(x)
        kernel = _fused(acc)
        if kernel is not None and t.dtype == acc.dtype and t.flags.c_contiguous and self.lo is None:
            kernel(acc, self.bias, self.mul, lo, hi, t, True)
            return t
        t += self.requantize(acc)
        return np.clip(t, lo, hi, out=t)


def _requantize(acc, bias, mul, lo, hi, t, add):
    """The kernel of :meth:`IntLayer.requantize` and :meth:`IntLayer.add_into` (float64):
    t[i, j] = clamp(floor((acc[i, j] + bias[j]) * mul[j] + 0.5), plus t[i, j] with ``add``,
    lo, hi) (``t`` may be ``acc`` itself); each step one IEEE operation as numpy's (numba
    contracts nothing into a fused multiply-add without fastmath)."""
    n, m = acc.shape
    for i in range(n):
        for j in range(m):
            y = np.floor((acc[i, j] + bias[j]) * mul[j] + 0.5)
            if add:
                y += t[i, j]  # integers below 2**53: exact
            t[i, j] = min(max(y, lo), hi)


_KERNEL: list = []


def _fused(acc):
    """The compiled requantisation kernel for ``acc`` (float64, C-contiguous, 2-D), or None
    (another type or layout, or no numba): the caller runs numpy's steps."""
    if not (isinstance(acc, np.ndarray) and acc.dtype == np.float64 and acc.ndim == 2 and acc.flags.c_contiguous):
        return None
    return requantize_kernel()


def requantize_kernel():
    """The compiled requantisation kernel, loaded (from numba's cache) on first use, or None
    without numba."""
    if not _KERNEL:
        _KERNEL.append(compile_kernel(_requantize))
    return _KERNEL[0]


class JointLayer(IntLayer):
    """An :class:`IntLayer` over inputs in several parts, each on its own scale: the weights
    of every part times its input scale, quantized together per output channel, so that the
    parts' integer sums add exactly. A part's sums can be computed at another time than the
    others' (a decoder computes a row's part once and a pixel's part at every step)."""

    _arrays = ("parts", "bias", "mul")

    def __init__(self, weights: list, bias, in_scales: list[float], in_maxes: list[int], out_scale: float,
                 lo: int | None, hi: int | None, weight_max: int | None = None, tensors: bool = False):
        weight_max = WEIGHT_MAX if weight_max is None else weight_max
        real = [float64(w).reshape(len(w), -1) * s for w, s in zip(weights, in_scales)]
        wq, ws = quantize_weight(np.concatenate(real, axis=1), weight_max)
        widths = [r.shape[1] for r in real]
        self.dtype = exact_dtype(weight_max * sum(n * m for n, m in zip(widths, in_maxes)))
        self.parts = [np.ascontiguousarray(p.T, dtype=self.dtype)
                      for p in np.split(wq, np.cumsum(widths)[:-1], axis=1)]
        self._constants(bias, ws, out_scale)
        self.lo, self.hi = lo, hi
        if tensors:
            self._as_tensors()

    def accumulate_part(self, i: int, x):
        """x (N, in_i) integer-valued -> part i's exact integer sums (N, out)."""
        return self._mm(x, self.parts[i])

    def accumulate(self, *xs):
        acc = self.accumulate_part(0, xs[0])
        for i, x in enumerate(xs[1:], 1):  # exact integer sums: any order gives the same
            acc += self.accumulate_part(i, x)
        return acc

    def __call__(self, *xs):
        return self.requantize(self.accumulate(*xs))


class LocalWeights:
    """A local photo model as its integer engine needs it: the config and the weights (numpy
    float32 arrays by their state-dict names). Read from a model file without torch
    (:meth:`read`), or taken from a torch model (:meth:`of`). The wavefront coder codes with
    it as with the model: it has the model's ``scan``, ``horizon``, ``config`` and
    ``n_params``; its :attr:`engine` is built once."""

    coding = "autoregressive"
    scan = "wavefront"

    def __init__(self, config: LocalPhotoConfig, state: dict[str, np.ndarray]):
        self.config = config
        self.state = state
        self.horizon = config.horizon
        self.n_params = n_params(config)

    @classmethod
    def read(cls, path: Path | str, config: dict) -> "LocalWeights":
        """From a model file (safetensors, ``.arcm``) and the card's config, without torch."""
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
        return cls(LocalPhotoConfig(**config), state)

    @classmethod
    def of(cls, model) -> "LocalWeights":
        """From a :class:`arcodec.models.local.LocalPhotoModel`."""
        return cls(model.config, {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})

    @cached_property
    def engine(self) -> "LocalEngine":
        return LocalEngine(self)

    def __repr__(self) -> str:
        return f"LocalWeights({json.dumps(self.config.__dict__)})"


class LocalEngine:
    """Integer inference of a local photo model; see the module docstring. Built from
    :class:`LocalWeights` (or a torch model, whose weights it takes)."""

    def __init__(self, model):
        w = model if isinstance(model, LocalWeights) else LocalWeights.of(model)
        cfg = w.config
        st = w.state
        self.config = cfg
        self.horizon = cfg.horizon
        K = cfg.levels
        t_max, u_max = _scales(w)
        su_t = t_max / ACT_MAX  # value of one unit of the residual stream
        w_in = st["inp.conv.weight"] * st["inp.mask"]  # float32, as the model's own product
        self.window = w_in.shape[1:]  # (C, h + 1, 2h + 1)
        # input units: 1 / (K - 1) (the level 2k - (K - 1))
        self.first = IntLayer(w_in, st["inp.conv.bias"], 1.0 / (K - 1), su_t, K - 1, 0, ACT_MAX)
        self.blocks = []
        for k, um in enumerate(u_max):
            su = um / ACT_MAX
            inner = IntLayer(st[f"blocks.{k}.0.conv.weight"], st[f"blocks.{k}.0.conv.bias"], su_t, su, ACT_MAX, 0,
                             ACT_MAX)
            outer = IntLayer(st[f"blocks.{k}.1.conv.weight"], st[f"blocks.{k}.1.conv.bias"], su, su_t, ACT_MAX,
                             None, None)
            self.blocks.append((inner, outer))
        self.head = IntLayer(st["out.conv.weight"], st["out.conv.bias"], su_t, 2.0**-fixed.ACT_FRAC, ACT_MAX, None,
                             None)
        self.n_params = self.head.wt.shape[1]  # raw parameters a pixel
        self.layout = head_layout(cfg)
        self._tanh = np.round(fixed.gate_tables()[0] * 2.0**fixed.TABLE_FRAC).astype(np.int64)
        self._tanh_n = fixed.TABLE_RANGE << fixed.ACT_FRAC
        self._tanh_upper = _upper_half(self._tanh)
        # each channel's couplings for the kernel: (first coefficient column, earlier channel)
        self._terms = [np.array([(a, c) for a, _, c in lay["coupling"]], dtype=np.int64).reshape(-1, 2)
                       for lay in self.layout]
        # the surprise: each channel's earlier channels and their gains (2, terms, M) on the
        # logits and log scales, 2**-24 units
        gains = float64(st["surprise_gain"]) if cfg.surprise and "surprise_gain" in st else None
        pair = pairs(cfg.channels)
        self._s_prev, self._s_gain = [], []
        for ch in range(cfg.channels):
            ks = [k for k, (c, _) in enumerate(pair) if c == ch] if gains is not None else []
            self._s_prev.append(np.array([pair[k][1] for k in ks], dtype=np.int64))
            g = (np.round(gains[:, ks] * 2.0**fixed.TABLE_FRAC).astype(np.int64) if ks
                 else np.zeros((2, 0, cfg.components), dtype=np.int64))
            self._s_gain.append(np.ascontiguousarray(g))
        # the channel heads: each later channel's input weights (k, 2 ch) on its earlier
        # channels' levels and centred code lengths (the code lengths' 1/4 folded in) and output
        # weights (k, 3 M), 2**-24 units; output biases (3 M,), 2**-12 units
        self._h_in, self._h_out, self._h_bias = [], [], []
        for ch in range(cfg.channels):
            m3 = 3 * cfg.components
            if cfg.channel_head and ch:
                c1 = cfg.channels - 1
                w_in = float64(st["head_in"])[ch - 1][:, list(range(ch)) + list(range(c1, c1 + ch))]
                w_in[:, ch:] *= HEAD_U_SCALE
                h = (w_in * 2.0**fixed.TABLE_FRAC, float64(st["head_out"])[ch - 1] * 2.0**fixed.TABLE_FRAC,
                     float64(st["head_bias"])[ch - 1] * 2.0**fixed.ACT_FRAC)
            else:
                h = (np.zeros((0, 2 * ch)), np.zeros((0, m3)), np.zeros(m3))
            for to, v in zip((self._h_in, self._h_out, self._h_bias), h):
                to.append(np.ascontiguousarray(np.round(v).astype(np.int64)))
            # the largest sums the kernel forms (features below 2**17, units at most the saturation)
            if (float(np.abs(h[0]).sum(axis=1, initial=0).max(initial=0)) * 2.0**17 >= 2.0**62
                    or float(np.abs(h[1]).sum(axis=0, initial=0).max(initial=0)) * _HEAD_G_MAX >= 2.0**62):
                raise ModelError(f"channel {ch}'s head has weights too large for the integer engine's int64 sums")
        # whether a channel's mixture reads its earlier channels' table frequencies (the coders
        # then keep them): the surprise's gains or the channel heads
        self.surprise = gains is not None or bool(cfg.channel_head)
        self._mant = fixed.log_mantissa_table()
        self._ln2 = int(fixed.ln2_q())
        k = np.arange(K, dtype=np.int64)  # level k on [-1, 1], 2**-12 units, rounded half up (in integers)
        self._level_q = (2 * (2 * k - (K - 1)) * (1 << fixed.ACT_FRAC) + (K - 1)) // (2 * (K - 1))

    # ------------------------------------------------------------------ the network
    def _trunk(self, cols: np.ndarray) -> np.ndarray:
        """Windows flattened (N, C (h+1) (2h+1)) of input units -> raw parameters (N, P) int64."""
        t = self.first(cols)
        for inner, outer in self.blocks:
            outer.add_into(t, inner(t), 0, ACT_MAX)
        return self.head(t).astype(np.int64)

    def input_units(self, x: np.ndarray) -> np.ndarray:
        """Integer levels -> the engine's input units 2k - (K - 1) (float32)."""
        return (np.asarray(x, dtype=np.int64) * 2 - (self.config.levels - 1)).astype(np.float32)

    def params(self, x: np.ndarray, r0: int, r1: int) -> np.ndarray:
        """Raw parameters (B, r1 - r0, W, P) int64 of rows r0..r1-1 of integer images x
        (B, C, H, W): every window of those rows, zero-padded outside the image."""
        h = self.horizon
        b, c, _, w = x.shape
        lo = max(0, r0 - h)
        xs = np.zeros((b, c, r1 - r0 + h, w + 2 * h), dtype=np.float32)  # rows r0-h..r1-1, columns -h..W+h-1
        xs[:, :, h - (r0 - lo):, h: h + w] = self.input_units(x[:, :, lo:r1])
        win = np.lib.stride_tricks.sliding_window_view(xs, self.window[1:], axis=(2, 3))  # (B, C, r, W, h+1, 2h+1)
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(b * (r1 - r0) * w, -1)  # the weights' order
        return self._trunk(cols).reshape(b, r1 - r0, w, -1)

    def params_at(self, windows: np.ndarray) -> np.ndarray:
        """Raw parameters (N, P) int64 from windows (N, C, h + 1, 2h + 1) of input units, or
        the same flattened (N, C (h + 1) (2h + 1))."""
        return self._trunk(np.asarray(windows).reshape(len(windows), -1))

    def channel_params(self, raw: np.ndarray, prev: np.ndarray, ch: int, rows: np.ndarray | None = None,
                       freq: np.ndarray | None = None):
        """(logits, means, log scales), each (N, M) int64 in 2**-12 units, of channel ``ch`` of
        pixels from their raw parameters (N, P) int64 and their levels ``prev`` (N, C) (the
        channels before ``ch`` decoded); of the pixels ``rows`` of raw and prev only when
        given. The colour coupling in integers: tanh of the coefficient from the exact table
        (2**-24 units) times the earlier level in 2**-12 units, summed and rounded half up
        onto the 2**-12 grid. With ``surprise``: ``freq`` (one row per pixel returned, C) holds
        the table frequency of each earlier channel's level (see the module docstring)."""
        lay = self.layout[ch]
        terms = len(self._s_prev[ch])
        heads = len(self._h_in[ch])
        if (terms or heads) and (freq is None or len(freq) != (len(raw) if rows is None else len(rows))):
            raise ValueError(f"channel {ch} follows the earlier channels' code lengths: give their table "
                             f"frequencies, one row per pixel")
        if not (terms or heads):
            freq = _NO_FREQ
        if not _COUPLE:
            _COUPLE.append(compile_kernel(_couple))
        if _COUPLE[0] is None or (rows is None and not lay["coupling"] and not terms and not heads):  # no kernel, or nothing to compute
            return self._channel_params_numpy(raw if rows is None else raw[rows],
                                              prev if rows is None else prev[rows], ch, freq)
        n = min(len(raw), len(prev))
        if rows is None:
            rows = np.arange(n)
        else:
            rows = np.ascontiguousarray(rows, dtype=np.int64)
            if len(rows) and not 0 <= rows.min() <= rows.max() < n:
                raise ValueError(f"pixel index out of range 0..{n - 1}")
        m = lay["logits"][1] - lay["logits"][0]
        lg, mu, ls = (np.empty((len(rows), m), dtype=np.int64) for _ in range(3))
        _COUPLE[0](np.ascontiguousarray(raw, dtype=np.int64), np.ascontiguousarray(prev, dtype=np.int64), rows,
                   lay["logits"][0], lay["means"][0], lay["log_scales"][0], self._terms[ch], self._tanh_upper,
                   self._level_q, fixed.TABLE_FRAC, np.ascontiguousarray(freq, dtype=np.int64), self._s_prev[ch],
                   self._s_gain[ch], self._mant, self._ln2, *_SURPRISE, lay["head"][0] if heads else 0,
                   self._h_in[ch], self._h_out[ch], self._h_bias[ch], _HEAD_G_MAX, lg, mu, ls)
        return lg, mu, ls

    def surprise_units(self, freq: np.ndarray) -> np.ndarray:
        """u - SURPRISE_CENTRE in 2**-12 units (int64) of table frequencies ``freq`` (1..2**24):
        u = ln(2**24 / f) clamped to [0, SURPRISE_MAX] nats, from :func:`arcodec.fixed.log_q`
        (the reference of the kernel's own logarithm)."""
        u = TABLE_BITS * self._ln2 - fixed.log_q(freq, 0)  # ln(2**24 / f), 2**-24 units
        top, centre, shift = _SURPRISE[0], _SURPRISE[1], _SURPRISE[2]
        return np.clip((u + (1 << (shift - 1))) >> shift, 0, top) - centre

    def _channel_params_numpy(self, raw: np.ndarray, prev: np.ndarray, ch: int, freq: np.ndarray):
        """:meth:`channel_params` in numpy (the reference, and the fallback without numba)."""
        lay = self.layout[ch]
        lg = raw[:, slice(*lay["logits"])]
        mu = raw[:, slice(*lay["means"])]
        ls = raw[:, slice(*lay["log_scales"])]
        if lay["coupling"]:
            acc = np.zeros_like(mu)
            for a, b, prev_ch in lay["coupling"]:
                coef = np.clip(raw[:, a:b], -self._tanh_n, self._tanh_n) + self._tanh_n
                acc += self._tanh[coef] * self._level_q[prev[:, prev_ch]][:, None]
            mu = mu + ((acc + (1 << (fixed.TABLE_FRAC - 1))) >> fixed.TABLE_FRAC)
        if len(self._s_prev[ch]):
            u = self.surprise_units(freq[:, self._s_prev[ch]])  # (N, terms)
            half = 1 << (fixed.TABLE_FRAC - 1)
            gains = self._s_gain[ch]
            lg = lg + ((u @ gains[0] + half) >> fixed.TABLE_FRAC)
            ls = ls + ((u @ gains[1] + half) >> fixed.TABLE_FRAC)
        if len(self._h_in[ch]):  # the channel's head: its units, then what they add to the 3 M parameters
            m = lg.shape[1]
            half = 1 << (fixed.TABLE_FRAC - 1)
            feats = np.concatenate([self._level_q[prev[:, :ch]], self.surprise_units(freq[:, :ch])], axis=1)
            g = np.clip(raw[:, slice(*lay["head"])] + ((feats @ self._h_in[ch].T + half) >> fixed.TABLE_FRAC),
                        0, _HEAD_G_MAX)
            d = ((g @ self._h_out[ch] + half) >> fixed.TABLE_FRAC) + self._h_bias[ch]
            lg, mu, ls = lg + d[:, :m], mu + d[:, m: 2 * m], ls + d[:, 2 * m:]
        return lg, mu, ls

    def tables(self, raw: np.ndarray, prev: np.ndarray, ch: int, rows: np.ndarray | None = None,
               out: np.ndarray | None = None, dest: np.ndarray | None = None,
               freq: np.ndarray | None = None) -> np.ndarray:
        """The coder's integer frequency tables (N, K) of channel ``ch`` (see :meth:`channel_params`;
        ``out`` and ``dest`` as in :func:`arcodec.codec.mixture.frequencies`)."""
        return frequencies(*self.channel_params(raw, prev, ch, rows, freq), self.config.levels, out, dest)

    def edges(self, raw: np.ndarray, prev: np.ndarray, ch: int, rows: np.ndarray, left: np.ndarray,
              own: np.ndarray, dest: np.ndarray, freq: np.ndarray | None = None) -> None:
        """What :meth:`tables` would hold at each pixel's level of channel ``ch`` (prev[rows,
        ch]) alone: the sum of the frequencies before it into ``left[dest]``, its own into
        ``own[dest]`` (:func:`arcodec.codec.mixture.edges`: with numba only)."""
        symbols = prev[rows, ch]
        edges(*self.channel_params(raw, prev, ch, rows, freq), self.config.levels, symbols, left, own, dest)


def _upper_half(tanh: np.ndarray) -> np.ndarray:
    """The tanh table (int64, odd length, centred on 0) from 0 to where it saturates, int32: the
    coupling kernel's table (tanh(-t) = -tanh(t) exactly, checked here; a smaller table
    stays in a core's cache)."""
    n = len(tanh) // 2
    upper = tanh[n:]
    if not np.array_equal(upper, -tanh[: n + 1][::-1]):
        raise AssertionError("the tanh table is not odd")
    return upper[: int(np.argmax(upper == upper[-1])) + 1].astype(np.int32)


def _couple(raw, prev, rows, lg_at, mu_at, ls_at, terms, tanh, level_q, frac, freq, s_prev, s_gain, mant, ln2,
            u_top, u_centre, u_shift, table_bits, mbits, h_at, h_in, h_out, h_bias, g_max, lg, mu, ls):
    """The kernel of :meth:`LocalEngine.channel_params`: pixel rows[i] into row i of lg, mu,
    ls; terms: (first coefficient column, earlier channel) of each coupling; tanh: the
    table's upper half up to saturation (:func:`_upper_half`); freq[i], s_prev, s_gain: the
    surprise (u from the frequency of each earlier channel s_prev[k], the integer logarithm of
    :func:`arcodec.fixed.log_q` with its mantissa table ``mant``); h_at, h_in, h_out, h_bias:
    the channel's head (its units' inputs from raw column h_at on; no rows: none), whose
    earlier channels are 0..ch-1 (s_prev too, with the surprise)."""
    n, m = lg.shape
    top = len(tanh) - 1
    half = 1 << (frac - 1)
    ns = len(s_prev)
    kh = h_in.shape[0]
    nq = h_in.shape[1] // 2  # the head's earlier channels
    nu = max(ns, nq if kh else 0)  # earlier channels whose code lengths the mixture reads
    us = np.zeros(max(nu, 1), dtype=np.int64)
    g = np.zeros(max(kh, 1), dtype=np.int64)
    for i in range(n):
        s = rows[i]
        for k in range(nu):
            f = freq[i, k]
            nb = 0
            while (f >> nb) > 0:
                nb += 1
            shift = max(nb - mbits, 0)
            mm = (f + ((1 << (shift - 1)) if shift > 0 else 0)) >> shift
            up = 0
            if mm < (1 << (mbits - 1)):
                up = mbits - nb
                mm = f << up
            lnf = mant[mm - (1 << (mbits - 1))] + (shift - up + mbits - 1) * ln2
            u = (table_bits * ln2 - lnf + (1 << (u_shift - 1))) >> u_shift
            us[k] = min(max(u, 0), u_top) - u_centre
        for c in range(m):
            acc_l = 0
            acc_s = 0
            for k in range(ns):
                acc_l += s_gain[0, k, c] * us[k]
                acc_s += s_gain[1, k, c] * us[k]
            lg[i, c] = raw[s, lg_at + c] + ((acc_l + half) >> frac)  # no surprise: + 0
            ls[i, c] = raw[s, ls_at + c] + ((acc_s + half) >> frac)
            acc = 0
            for k in range(terms.shape[0]):
                a = raw[s, terms[k, 0] + c]
                v = np.int64(tanh[min(abs(a), top)])
                acc += (v if a >= 0 else -v) * level_q[prev[s, terms[k, 1]]]
            mu[i, c] = raw[s, mu_at + c] + ((acc + half) >> frac)  # acc = 0 without coupling: + 0
        if kh:
            for j in range(kh):
                acc = 0
                for q in range(nq):
                    acc += h_in[j, q] * level_q[prev[s, q]] + h_in[j, nq + q] * us[q]
                g[j] = min(max(raw[s, h_at + j] + ((acc + half) >> frac), 0), g_max)
            for c in range(m):
                a0 = 0
                a1 = 0
                a2 = 0
                for j in range(kh):
                    a0 += h_out[j, c] * g[j]
                    a1 += h_out[j, m + c] * g[j]
                    a2 += h_out[j, 2 * m + c] * g[j]
                lg[i, c] += ((a0 + half) >> frac) + h_bias[c]
                mu[i, c] += ((a1 + half) >> frac) + h_bias[m + c]
                ls[i, c] += ((a2 + half) >> frac) + h_bias[2 * m + c]


_COUPLE: list = []
_HEAD_G_MAX = int(HEAD_G_MAX * (1 << fixed.ACT_FRAC))  # a head unit's saturation, 2**-12 units
_NO_FREQ = np.zeros((0, 1), dtype=np.int64)
# the surprise's constants for the kernel: (u's clamp, its centre: 2**-12 units; the shift
# from 2**-24 to 2**-12 units; the table's bits; the logarithm's mantissa bits)
_SURPRISE = (int(SURPRISE_MAX * (1 << fixed.ACT_FRAC)), int(SURPRISE_CENTRE * (1 << fixed.ACT_FRAC)),
             fixed.LOG_FRAC - fixed.ACT_FRAC, TABLE_BITS, fixed.LOG_MANT_BITS)


def _scales(w: LocalWeights) -> tuple[float, list[float]]:
    """(largest value of the residual stream, largest inner activation of each block): the
    calibrated ``act_max`` buffer, or interval bounds from the weights when it is zero."""
    st = w.state
    stored = float64(st["act_max"]).tolist() if "act_max" in st else [0.0]
    if len(stored) == 1 + w.config.blocks and all(v > 0 for v in stored):
        return stored[0], stored[1:]

    # |input| <= 1: bound every activation by the sum of |weights| (math.fsum: exact rounding)
    def bound(name, x):
        wt = float64(st[f"{name}.conv.weight"] * st["inp.mask"] if name == "inp" else st[f"{name}.conv.weight"])
        wt = wt.reshape(len(wt), -1)
        b = float64(st[f"{name}.conv.bias"])
        return max(math.fsum(abs(v) for v in row) * x + abs(float(bb)) for row, bb in zip(wt.tolist(), b.tolist()))
    t = bound("inp", 1.0)
    us = []
    for k in range(w.config.blocks):
        u = bound(f"blocks.{k}.0", t)
        t = t + bound(f"blocks.{k}.1", u)
        us.append(u)
    return max(t, 1e-6), [max(u, 1e-6) for u in us]
