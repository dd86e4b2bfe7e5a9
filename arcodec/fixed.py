"""The exact arithmetic's constants and integer tables: Python integers, ``decimal`` and numpy.

Everything a decoder needs to reproduce the coder's probabilities bit for bit is defined
here once, without torch: the fixed-point grids, the integer exponential every
non-linearity comes from, and the tables built from it (tanh and sigmoid, exp of the
scales, ln of mantissas, ...). :mod:`arcodec.exact` (the models' exact path, in torch),
:mod:`arcodec.codec.engine` and :mod:`arcodec.codec.mixture` (the integer engines, in numpy
and numba) all read their tables from this module, so a photo is decoded without importing
torch and the same tables serve training-time checks.

Each table is a pure function of integers: the same on every platform. Where a table uses
floating point (the gate tables: a division per entry; the mantissa logarithm), the
operations are single IEEE operations, correctly rounded everywhere, or the result is
checked against ``decimal`` where it could round the other way.
"""

from __future__ import annotations

import math
from decimal import Decimal, getcontext, localcontext
from functools import lru_cache

import numpy as np

ACT_FRAC = 12  # activations are multiples of 2**-12
ACT_LIMIT = 2.0**9  # and lie in [-512, 512]
WEIGHT_BITS = 15  # significant bits kept for the largest weight of a layer
TABLE_RANGE = 16  # tanh/sigmoid inputs are clamped to [-16, 16]
TABLE_FRAC = 24  # table outputs are multiples of 2**-24
EXP_FRAC = 44  # softmax weights exp(d) are multiples of 2**-44, d in [-EXP_RANGE, 0]
EXP_RANGE = 24
FIXED_BITS = 100  # bits of the integer fixed-point exponential

# the discretized logistic mixture's fixed point: logistic arguments t in units of
# 2**-ACT_FRAC, logarithms in units of 2**-LOG_FRAC
LOG_FRAC = 24  # fixed-point logarithms are multiples of 2**-24
SCALE_FRAC = 20  # 1 / s = exp(-log s) is a multiple of 2**-20
LOG_SCALE_RANGE = 7  # log s is clamped to [-7, 7] (both paths)
SOFTPLUS_RANGE = 18  # log(1 + exp(-t)) < 2**-25 beyond t = 18: 0 in LOG_FRAC units
LOG_MANT_BITS = 16  # ln of a sum: its 16 leading bits (rounded), then a table
MIXTURE_MAX_LEVELS = 1024  # keeps (edge - mu) * (1 / s) below 2**63 in grid units
MIXTURE_MAX_COMPONENTS = 256  # keeps a sum of M weights exp(.) (2**-44 units) below 2**53
DEC_PREC = 24  # decimal digits: far more than the 2**-24 of the results needs

ONE = 2**ACT_FRAC


@lru_cache(maxsize=None)
def exp_neg_fixed(n: int) -> tuple[int, ...]:
    """exp(-k / 2**ACT_FRAC) * 2**FIXED_BITS for k = 0..n, computed with integers only (a
    recurrence from k = 0, so a shorter table is the start of a longer one: every length up
    to the gate tables' is cut from theirs)."""
    longest = 2 * TABLE_RANGE * ONE
    if n < longest:
        return exp_neg_fixed(longest)[: n + 1]
    getcontext().prec = 50
    step = int((Decimal(-1) / ONE).exp() * (Decimal(2) ** FIXED_BITS))
    out = [1 << FIXED_BITS]
    half = 1 << (FIXED_BITS - 1)
    for _ in range(n):
        out.append((out[-1] * step + half) >> FIXED_BITS)
    return tuple(out)


def to_grid(values, frac: int) -> np.ndarray:
    """Float64 values rounded (half to even) onto the 2**-frac grid."""
    return np.round(np.asarray(values, dtype=np.float64) * 2.0**frac) * 2.0**-frac


