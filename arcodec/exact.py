"""Exact (order-independent) arithmetic for the codec's forward pass.

An entropy decoder only works if it sees *bit-identical* probabilities to the encoder.
Floating-point convolutions do not guarantee that: the summation order depends on the
batch size, the input shape, the thread count and the algorithm (Winograd mixes in
values of pixels that the causal mask hides). A difference of one unit in the last place
is enough to decode garbage.

In exact mode every layer works on dyadic fixed-point numbers held in float64:

* activations lie on the grid ``2**-ACT_FRAC`` and are clamped to ``±ACT_LIMIT``;
* a convolution rounds its weights to integers times ``2**-s`` (``s`` chosen per layer
  from the weights so that they keep ``WEIGHT_BITS`` significant bits), multiplies
  integer-valued tensors and sums them. Every partial sum is an integer below ``2**53``,
  so float64 represents it exactly and the result is the same in any order, on any
  machine, for any crop of the input that contains the receptive field;
* non-linearities are table look-ups. The tables come from an exponential computed with
  Python integers, so they are the same on every platform.

The float path (training) and the exact path compute the same function up to the
quantisation (~1e-4 relative); the codec always uses the exact path on both sides.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from arcodec import fixed
# the constants and tables are defined once, without torch, in arcodec.fixed (the integer
# engines and a torch-free decoder read them there); this module's tables are the same
# arrays as torch tensors
from arcodec.fixed import (ACT_FRAC, ACT_LIMIT, EXP_FRAC, EXP_RANGE, FIXED_BITS, LOG_FRAC,  # noqa: F401
                           LOG_MANT_BITS, LOG_SCALE_RANGE, MIXTURE_MAX_COMPONENTS, MIXTURE_MAX_LEVELS,
                           SCALE_FRAC, SOFTPLUS_RANGE, TABLE_FRAC, TABLE_RANGE, WEIGHT_BITS, exp_neg_fixed,
                           ln2_q)

_ONE = fixed.ONE


def _tensor(a) -> torch.Tensor:
    return torch.from_numpy(a.copy())  # a copy: the cached numpy tables are read-only


@lru_cache(maxsize=None)
def gate_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """tanh and sigmoid at t = k / 2**ACT_FRAC, k in [-R, R], on the 2**-TABLE_FRAC grid
    (:func:`arcodec.fixed.gate_tables`)."""
    return tuple(_tensor(t) for t in fixed.gate_tables())


def _gate_tables_loop() -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gate_tables` entry by entry (the reference, for the tests)."""
    return tuple(_tensor(t) for t in fixed.gate_tables_loop())


@lru_cache(maxsize=None)
def exp_table() -> torch.Tensor:
    """exp(-k / 2**ACT_FRAC) on the 2**-EXP_FRAC grid for k = 0..EXP_RANGE*2**ACT_FRAC."""
    return _tensor(fixed.exp_table())


def to_grid(x: torch.Tensor) -> torch.Tensor:
    """Round a float64 tensor onto the activation grid and clamp it."""
    return (torch.round(x * float(_ONE)) / _ONE).clamp_(-ACT_LIMIT, ACT_LIMIT)


def weight_shift(weight: torch.Tensor) -> int:
    """Exponent s such that round(w * 2**s) keeps WEIGHT_BITS bits of the largest weight."""
    peak = float(weight.detach().abs().max())
    if peak == 0.0:
        return 0
    _, e = math.frexp(peak)  # peak = m * 2**e with 0.5 <= m < 1
    return WEIGHT_BITS - e


