"""Integer frequency tables of discretized logistic mixtures: what the coder sees.

Given each sub-pixel's mixture parameters as integers on the activation grid (logits,
means in [-1, 1] units and log scales, all multiples of 2**-12), :func:`frequencies`
returns a table of K positive integer frequencies that sum to 2**TABLE_BITS:

    w_m    = round(2**15 exp(logit_m - max logit))        (0 beyond 16 nats below the max)
    t_mj   = floor((edge_j - mu_m) / s_m)  in 2**-12 units, edge_j = (2j + 2 - K) / (K - 1)
    cdf_j  = sum_m w_m round(2**16 sigmoid(t_mj))         (j = 0..K-2, the bins' upper edges)
    q_j    = floor(cdf_j (2**24 - K) / (2**16 sum_m w_m)) + j + 1,   q_{-1} = 0, q_{K-1} = 2**24
    freq_k = q_k - q_{k-1}  >= 1

Every step is integer arithmetic with tables built from Python integers (:mod:`exact`), so
the table is the same on every machine, thread count and batch, and every level keeps at
least one unit (the uniform floor the models train with, ``local.floor_eps``).

Two implementations give identical integers: a numba kernel that visits, for each
component, only the edges where its sigmoid is not saturated (the default when numba is
installed), and a numpy one over every edge (the reference, and the fallback).
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from arcodec.models import exact

TABLE_BITS = 24  # the tables' total: 2**24, constriction's own precision
SIG_BITS = 16  # sigmoid values are multiples of 2**-16
WEIGHT_BITS = 15  # mixture weights are multiples of 2**-15 of the largest
MU_LIMIT = 4 << exact.ACT_FRAC  # means are clamped to [-4, 4]: keeps every product below 2**63
_N = exact.TABLE_RANGE << exact.ACT_FRAC  # sigmoid arguments are clamped to [-16, 16]
_R = exact.LOG_SCALE_RANGE << exact.ACT_FRAC
MAX_COMPONENTS = 64


@lru_cache(maxsize=None)
def sigmoid_table() -> np.ndarray:
    """round(2**16 sigmoid(k / 2**12)) for k in [-16, 16] * 2**12 (entry k + 16 * 2**12),
    int64, from the integer exponential; monotone, 0 at the left end, 2**16 at the right."""
    e = exact._exp_neg_fixed(2 * _N)  # exp(-k / 2**12) * 2**100, the gate tables' entries
    one = 1 << exact._FIXED
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
    e = exact._exp_neg_fixed(2 * _N)
    shift = exact._FIXED - WEIGHT_BITS
    return np.array([(e[k] + (1 << (shift - 1))) >> shift for k in range(_N + 1)], dtype=np.int64)


@lru_cache(maxsize=None)
def inverse_scale_table() -> np.ndarray:
    """round(2**20 exp(k / 2**12)) for k in [-7, 7] * 2**12 (entry k + 7 * 2**12), int64."""
    return exact.exp_scale_table().numpy().astype(np.int64)


def _prepare(logits, mu, log_s):
    lg = np.ascontiguousarray(logits, dtype=np.int64)
    mu = np.clip(np.ascontiguousarray(mu, dtype=np.int64), -MU_LIMIT, MU_LIMIT)
    ls = np.clip(np.ascontiguousarray(log_s, dtype=np.int64), -_R, _R)
    if not (lg.shape == mu.shape == ls.shape) or lg.ndim != 2:
        raise ValueError(f"mixture parameters must be three (N, M) arrays, got {lg.shape}, {mu.shape}, {ls.shape}")
    if lg.shape[1] > MAX_COMPONENTS:
        raise ValueError(f"at most {MAX_COMPONENTS} components, got {lg.shape[1]}")
    return lg, mu, ls


def frequencies_numpy(logits, mu, log_s, levels: int, chunk: int = 1 << 21) -> np.ndarray:
    """The reference implementation of :func:`frequencies` (every edge of every component)."""
    lg, mu, ls = _prepare(logits, mu, log_s)
    n, m = lg.shape
    K = levels
    sig, wt, inv_t = sigmoid_table(), weight_table(), inverse_scale_table()
    out = np.empty((n, K), dtype=np.int64)
    j = np.arange(K - 1, dtype=np.int64)
    den = (K - 1) << 20
    step = max(1, chunk // (m * K))
    for a in range(0, n, step):
        b = min(n, a + step)
        d = lg[a:b].max(axis=1, keepdims=True) - lg[a:b]
        w = np.where(d <= _N, wt[np.minimum(d, _N)], 0)  # (P, M)
        inv = inv_t[_R - ls[a:b]]  # exp(-log s), 2**-20 units
        num = ((2 * j + 2 - K) << exact.ACT_FRAC)[None, None, :] - (mu[a:b] * (K - 1))[:, :, None]
        t = (num * inv[:, :, None]) // den  # floor, 2**-12 units
        s = sig[np.clip(t, -_N, _N) + _N]
        cdf = (w[:, :, None] * s).sum(axis=1)  # (P, K-1)
        total = w.sum(axis=1, keepdims=True) << SIG_BITS
        q = cdf * ((1 << TABLE_BITS) - K) // total + (j + 1)[None, :]
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

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(lg, mu, ls, K, sig, wt, inv_t, n_sig, r_scale, table_bits, sig_bits, out):
        n, m = lg.shape
        den = (K - 1) << 20
        full = 1 << sig_bits
        top = (1 << table_bits) - K
        for i in numba.prange(n):
            cdf = np.zeros(K, dtype=np.int64)  # cdf[j] for the upper edge of bin j; cdf[K-1] unused
            tail = np.zeros(K, dtype=np.int64)  # components saturated from edge j on (prefix sum)
            mx = lg[i, 0]
            for c in range(1, m):
                if lg[i, c] > mx:
                    mx = lg[i, c]
            total = 0
            for c in range(m):
                d = mx - lg[i, c]
                if d > n_sig:
                    continue
                w = wt[d]
                if w == 0:
                    continue
                total += w
                inv = inv_t[r_scale - ls[i, c]]
                base = mu[i, c] * (K - 1)
                # first edge whose t exceeds -n_sig, first edge whose t reaches n_sig (t rises with j)
                lo, hi = 0, K - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    t = ((((2 * mid + 2 - K) << 12) - base) * inv) // den
                    if t > -n_sig:
                        hi = mid
                    else:
                        lo = mid + 1
                start = lo
                lo, hi = start, K - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    t = ((((2 * mid + 2 - K) << 12) - base) * inv) // den
                    if t >= n_sig:
                        hi = mid
                    else:
                        lo = mid + 1
                stop = lo
                for j in range(start, stop):
                    t = ((((2 * j + 2 - K) << 12) - base) * inv) // den
                    cdf[j] += w * sig[t + n_sig]
                tail[stop] += w * full
            total = total << sig_bits
            run = 0
            prev = 0
            for j in range(K - 1):
                run += tail[j]
                q = (cdf[j] + run) * top // total + j + 1
                out[i, j] = q - prev
                prev = q
            out[i, K - 1] = (1 << table_bits) - prev

    return kernel


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
        kernel(lg, mu, ls, levels, sigmoid_table(), weight_table(), inverse_scale_table(), _N, _R,
               TABLE_BITS, SIG_BITS, out)
    return out


def code_lengths(freq: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """-log2 p(symbol) under integer tables (N, K): the bits the coder spends, up to its
    own rounding."""
    return TABLE_BITS - np.log2(freq[np.arange(len(freq)), symbols].astype(np.float64))