@lru_cache(maxsize=None)
def gate_tables() -> tuple[np.ndarray, np.ndarray]:
    """tanh and sigmoid at t = k / 2**ACT_FRAC, k in [-R, R], on the 2**-TABLE_FRAC grid
    (float64; read-only: they are shared).

    The same IEEE operations as :func:`gate_tables_loop` (the definition, entry by entry),
    elementwise over arrays: the same bits, in a tenth of the time every coding process
    pays at start-up."""
    n = TABLE_RANGE * ONE
    e = exp_neg_fixed(2 * n)
    scale = 2.0**-FIXED_BITS
    a = np.fromiter(map(float, e[: n + 1]), np.float64, n + 1) * scale  # int -> float: rounded
    b = np.fromiter(map(float, e[0: 2 * n + 1: 2]), np.float64, n + 1) * scale
    pos = 1.0 / (1.0 + a)  # k >= 0
    neg = a / (1.0 + a)  # k < 0, at |k|
    sig = np.concatenate([neg[1:][::-1], pos])
    th = (1.0 - b) / (1.0 + b)
    tanh = np.concatenate([-th[1:][::-1], th])  # copysign: -x exactly
    tanh[n] = 0.0  # copysign(0.0, 0) is +0.0
    return _frozen(to_grid(tanh, TABLE_FRAC)), _frozen(to_grid(sig, TABLE_FRAC))


def gate_tables_loop() -> tuple[np.ndarray, np.ndarray]:
    """:func:`gate_tables` entry by entry (the reference, for the tests)."""
    n = TABLE_RANGE * ONE
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
    return to_grid(tanh, TABLE_FRAC), to_grid(sig, TABLE_FRAC)


@lru_cache(maxsize=None)
def exp_table() -> np.ndarray:
    """exp(-k / 2**ACT_FRAC) on the 2**-EXP_FRAC grid for k = 0..EXP_RANGE*2**ACT_FRAC (float64)."""
    n = EXP_RANGE * ONE
    e = exp_neg_fixed(n)
    shift = FIXED_BITS - EXP_FRAC
    return _frozen(np.array([(v + (1 << (shift - 1))) >> shift for v in e], dtype=np.float64) * 2.0**-EXP_FRAC)


def round_q(value: Decimal, frac: int) -> int:
    """round(value * 2**frac) (half away from zero; decimal makes ties deterministic)."""
    return int((value * (Decimal(2) ** frac)).to_integral_value(rounding="ROUND_HALF_UP"))


