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
from decimal import Decimal, getcontext, localcontext
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

ACT_FRAC = 12  # activations are multiples of 2**-12
ACT_LIMIT = 2.0**9  # and lie in [-512, 512]
WEIGHT_BITS = 15  # significant bits kept for the largest weight of a layer
TABLE_RANGE = 16  # tanh/sigmoid inputs are clamped to [-16, 16]
TABLE_FRAC = 24  # table outputs are multiples of 2**-24
EXP_FRAC = 44  # softmax weights exp(d) are multiples of 2**-44, d in [-EXP_RANGE, 0]
EXP_RANGE = 24

_ONE = 2**ACT_FRAC
FIXED_BITS = 100  # bits of the integer fixed-point exponential


@lru_cache(maxsize=None)
def exp_neg_fixed(n: int) -> tuple[int, ...]:
    """exp(-k / 2**ACT_FRAC) * 2**FIXED_BITS for k = 0..n, computed with integers only (a
    recurrence from k = 0, so a shorter table is the start of a longer one: every length up
    to the gate tables' is cut from theirs)."""
    longest = 2 * TABLE_RANGE * _ONE
    if n < longest:
        return exp_neg_fixed(longest)[: n + 1]
    getcontext().prec = 50
    step = int((Decimal(-1) / _ONE).exp() * (Decimal(2) ** FIXED_BITS))
    out = [1 << FIXED_BITS]
    half = 1 << (FIXED_BITS - 1)
    for _ in range(n):
        out.append((out[-1] * step + half) >> FIXED_BITS)
    return tuple(out)


def _to_grid(values, frac: int) -> torch.Tensor:
    t = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.float64)
    return torch.round(t * 2.0**frac) * 2.0**-frac


@lru_cache(maxsize=None)
def gate_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """tanh and sigmoid at t = k / 2**ACT_FRAC, k in [-R, R], on the 2**-TABLE_FRAC grid.

    The same IEEE operations as :func:`_gate_tables_loop` (the definition, entry by entry),
    elementwise over arrays: the same bits, in a tenth of the time every coding process
    pays at start-up."""
    n = TABLE_RANGE * _ONE
    e = exp_neg_fixed(2 * n)
    scale = 2.0**-FIXED_BITS
    a = torch.from_numpy(np.fromiter(map(float, e[: n + 1]), np.float64, n + 1)) * scale  # int -> float: rounded
    b = torch.from_numpy(np.fromiter(map(float, e[0: 2 * n + 1: 2]), np.float64, n + 1)) * scale
    pos = 1.0 / (1.0 + a)  # k >= 0
    neg = a / (1.0 + a)  # k < 0, at |k|
    sig = torch.cat([neg[1:].flip(0), pos])
    th = (1.0 - b) / (1.0 + b)
    tanh = torch.cat([-th[1:].flip(0), th])  # copysign: -x exactly
    tanh[n] = 0.0  # copysign(0.0, 0) is +0.0
    return _to_grid(tanh, TABLE_FRAC), _to_grid(sig, TABLE_FRAC)