def quantize_conv(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """(integer weights wq = w * 2**s, bias on the activation grid scaled by 2**s, shift s) of
    a convolution for :func:`conv2d`: the bias is computed once here, not at every call."""
    s = weight_shift(weight)
    wq = torch.round(weight.detach().double() * 2.0**s)
    # |x| <= 2 * ACT_LIMIT (a clamped activation plus a residual), so |x| * 2**ACT_FRAC <= 2**22,
    # and |wq| < 2**WEIGHT_BITS: every partial sum stays below 2**53.
    assert wq[0].numel() * 2.0 ** (22 + WEIGHT_BITS) < 2.0**53, "layer too wide for exact mode"
    # b * 2**s rounded to a multiple of 2**-ACT_FRAC: added exactly to sums of x * wq
    bq = None if bias is None else torch.round(bias.detach().double() * 2.0 ** (s + ACT_FRAC)) * 2.0**-ACT_FRAC
    return wq, bq, s


def conv2d(x: torch.Tensor, q: tuple[torch.Tensor, torch.Tensor | None, int], dilation=1) -> torch.Tensor:
    """Convolution (no padding) of grid activations with quantized weights ``q``, exact in
    any summation order.

    Every product x * wq is a multiple of 2**-ACT_FRAC, and every partial sum stays below
    2**(53 - ACT_FRAC) in magnitude (see :func:`quantize_conv`), so float64 holds each one
    exactly: the result does not depend on the algorithm's order of summation. On the CPU
    torch's float64 convolution (im2col and a matrix product; no Winograd or FFT, which
    would bring in inexact fractions) is used; elsewhere an explicit im2col."""
    wq, bias, s = q
    b, _, h, w = x.shape
    o, _, kh, kw = wq.shape
    ho, wo = h - dilation * (kh - 1), w - dilation * (kw - 1)
    if ho == wo == 1 and dilation == 1:  # one output per image (the decoder's steps): one matrix product
        flat = wq.view(o, -1).t()
        acc = (torch.addmm(bias, x.reshape(b, -1), flat) if bias is not None else x.reshape(b, -1) @ flat)
        acc = acc.view(b, o, 1, 1)
    elif x.device.type == "cpu":
        acc = F.conv2d(x, wq, bias, dilation=dilation)
    else:
        taps = [x[:, :, i * dilation: i * dilation + ho, j * dilation: j * dilation + wo]
                for i in range(kh) for j in range(kw)]
        cols = torch.stack(taps, dim=-1).permute(0, 2, 3, 1, 4).reshape(b * ho * wo, -1)
        acc = (cols @ wq.view(o, -1).t()).view(b, ho, wo, o).permute(0, 3, 1, 2)
        if bias is not None:
            acc = acc + bias.view(1, -1, 1, 1)
    # acc is the value times 2**s: back to the activation grid, in place
    return acc.mul_(2.0 ** (ACT_FRAC - s)).round_().mul_(2.0**-ACT_FRAC).clamp_(-ACT_LIMIT, ACT_LIMIT)


def _lookup(table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    n = TABLE_RANGE * _ONE
    idx = (torch.round(x * float(_ONE)).clamp_(-n, n) + n).long()
    return torch.take(table, idx)


def gate(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) on the activation grid."""
    tanh, sig = gate_tables()
    return to_grid(_lookup(tanh, a) * _lookup(sig, b))


def softmax_weights(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Unnormalised, strictly positive weights exp(logit - max) from grid logits.

    The result is a pure function of the integer logits: identical on every machine.
    """
    d = logits - logits.amax(dim=dim, keepdim=True)
    k = torch.round(-d * float(_ONE)).clamp_(0, EXP_RANGE * _ONE).long()
    return exp_table()[k]


NORM_TABLE_BITS = 16  # the reciprocal-square-root table covers m in [1, 2**NORM_TABLE_BITS)
NORM_FRAC = 30  # its entries are floor(2**NORM_FRAC / sqrt(m))
NORM_MAX_GROUP = 512  # channels per normalised group: keeps every integer below 2**63


@lru_cache(maxsize=None)
def rsqrt_table() -> torch.Tensor:
    """floor(2**NORM_FRAC / sqrt(m)) for m = 0..2**NORM_TABLE_BITS - 1 (entry 0 unused), int64,
    computed with Python's integer square root: the same on every platform."""
    one = 1 << (2 * NORM_FRAC)
    return torch.tensor([0] + [math.isqrt(one // m) for m in range(1, 1 << NORM_TABLE_BITS)], dtype=torch.int64)


def group_norm(x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over each of ``groups`` contiguous groups of the channels
    of x (B, C, H, W), separately at every position; grid in, grid out.

    Integer arithmetic only (int64 tensors): with v = x * 2**ACT_FRAC, n channels in a group,
    S = sum v and Q = n sum v**2 - S**2 (= n**2 var in grid units), the result is
    (n v - S) / sqrt(Q + E) with E = eps n**2 2**(2 ACT_FRAC). The square root comes from
    :func:`rsqrt_table`: Q + E = m * 4**e with m < 2**NORM_TABLE_BITS (the low bits of
    Q + E dropped), then a multiplication and a rounding shift.
    """
    b, c, h, w = x.shape
    n = c // groups
    if n * groups != c or n > NORM_MAX_GROUP:
        raise ValueError(f"exact group_norm: {c} channels in {groups} groups (at most {NORM_MAX_GROUP} a group)")
    v = torch.round(x * float(_ONE)).long().view(b, groups, n, h, w)  # |v| <= 2**21
    s = v.sum(dim=2, keepdim=True)
    q = n * (v * v).sum(dim=2, keepdim=True) - s * s  # >= 0, < n**2 2**42 <= 2**60
    m = q + max(1, round(eps * n * n * float(_ONE) ** 2))
    # e = the smallest shift with m >> 2e < 2**NORM_TABLE_BITS. frexp of m as a float64
    # gives its bit length, or one more when the conversion rounds up: still a valid shift
    # (m >> 2e stays >= 2**(NORM_TABLE_BITS - 3)), and the conversion is deterministic.
    _, length = torch.frexp(m.double())
    e = torch.div(length.long() - NORM_TABLE_BITS + 1, 2, rounding_mode="floor").clamp_(min=0)
    r = rsqrt_table().to(m.device)[torch.bitwise_right_shift(m, 2 * e)]  # ~ 2**(NORM_FRAC + e) / sqrt(m)
    # |n v - S| <= sqrt(n m), so |t| <= sqrt(n) 2**(NORM_FRAC + e) < 2**62
    t = (n * v - s) * r
    shift = NORM_FRAC - ACT_FRAC + e
    half = torch.bitwise_left_shift(torch.ones_like(shift), shift - 1)
    y = torch.bitwise_right_shift(t + half, shift)  # round half up, in grid units
    return (y.view(b, c, h, w).double() / _ONE).clamp_(-ACT_LIMIT, ACT_LIMIT)


def scale_shift(x: torch.Tensor, q: tuple[torch.Tensor, torch.Tensor | None, int]) -> torch.Tensor:
    """x * weight + bias per channel, with ``q`` = :func:`quantize_conv` of the weights
    viewed as (C, 1, 1, 1): a depthwise 1x1 convolution, exact like :func:`conv2d`."""
    wq, bq, s = q
    acc = torch.round(x * float(_ONE)) * wq.view(1, -1, 1, 1)  # |x| 2**12 <= 2**17, |wq| < 2**15
    if bq is not None:
        acc = acc + bq.view(1, -1, 1, 1) * float(_ONE)  # integer units, like acc
    return (torch.round(acc * 2.0**-s) / _ONE).clamp_(-ACT_LIMIT, ACT_LIMIT)


# ------------------------------------------------------- discretized logistic mixture
#
# Log-probabilities are computed in int64 fixed point: logistic arguments t in units of
# 2**-ACT_FRAC, logarithms in units of 2**-LOG_FRAC. Every table below is built from
# Python integers and ``decimal`` (whose exp and ln are correctly rounded), so the
# log-probabilities are the same bits on every machine, for any batch or crop (the tables
# are :mod:`arcodec.fixed`'s).


@lru_cache(maxsize=None)
def exp_scale_table() -> torch.Tensor:
    """:func:`arcodec.fixed.exp_scale_table` (int64)."""
    return _tensor(fixed.exp_scale_table())


@lru_cache(maxsize=None)
def softplus_neg_table() -> torch.Tensor:
    """:func:`arcodec.fixed.softplus_neg_table` (int64)."""
    return _tensor(fixed.softplus_neg_table())


@lru_cache(maxsize=None)
def log_mantissa_table() -> torch.Tensor:
    """:func:`arcodec.fixed.log_mantissa_table` (int64)."""
    return _tensor(fixed.log_mantissa_table())


def _log_mantissa_table_decimal() -> torch.Tensor:
    """:func:`log_mantissa_table` entry by entry in ``decimal`` (the reference, for the tests)."""
    return _tensor(fixed.log_mantissa_table_decimal())


@lru_cache(maxsize=None)
def log1m_exp_table(levels: int) -> torch.Tensor:
    """:func:`arcodec.fixed.log1m_exp_table` (int64)."""
    return _tensor(fixed.log1m_exp_table(levels))


@lru_cache(maxsize=None)
def _exp_weights_int() -> torch.Tensor:
    """:func:`exp_table` as exact int64 multiples of 2**-EXP_FRAC."""
    return torch.round(exp_table() * 2.0**EXP_FRAC).long()


def _log_sigmoid_q(t: torch.Tensor) -> torch.Tensor:
    """ln sigmoid(t) in LOG_FRAC units for int64 t in ACT_FRAC units:
    min(t, 0) - ln(1 + exp(-|t|))."""
    table = softplus_neg_table().to(t.device)
    idx = t.abs().clamp_(max=len(table) - 1)
    return torch.clamp(t, max=0) * (1 << (LOG_FRAC - ACT_FRAC)) - table[idx]


def _log_q(s: torch.Tensor, frac: int) -> torch.Tensor:
    """ln(s / 2**frac) in LOG_FRAC units for int64 1 <= s < 2**53: the LOG_MANT_BITS leading
    bits of s (rounded) through :func:`log_mantissa_table`, plus a multiple of ln 2."""
    _, n = torch.frexp(s.double())  # s < 2**53: exact, n = bit length of s
    shift = (n.long() - LOG_MANT_BITS).clamp_(min=0)
    half = torch.bitwise_left_shift(torch.ones_like(shift), (shift - 1).clamp(min=0)) * (shift > 0)
    m = torch.bitwise_right_shift(s + half, shift)  # in [2**(B-1), 2**B], or below when s is small
    low = m < (1 << (LOG_MANT_BITS - 1))  # only when s < 2**(B-1): scale it up instead
    up = torch.where(low, LOG_MANT_BITS - n.long(), torch.zeros_like(shift))
    m = torch.where(low, torch.bitwise_left_shift(s, up), m)
    ln2 = ln2_q()
    table = log_mantissa_table().to(s.device)
    return table[m - (1 << (LOG_MANT_BITS - 1))] + (shift - up + LOG_MANT_BITS - 1 - frac) * ln2


def _logsumexp_q(v: torch.Tensor, dim: int) -> torch.Tensor:
    """ln sum exp over ``dim`` of int64 v in LOG_FRAC units: the maximum plus the ln of a sum
    of :func:`exp_table` weights of the rounded differences (exact integers in any order)."""
    top = v.amax(dim=dim, keepdim=True)
    k = torch.bitwise_right_shift(top - v + (1 << (LOG_FRAC - ACT_FRAC - 1)), LOG_FRAC - ACT_FRAC)
    table = _exp_weights_int().to(v.device)
    w = torch.where(k < len(table), table[k.clamp(max=len(table) - 1)], torch.zeros_like(k))
    return top.squeeze(dim) + _log_q(w.sum(dim=dim), EXP_FRAC)


def _mixture_chunk(pi: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor, levels: int) -> torch.Tensor:
    """(P, M) int64 parameters in ACT_FRAC units -> (P, K) int64 log-probabilities in LOG_FRAC units."""
    K, r = levels, LOG_SCALE_RANGE * _ONE
    up_shift = 1 << (LOG_FRAC - ACT_FRAC)
    log_pi = pi * up_shift
    log_pi = log_pi - _logsumexp_q(log_pi, 1).unsqueeze(1)  # (P, M)
    s = log_s.clamp(-r, r) + r
    inv = exp_scale_table().to(pi.device)[2 * r - s]  # 1 / scale = exp(-log s), SCALE_FRAC units
    j = torch.arange(K - 1, device=pi.device)
    # t_j = (edge_j - mu) / scale, edge_j = (2j + 2 - K) / (K - 1) the upper edge of bin j
    num = ((2 * j + 2 - K) * _ONE).view(1, 1, -1) - (mu * (K - 1)).unsqueeze(2)  # edge - mu, 2**-12 / (K-1) units
    den = (K - 1) << SCALE_FRAC
    t = torch.div(2 * num * inv.unsqueeze(2) + den, 2 * den, rounding_mode="floor")  # (P, M, K-1), ACT_FRAC units
    upper = _log_sigmoid_q(t)  # ln sigmoid(t_j): ln P(value <= edge j)
    lower = _log_sigmoid_q(-t)  # ln (1 - sigmoid(t_j))
    gap = log1m_exp_table(K).to(pi.device)[s].unsqueeze(2)  # ln(1 - exp(-(t_j - t_{j-1})))
    # bin k: sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-(a - b))); tails: one CDF
    comp = torch.cat([upper[:, :, :1], upper[:, :, 1:] + lower[:, :, :-1] + gap, lower[:, :, -1:]], dim=2)
    return _logsumexp_q(log_pi.unsqueeze(2) + comp, 1)  # (P, K)


MIXTURE_CHUNK = 1 << 22  # positions x components x levels evaluated at a time


def logistic_mixture(pi: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor, levels: int) -> torch.Tensor:
    """Discretized logistic mixture log-probabilities on the activation grid.

    pi (mixture logits), mu (means in [-1, 1] units: level k is 2k / (K-1) - 1) and log_s
    (log scales), each (B, M, C, H, W) on the activation grid -> (B, K, C, H, W) float64 on
    the grid. Integer arithmetic throughout; every position is computed on its own, so the
    result does not depend on the batch, the crop or the device."""
    if not 2 <= levels <= MIXTURE_MAX_LEVELS:
        raise ValueError(f"exact logistic mixture: levels must be 2..{MIXTURE_MAX_LEVELS}, got {levels}")
    b, m, c, h, w = pi.shape
    if m > MIXTURE_MAX_COMPONENTS:
        raise ValueError(f"exact logistic mixture: at most {MIXTURE_MAX_COMPONENTS} components, got {m}")

    def flat(x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * float(_ONE)).long().permute(0, 2, 3, 4, 1).reshape(-1, m)

    p, u, s = flat(pi), flat(mu), flat(log_s)
    step = max(1, MIXTURE_CHUNK // (m * levels))
    out = torch.cat([_mixture_chunk(p[i: i + step], u[i: i + step], s[i: i + step], levels)
                     for i in range(0, len(p), step)]) if len(p) else torch.zeros(0, levels, dtype=torch.int64)
    out = to_grid(out.double() * 2.0**-LOG_FRAC)  # (B*C*H*W, K)
    return out.view(b, c, h, w, levels).permute(0, 4, 1, 2, 3).contiguous()