@lru_cache(maxsize=None)
def exp_scale_table() -> np.ndarray:
    """round(exp(k / 2**ACT_FRAC) * 2**SCALE_FRAC) for k in [-R, R] * 2**ACT_FRAC (R =
    LOG_SCALE_RANGE), int64, from the integer exponential: entry k + R * 2**ACT_FRAC."""
    n = LOG_SCALE_RANGE * ONE
    e = exp_neg_fixed(2 * TABLE_RANGE * ONE)  # the gate tables' cache entry
    shift = FIXED_BITS - SCALE_FRAC
    neg = [(e[k] + (1 << (shift - 1))) >> shift for k in range(n, 0, -1)]  # exp(-k), k = n..1
    pos = [((1 << (FIXED_BITS + SCALE_FRAC)) + e[k] // 2) // e[k] for k in range(0, n + 1)]  # exp(+k)
    return _frozen(np.array(neg + pos, dtype=np.int64))


@lru_cache(maxsize=None)
def softplus_neg_table() -> np.ndarray:
    """round(ln(1 + exp(-k / 2**ACT_FRAC)) * 2**LOG_FRAC) for k = 0..SOFTPLUS_RANGE * 2**ACT_FRAC
    (the last entry is 0), int64."""
    n = SOFTPLUS_RANGE * ONE
    e = exp_neg_fixed(2 * TABLE_RANGE * ONE)
    one = Decimal(1 << FIXED_BITS)
    with localcontext() as ctx:
        ctx.prec = DEC_PREC
        out = [round_q(((one + e[k]) / one).ln(), LOG_FRAC) for k in range(n)]
    return _frozen(np.array(out + [0], dtype=np.int64))


@lru_cache(maxsize=None)
def log_mantissa_table() -> np.ndarray:
    """round(ln(m / 2**(B-1)) * 2**LOG_FRAC) for m = 2**(B-1)..2**B (B = LOG_MANT_BITS), int64:
    entry m - 2**(B-1).

    Correctly rounded, and fast: float64's logarithm is within 1e-8 of the exact value here
    (values below 2**24 units; a libm's error is a few units in the last place), so it
    rounds correctly wherever the value is farther than 1e-6 from a tie; the few entries that
    near a tie are computed again in ``decimal``. (The plain ``decimal`` table costs about a
    second, paid by every process that codes a photo.)"""
    half = 1 << (LOG_MANT_BITS - 1)
    m = np.arange(half, 2 * half + 1, dtype=np.float64)
    v = np.log(m / half) * 2.0**LOG_FRAC  # >= 0
    out = np.floor(v + 0.5).astype(np.int64)
    near = np.flatnonzero(np.abs(v - np.floor(v) - 0.5) < 1e-6).tolist()
    if near:
        with localcontext() as ctx:
            ctx.prec = DEC_PREC
            for i in near:
                out[i] = round_q((Decimal(half + i) / half).ln(), LOG_FRAC)
    return _frozen(out)


def log_mantissa_table_decimal() -> np.ndarray:
    """:func:`log_mantissa_table` entry by entry in ``decimal`` (the reference, for the tests)."""
    half = 1 << (LOG_MANT_BITS - 1)
    with localcontext() as ctx:
        ctx.prec = DEC_PREC
        out = [round_q((Decimal(m) / half).ln(), LOG_FRAC) for m in range(half, 2 * half + 1)]
    return np.array(out, dtype=np.int64)


@lru_cache(maxsize=None)
def log1m_exp_table(levels: int) -> np.ndarray:
    """round(ln(1 - exp(-d)) * 2**LOG_FRAC), d = 2 exp(-k / 2**ACT_FRAC) / (levels - 1) the
    width of a bin over the scale s = exp(k / 2**ACT_FRAC), for k in [-R, R] * 2**ACT_FRAC
    (entry k + R * 2**ACT_FRAC), int64. Entries whose value rounds to 0 (d > 18) are 0."""
    n = LOG_SCALE_RANGE * ONE
    with localcontext() as ctx:
        ctx.prec = DEC_PREC
        two = Decimal(2) / (levels - 1)
        out = []
        for k in range(-n, n + 1):
            d = two * (Decimal(-k) / ONE).exp()
            out.append(0 if d > SOFTPLUS_RANGE else round_q((1 - (-d).exp()).ln(), LOG_FRAC))
    return _frozen(np.array(out, dtype=np.int64))


@lru_cache(maxsize=None)
def ln2_q() -> int:
    """round(ln 2 * 2**LOG_FRAC)."""
    with localcontext() as ctx:
        ctx.prec = DEC_PREC
        return round_q(Decimal(2).ln(), LOG_FRAC)


def log_q(s: np.ndarray, frac: int) -> np.ndarray:
    """ln(s / 2**frac) in LOG_FRAC units for int64 1 <= s < 2**53: the LOG_MANT_BITS leading
    bits of s (rounded) through :func:`log_mantissa_table`, plus a multiple of ln 2."""
    s = np.asarray(s, dtype=np.int64)
    _, n = np.frexp(s.astype(np.float64))  # s < 2**53: exact, n = bit length of s
    n = n.astype(np.int64)
    shift = np.maximum(n - LOG_MANT_BITS, 0)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    m = np.right_shift(s + half, shift)  # in [2**(B-1), 2**B], or below when s is small
    low = m < (1 << (LOG_MANT_BITS - 1))  # only when s < 2**(B-1): scale it up instead
    up = np.where(low, LOG_MANT_BITS - n, 0)
    m = np.where(low, np.left_shift(s, up), m)
    return log_mantissa_table()[m - (1 << (LOG_MANT_BITS - 1))] + (shift - up + LOG_MANT_BITS - 1 - frac) * ln2_q()


def _frozen(a: np.ndarray) -> np.ndarray:
    """A cached table, read-only: every caller shares it."""
    a.setflags(write=False)
    return a
