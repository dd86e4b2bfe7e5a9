"""Integer frequency tables of discretized logistic mixtures: what the coder sees.

Given each sub-pixel's mixture parameters as integers on the activation grid (logits,
means in [-1, 1] units and log scales, all multiples of 2**-12), :func:`frequencies`
returns a table of K positive integer frequencies that sum to 2**TABLE_BITS:

    v_m    = round(2**15 exp(logit_m - max logit))        (0 beyond 16 nats below the max)
    w_m    = floor(2**15 v_m / sum v), the largest component taking the rest: sum w = 2**15
    t_mj   = floor((edge_j - mu_m) / s_m)  in 2**-12 units, edge_j = (2j + 2 - K) / (K - 1):
             (num_j A_m) >> 36 with num_j = (K - 1) (edge_j - mu_m) 2**12 (an integer) and
             A_m = floor(2**36 / (s_m (K - 1))) from the 2**-20 table of 1 / s
    cdf_j  = sum_m w_m round(2**16 sigmoid(t_mj))         (j = 0..K-2, the bins' upper edges),
             the components broader than 8, 16, 32 levels (t rising by less than 512, 256,
             128 units per edge) summed only at every 2nd, 4th, 8th edge and interpolated
             linearly in between (floor), each stride's sum once
    q_j    = floor(cdf_j (2**24 - K) / 2**31) + j + 1,    q_{-1} = 0, q_{K-1} = 2**24
    freq_k = q_k - q_{k-1}  >= 1

Every step is integer arithmetic with tables built from Python integers (:mod:`exact`), so
the table is the same on every machine, thread count and batch, and every level keeps at
least one unit (the uniform floor the models train with, ``local.floor_eps``).

Two implementations give identical integers: a numba kernel that visits, for each
component, only the edges where its sigmoid is neither 0 nor 1 (t rises by a constant step
from edge to edge, so that range is two integer divisions; inside it, an addition and a
shift per edge), the default when numba is installed; and a numpy one over every edge (the
reference, and the fallback).
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from arcodec import exact

TABLE_BITS = 24  # the tables' total: 2**24, constriction's own precision
SIG_BITS = 16  # sigmoid values are multiples of 2**-16
WEIGHT_BITS = 15  # mixture weights are multiples of 2**-15 of the largest
MU_LIMIT = 4 << exact.ACT_FRAC  # means are clamped to [-4, 4]: keeps every product below 2**63
_N = exact.TABLE_RANGE << exact.ACT_FRAC  # sigmoid arguments are clamped to [-16, 16]
_R = exact.LOG_SCALE_RANGE << exact.ACT_FRAC
MAX_COMPONENTS = 64
SLOPE_SHIFT = 36  # t = (num * A) >> SLOPE_SHIFT; |num A| < 2**61 for K <= 1024


@lru_cache(maxsize=None)
def sigmoid_table() -> np.ndarray:
    """round(2**16 sigmoid(k / 2**12)) for k in [-16, 16] * 2**12 (entry k + 16 * 2**12),
    int64, from the integer exponential; monotone, 0 at the left end, 2**16 at the right."""
    e = exact.exp_neg_fixed(2 * _N)  # exp(-k / 2**12) * 2**100, the gate tables' entries
    one = 1 << exact.FIXED_BITS
    out = []
    for k in range(-_N, _N + 1):
        a = e[abs(k)]
        num = one if k >= 0 else a  # sigmoid(t) = 1 / (1 + e^-t) = e^t / (1 + e^t)
        den = one + a
        out.append(((num << SIG_BITS) + den // 2) // den)
    out[0], out[-1] = 0, 1 << SIG_BITS
    return np.array(out, dtype=np.int64)


@lru_cache(maxsize=None)
def weight_table() -> np.ndarray:
    """round(2**15 exp(-k / 2**12)) for k = 0..16 * 2**12, int64 (the last entries are 0)."""
    e = exact.exp_neg_fixed(2 * _N)
    shift = exact.FIXED_BITS - WEIGHT_BITS
    return np.array([(e[k] + (1 << (shift - 1))) >> shift for k in range(_N + 1)], dtype=np.int64)


@lru_cache(maxsize=None)
def inverse_scale_table() -> np.ndarray:
    """round(2**20 exp(k / 2**12)) for k in [-7, 7] * 2**12 (entry k + 7 * 2**12), int64."""
    return exact.exp_scale_table().numpy().astype(np.int64)


@lru_cache(maxsize=None)
def _saturation() -> tuple[int, int]:
    """(first t whose sigmoid entry is above 0, first t whose entry is 2**16), 2**-12 units."""
    sig = sigmoid_table()
    return int(np.argmax(sig > 0)) - _N, int(np.argmax(sig == sig[-1])) - _N


def _prepare(logits, mu, log_s):
    lg = np.ascontiguousarray(logits, dtype=np.int64)
    mu = np.clip(np.ascontiguousarray(mu, dtype=np.int64), -MU_LIMIT, MU_LIMIT)
    ls = np.clip(np.ascontiguousarray(log_s, dtype=np.int64), -_R, _R)
    if not (lg.shape == mu.shape == ls.shape) or lg.ndim != 2:
        raise ValueError(f"mixture parameters must be three (N, M) arrays, got {lg.shape}, {mu.shape}, {ls.shape}")
    if lg.shape[1] > MAX_COMPONENTS:
        raise ValueError(f"at most {MAX_COMPONENTS} components, got {lg.shape[1]}")
    return lg, mu, ls


def _stride_shift(dt):
    """log2 of the edge stride of a component whose t rises by ``dt`` (2**-12 units) per edge:
    a component broader than 8, 16 or 32 levels is sampled every 2, 4 or 8 edges (stride /
    scale at most 1/4: the logistic's curvature over a stride moves the table by less than
    a thousandth of the component's weight) and interpolated."""
    return np.where(dt < 128, 3, np.where(dt < 256, 2, np.where(dt < 512, 1, 0)))


def _weights(lg: np.ndarray, wt: np.ndarray) -> np.ndarray:
    """Mixture weights (P, M) that sum to 2**WEIGHT_BITS exactly (see the module docstring)."""
    top = lg.argmax(axis=1)
    d = lg.max(axis=1, keepdims=True) - lg
    v = np.where(d <= _N, wt[np.minimum(d, _N)], 0)
    w = (v << WEIGHT_BITS) // v.sum(axis=1, keepdims=True)
    rows = np.arange(len(lg))
    w[rows, top] = 0
    w[rows, top] = (1 << WEIGHT_BITS) - w.sum(axis=1)
    return w


def frequencies_numpy(logits, mu, log_s, levels: int, chunk: int = 1 << 21) -> np.ndarray:
    """The reference implementation of :func:`frequencies` (every edge of every component)."""
    lg, mu, ls = _prepare(logits, mu, log_s)
    n, m = lg.shape
    K = levels
    sig, wt, inv_t = sigmoid_table(), weight_table(), inverse_scale_table()
    out = np.empty((n, K), dtype=np.int64)
    j = np.arange(K - 1, dtype=np.int64)
    step = max(1, chunk // (m * K))
    for a in range(0, n, step):
        b = min(n, a + step)
        w = _weights(lg[a:b], wt)
        slope = (inv_t[_R - ls[a:b]] << (SLOPE_SHIFT - 20)) // (K - 1)  # 2**36 / (s (K - 1))
        num = ((2 * j + 2 - K) << exact.ACT_FRAC)[None, None, :] - (mu[a:b] * (K - 1))[:, :, None]
        t = (num * slope[:, :, None]) >> SLOPE_SHIFT  # floor, 2**-12 units
        sh = _stride_shift((slope << 13) >> SLOPE_SHIFT)  # (P, M): 0 narrow, 1..3 broad
        s = sig[np.clip(t, -_N, _N) + _N]
        cdf = ((w * (sh == 0))[:, :, None] * s).sum(axis=1)  # (P, K-1): narrow components, every edge
        for k in (1, 2, 3):  # broad components: summed at every 2**k-th edge, interpolated
            wk = w * (sh == k)
            pts = np.arange(((K - 2) >> k) + 2, dtype=np.int64) << k
            num_p = ((2 * pts + 2 - K) << exact.ACT_FRAC)[None, None, :] - (mu[a:b] * (K - 1))[:, :, None]
            tp = (num_p * slope[:, :, None]) >> SLOPE_SHIFT
            coarse = (wk[:, :, None] * sig[np.clip(tp, -_N, _N) + _N]).sum(axis=1)  # (P, points)
            lo = j >> k
            cdf += coarse[:, lo] + (((coarse[:, lo + 1] - coarse[:, lo]) * (j - (lo << k))[None, :]) >> k)
        q = ((cdf * ((1 << TABLE_BITS) - K)) >> (WEIGHT_BITS + SIG_BITS)) + (j + 1)[None, :]
        q = np.concatenate([np.zeros((b - a, 1), np.int64), q, np.full((b - a, 1), 1 << TABLE_BITS, np.int64)], axis=1)
        out[a:b] = np.diff(q, axis=1)
    return out


def _numba_kernel():
    """The compiled kernel, or None without numba (or with ARCODEC_NO_NUMBA=1)."""
    if os.environ.get("ARCODEC_NO_NUMBA"):
        return None
    try:
        import numba
    except ImportError:
        return None

    def kernel(lg, mu, ls, K, sig, wt, inv_t, n_sig, t_first, t_full, r_scale, table_bits, sig_bits, out):
        n, m = lg.shape
        full = 1 << sig_bits
        top = (1 << table_bits) - K
        lo_bound = t_first << 36  # t >= t_first  <=>  num A >= t_first 2**36 (floor)
        hi_bound = t_full << 36
        for i in range(n):
            cdf = np.zeros(K, dtype=np.int64)  # cdf[j] for the upper edge of bin j; cdf[K-1] unused
            tail = np.zeros(K, dtype=np.int64)  # components saturated from edge j on (prefix sum)
            ws = np.empty(m, dtype=np.int64)
            coarse = np.zeros((3, K // 2 + 2), dtype=np.int64)
            broad = np.zeros(3, dtype=np.bool_)
            mx = lg[i, 0]
            top_c = 0
            for c in range(1, m):
                if lg[i, c] > mx:
                    mx = lg[i, c]
                    top_c = c
            vsum = 0
            for c in range(m):
                d = mx - lg[i, c]
                if d <= n_sig:
                    vsum += wt[d]
            rest = 1 << 15
            for c in range(m):
                if c == top_c:
                    continue
                d = mx - lg[i, c]
                if d <= n_sig:
                    ws[c] = (wt[d] << 15) // vsum
                else:
                    ws[c] = 0
                rest -= ws[c]
            ws[top_c] = rest
            for c in range(m):
                w = ws[c]
                if w == 0:
                    continue
                a = (inv_t[r_scale - ls[i, c]] << 16) // (K - 1)
                p0 = ((2 - K) << 12) * a - mu[i, c] * (K - 1) * a  # num_0 A
                step = a << 13  # num rises by 2**13 per edge
                # first edge with t >= t_first, first with t >= t_full: ceiling divisions
                start = -((p0 - lo_bound) // step)
                stop = -((p0 - hi_bound) // step)
                start = min(max(start, 0), K - 1)
                stop = min(max(stop, start), K - 1)
                dt = step >> 36
                sh = 3 if dt < 128 else (2 if dt < 256 else (1 if dt < 512 else 0))
                if sh > 0:  # a broad component: sampled at every 2**sh-th edge, summed per stride
                    npts = ((K - 2) >> sh) + 2
                    for k in range(npts):
                        t = min(max((p0 + (k << sh) * step) >> 36, -n_sig), n_sig)
                        coarse[sh - 1, k] += w * sig[t + n_sig]
                    broad[sh - 1] = True
                    continue
                p = p0 + start * step
                for j in range(start, stop):
                    cdf[j] += w * sig[(p >> 36) + n_sig]
                    p += step
                tail[stop] += w * full
            for k in range(3):
                if broad[k]:
                    sh = k + 1
                    for j in range(K - 1):
                        lo = j >> sh
                        cdf[j] += coarse[k, lo] + (((coarse[k, lo + 1] - coarse[k, lo]) * (j - (lo << sh))) >> sh)
            run = 0
            prev = 0
            for j in range(K - 1):
                run += tail[j]
                q = (((cdf[j] + run) * top) >> (15 + sig_bits)) + j + 1
                out[i, j] = q - prev
                prev = q
            out[i, K - 1] = (1 << table_bits) - prev

    # one thread: a decoder line has a few hundred rows (waking a pool costs more than they
    # do), and one compiled variant keeps numba's on-disk cache unambiguous (a parallel twin of
    # the same function shared its cache entry and was loaded in its place)
    return numba.njit(cache=True, nogil=True)(kernel)


_KERNEL: list = []


def frequencies(logits, mu, log_s, levels: int) -> np.ndarray:
    """Integer frequency tables (N, K) int64, each row positive and summing to 2**24, of N
    discretized logistic mixtures given as (N, M) integer arrays in 2**-12 units (see the
    module docstring). Identical from the numba kernel and from :func:`frequencies_numpy`."""
    if not 2 <= levels <= exact.MIXTURE_MAX_LEVELS:
        raise ValueError(f"levels must be 2..{exact.MIXTURE_MAX_LEVELS}, got {levels}")
    if not _KERNEL:
        _KERNEL.append(_numba_kernel())
    kernel = _KERNEL[0]
    if kernel is None:
        return frequencies_numpy(logits, mu, log_s, levels)
    lg, mu, ls = _prepare(logits, mu, log_s)
    out = np.empty((lg.shape[0], levels), dtype=np.int64)
    if len(lg):
        t_first, t_full = _saturation()
        kernel(lg, mu, ls, levels, sigmoid_table(), weight_table(), inverse_scale_table(),
               _N, t_first, t_full, _R, TABLE_BITS, SIG_BITS, out)
    return out


def code_lengths(freq: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """-log2 p(symbol) under integer tables (N, K): the bits the coder spends, up to its
    own rounding."""
    return TABLE_BITS - np.log2(freq[np.arange(len(freq)), symbols].astype(np.float64))