def _gate_tables_loop() -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gate_tables` entry by entry (the reference, for the tests)."""
    n = TABLE_RANGE * _ONE
    e = exp_neg_fixed(2 * n)
    scale = 2.0**-FIXED_BITS
    sig, tanh = [], []
    for k in range(-n, n + 1):
        # sigmoid(t) = 1 / (1 + exp(-t)); for t < 0 use exp(t) / (1 + exp(t))
        a = e[abs(k)] * scale
        sig.append(1.0 / (1.0 + a) if k >= 0 else a / (1.0 + a))
        # tanh(t) = (1 - exp(-2|t|)) / (1 + exp(-2|t|)) * sign(t)
        b = e[2 * abs(k)] * scale
        tanh.append(math.copysign((1.0 - b) / (1.0 + b), k))
    return _to_grid(tanh, TABLE_FRAC), _to_grid(sig, TABLE_FRAC)


@lru_cache(maxsize=None)
def exp_table() -> torch.Tensor:
    """exp(-k / 2**ACT_FRAC) on the 2**-EXP_FRAC grid for k = 0..EXP_RANGE*2**ACT_FRAC."""
    n = EXP_RANGE * _ONE
    e = exp_neg_fixed(n)
    shift = FIXED_BITS - EXP_FRAC
    return torch.tensor([(v + (1 << (shift - 1))) >> shift for v in e], dtype=torch.float64) * 2.0**-EXP_FRAC


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
# log-probabilities are the same bits on every machine, for any batch or crop.

LOG_FRAC = 24  # fixed-point logarithms are multiples of 2**-24
SCALE_FRAC = 20  # 1 / s = exp(-log s) is a multiple of 2**-20
LOG_SCALE_RANGE = 7  # log s is clamped to [-7, 7] (both paths)
SOFTPLUS_RANGE = 18  # log(1 + exp(-t)) < 2**-25 beyond t = 18: 0 in LOG_FRAC units
LOG_MANT_BITS = 16  # ln of a sum: its 16 leading bits (rounded), then a table
MIXTURE_MAX_LEVELS = 1024  # keeps (edge - mu) * (1 / s) below 2**63 in grid units
MIXTURE_MAX_COMPONENTS = 256  # keeps a sum of M weights exp(.) (2**-44 units) below 2**53
_DEC_PREC = 24  # digits: far more than the 2**-24 of the results needs


def _round_q(value: Decimal, frac: int) -> int:
    """round(value * 2**frac) (half away from zero; decimal makes ties deterministic)."""
    return int((value * (Decimal(2) ** frac)).to_integral_value(rounding="ROUND_HALF_UP"))


@lru_cache(maxsize=None)
def exp_scale_table() -> torch.Tensor:
    """round(exp(k / 2**ACT_FRAC) * 2**SCALE_FRAC) for k in [-R, R] * 2**ACT_FRAC (R =
    LOG_SCALE_RANGE), int64, from the integer exponential: entry k + R * 2**ACT_FRAC."""
    n = LOG_SCALE_RANGE * _ONE
    e = exp_neg_fixed(2 * TABLE_RANGE * _ONE)  # the gate tables' cache entry
    shift = FIXED_BITS - SCALE_FRAC
    neg = [(e[k] + (1 << (shift - 1))) >> shift for k in range(n, 0, -1)]  # exp(-k), k = n..1
    pos = [((1 << (FIXED_BITS + SCALE_FRAC)) + e[k] // 2) // e[k] for k in range(0, n + 1)]  # exp(+k)
    return torch.tensor(neg + pos, dtype=torch.int64)


@lru_cache(maxsize=None)
def softplus_neg_table() -> torch.Tensor:
    """round(ln(1 + exp(-k / 2**ACT_FRAC)) * 2**LOG_FRAC) for k = 0..SOFTPLUS_RANGE * 2**ACT_FRAC
    (the last entry is 0), int64."""
    n = SOFTPLUS_RANGE * _ONE
    e = exp_neg_fixed(2 * TABLE_RANGE * _ONE)
    one = Decimal(1 << FIXED_BITS)
    with localcontext() as ctx:
        ctx.prec = _DEC_PREC
        out = [_round_q(((one + e[k]) / one).ln(), LOG_FRAC) for k in range(n)]
    return torch.tensor(out + [0], dtype=torch.int64)


@lru_cache(maxsize=None)
def log_mantissa_table() -> torch.Tensor:
    """round(ln(m / 2**(B-1)) * 2**LOG_FRAC) for m = 2**(B-1)..2**B (B = LOG_MANT_BITS), int64:
    entry m - 2**(B-1).

    Correctly rounded, and fast: float64's logarithm is within 1e-8 of the exact value here
    (values below 2**24 units; a libm's error is a few units in the last place), so it
    rounds correctly wherever the value is farther than 1e-6 from a tie; the few entries that
    near a tie are computed again in ``decimal``. (The plain ``decimal`` table costs about a
    second, paid by every process that codes a photo.)"""
    half = 1 << (LOG_MANT_BITS - 1)
    m = torch.arange(half, 2 * half + 1, dtype=torch.float64)
    v = torch.log(m / half) * 2.0**LOG_FRAC  # >= 0
    out = torch.floor(v + 0.5).to(torch.int64)
    near = torch.nonzero((v - torch.floor(v) - 0.5).abs() < 1e-6).flatten().tolist()
    if near:
        with localcontext() as ctx:
            ctx.prec = _DEC_PREC
            for i in near:
                out[i] = _round_q((Decimal(half + i) / half).ln(), LOG_FRAC)
    return out


def _log_mantissa_table_decimal() -> torch.Tensor:
    """:func:`log_mantissa_table` entry by entry in ``decimal`` (the reference, for the tests)."""
    half = 1 << (LOG_MANT_BITS - 1)
    with localcontext() as ctx:
        ctx.prec = _DEC_PREC
        out = [_round_q((Decimal(m) / half).ln(), LOG_FRAC) for m in range(half, 2 * half + 1)]
    return torch.tensor(out, dtype=torch.int64)


@lru_cache(maxsize=None)
def log1m_exp_table(levels: int) -> torch.Tensor:
    """round(ln(1 - exp(-d)) * 2**LOG_FRAC), d = 2 exp(-k / 2**ACT_FRAC) / (levels - 1) the
    width of a bin over the scale s = exp(k / 2**ACT_FRAC), for k in [-R, R] * 2**ACT_FRAC
    (entry k + R * 2**ACT_FRAC), int64. Entries whose value rounds to 0 (d > 18) are 0."""
    n = LOG_SCALE_RANGE * _ONE
    with localcontext() as ctx:
        ctx.prec = _DEC_PREC
        two = Decimal(2) / (levels - 1)
        out = []
        for k in range(-n, n + 1):
            d = two * (Decimal(-k) / _ONE).exp()
            out.append(0 if d > SOFTPLUS_RANGE else _round_q((1 - (-d).exp()).ln(), LOG_FRAC))
    return torch.tensor(out, dtype=torch.int64)


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


@lru_cache(maxsize=None)
def ln2_q() -> int:
    """round(ln 2 * 2**LOG_FRAC)."""
    with localcontext() as ctx:
        ctx.prec = _DEC_PREC
        return _round_q(Decimal(2).ln(), LOG_FRAC)


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
