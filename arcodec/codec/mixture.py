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

Every step is integer arithmetic with tables built from Python integers (:mod:`arcodec.fixed`), so
the table is the same on every machine, thread count and batch, and every level keeps at
least one unit (the uniform floor the models train with, ``local.floor_eps``).

Two implementations give identical integers: a numba kernel that visits, for each
component, only the edges (a broad one: the sampled edges) where its sigmoid is neither 0
nor 1 (t rises by a constant step from edge to edge, so that range is two integer
divisions; inside it, an addition and a shift per edge) and reads the sigmoid from the
upper half of its table (sig(-t) = 2**16 - sig(t) exactly: half the table, in 16 bits, stays
in a core's cache), the default when numba is installed; and a numpy one over every edge
(the reference, and the fallback).

An encoder knows each symbol before it codes it and needs only two numbers of its table:
the sum of the frequencies before the symbol, q_{k-1}, and its own, q_k - q_{k-1}. Each q_j
depends on cdf_j alone, so :func:`edges` computes just the symbol's two edges (a broad stride's
two sampled points around each): O(M) a symbol instead of the whole table, the same integers.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from arcodec import fixed

TABLE_BITS = 24  # the tables' total: 2**24, constriction's own precision
SIG_BITS = 16  # sigmoid values are multiples of 2**-16
WEIGHT_BITS = 15  # mixture weights are multiples of 2**-15 of the largest
MU_LIMIT = 4 << fixed.ACT_FRAC  # means are clamped to [-4, 4]: keeps every product below 2**63
_N = fixed.TABLE_RANGE << fixed.ACT_FRAC  # sigmoid arguments are clamped to [-16, 16]
_R = fixed.LOG_SCALE_RANGE << fixed.ACT_FRAC
MAX_COMPONENTS = 64
SLOPE_SHIFT = 36  # t = (num * A) >> SLOPE_SHIFT; |num A| < 2**61 for K <= 1024


@lru_cache(maxsize=None)
def sigmoid_table() -> np.ndarray:
    """round(2**16 sigmoid(k / 2**12)) for k in [-16, 16] * 2**12 (entry k + 16 * 2**12),
    int64, from the integer exponential; monotone, 0 at the left end, 2**16 at the right."""
    e = fixed.exp_neg_fixed(2 * _N)  # exp(-k / 2**12) * 2**100, the gate tables' entries
    one = 1 << fixed.FIXED_BITS
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
    e = fixed.exp_neg_fixed(2 * _N)
    shift = fixed.FIXED_BITS - WEIGHT_BITS
    return np.array([(e[k] + (1 << (shift - 1))) >> shift for k in range(_N + 1)], dtype=np.int64)


@lru_cache(maxsize=None)
def inverse_scale_table() -> np.ndarray:
    """round(2**20 exp(k / 2**12)) for k in [-7, 7] * 2**12 (entry k + 7 * 2**12), int64."""
    return fixed.exp_scale_table().astype(np.int64)


@lru_cache(maxsize=None)
def kernel_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's tables, small enough to stay in a core's cache: the sigmoid table from
    t = 0 on, less 2**15 (uint16, entry t; the lower half is its mirror image, sig(-t) = 2**16
    - sig(t), checked here), the weight table (uint16) and the inverse scale table (int32)."""
    sig = sigmoid_table()
    if not np.array_equal(sig + sig[::-1], np.full_like(sig, 1 << SIG_BITS)):
        raise AssertionError("the sigmoid table is not symmetric")
    wt, inv_t = weight_table(), inverse_scale_table()
    assert wt.max() < 1 << 16 and inv_t.max() < 1 << 31
    return (sig[_N:] - (1 << (SIG_BITS - 1))).astype(np.uint16), wt.astype(np.uint16), inv_t.astype(np.int32)


@lru_cache(maxsize=None)
def _saturation() -> tuple[int, int]:
    """(first t whose sigmoid entry is above 0, first t whose entry is 2**16), 2**-12 units."""
    sig = sigmoid_table()
    return int(np.argmax(sig > 0)) - _N, int(np.argmax(sig == sig[-1])) - _N


def _prepare(logits, mu, log_s):
    """The parameters as contiguous int64 (N, M) arrays, checked (the kernel clamps the
    means and log scales itself; :func:`frequencies_numpy` clamps them here)."""
    lg = np.ascontiguousarray(logits, dtype=np.int64)
    mu = np.ascontiguousarray(mu, dtype=np.int64)
    ls = np.ascontiguousarray(log_s, dtype=np.int64)
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
    mu, ls = np.clip(mu, -MU_LIMIT, MU_LIMIT), np.clip(ls, -_R, _R)
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
        num = ((2 * j + 2 - K) << fixed.ACT_FRAC)[None, None, :] - (mu[a:b] * (K - 1))[:, :, None]
        t = (num * slope[:, :, None]) >> SLOPE_SHIFT  # floor, 2**-12 units
        sh = _stride_shift((slope << 13) >> SLOPE_SHIFT)  # (P, M): 0 narrow, 1..3 broad
        s = sig[np.clip(t, -_N, _N) + _N]
        cdf = ((w * (sh == 0))[:, :, None] * s).sum(axis=1)  # (P, K-1): narrow components, every edge
        for k in (1, 2, 3):  # broad components: summed at every 2**k-th edge, interpolated
            wk = w * (sh == k)
            pts = np.arange(((K - 2) >> k) + 2, dtype=np.int64) << k
            num_p = ((2 * pts + 2 - K) << fixed.ACT_FRAC)[None, None, :] - (mu[a:b] * (K - 1))[:, :, None]
            tp = (num_p * slope[:, :, None]) >> SLOPE_SHIFT
            coarse = (wk[:, :, None] * sig[np.clip(tp, -_N, _N) + _N]).sum(axis=1)  # (P, points)
            lo = j >> k
            cdf += coarse[:, lo] + (((coarse[:, lo + 1] - coarse[:, lo]) * (j - (lo << k))[None, :]) >> k)
        q = ((cdf * ((1 << TABLE_BITS) - K)) >> (WEIGHT_BITS + SIG_BITS)) + (j + 1)[None, :]
        q = np.concatenate([np.zeros((b - a, 1), np.int64), q, np.full((b - a, 1), 1 << TABLE_BITS, np.int64)], axis=1)
        out[a:b] = np.diff(q, axis=1)
    return out


def compile_kernel(fn):
    """``fn`` compiled by numba (cached on disk, releasing the GIL), or None without numba
    (or with ARCODEC_NO_NUMBA=1): the caller then runs its numpy reference."""
    if os.environ.get("ARCODEC_NO_NUMBA"):
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(cache=True, nogil=True)(fn)


def _weights_of(lg, i, n_sig, wt, ws):  # pragma: no cover - compiled
    """Mixture i's weights into ws (M,): round(2**15 exp(logit - max)) normalised by floor
    to sum 2**15, the largest component taking the rest (see the module docstring)."""
    m = lg.shape[1]
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
            vsum += np.int64(wt[d])
    rest = 1 << 15
    for c in range(m):
        if c == top_c:
            continue
        d = mx - lg[i, c]
        if d <= n_sig:
            ws[c] = (np.int64(wt[d]) << 15) // vsum
        else:
            ws[c] = 0
        rest -= ws[c]
    ws[top_c] = rest


def _slope_of(mean, log_s, K, inv_t, r_scale, mu_limit):  # pragma: no cover - compiled
    """(num_0 A, the step of num A from edge to edge, the stride shift) of one component:
    t_j = (p0 + j step) >> 36 at edge j; a broad component (shift 1..3) is sampled at every
    2**shift-th edge."""
    log_s = min(max(log_s, -r_scale), r_scale)
    mean = min(max(mean, -mu_limit), mu_limit)
    a = (np.int64(inv_t[r_scale - log_s]) << 16) // (K - 1)
    p0 = ((2 - K) << 12) * a - mean * (K - 1) * a  # num_0 A
    step = a << 13  # num rises by 2**13 per edge
    dt = step >> 36
    return p0, step, 3 if dt < 128 else (2 if dt < 256 else (1 if dt < 512 else 0))


def _span_of(p0, step, lo_bound, hi_bound, points):  # pragma: no cover - compiled
    """(first point of ``points`` with t >= t_first, first with t >= t_full, first with
    t >= 0): ceiling divisions, the last two at least the first."""
    start = min(max(-((p0 - lo_bound) // step), 0), points)
    stop = min(max(-((p0 - hi_bound) // step), start), points)
    return start, stop, min(max(-(p0 // step), start), stop)


def _kernel(lg, mu, ls, K, sig, wt, inv_t, n_sig, t_first, t_full, r_scale, mu_limit, table_bits, sig_bits,
            dest, out):  # pragma: no cover - compiled
    """The tables of the N mixtures (lg, mu, ls) into rows dest[i] of ``out`` (int64 or
    float64; rows 0..N-1 when ``dest`` is empty); sig, wt, inv_t: :func:`kernel_tables`. One
    thread: the callers share the rows out themselves."""
    n, m = lg.shape
    full = 1 << sig_bits
    centre = 1 << (sig_bits - 1)  # sig(t) = centre + sig[t] from t = 0 on
    top = (1 << table_bits) - K
    lo_bound = t_first << 36  # t >= t_first  <=>  num A >= t_first 2**36 (floor)
    hi_bound = t_full << 36
    cdf = np.zeros(K, dtype=np.int64)  # cdf[j] for the upper edge of bin j; cdf[K-1] unused
    tail = np.zeros(K, dtype=np.int64)  # components saturated from edge j on (prefix sum)
    ws = np.empty(m, dtype=np.int64)
    coarse = np.zeros((3, K // 2 + 3), dtype=np.int64)  # broad components at every 2nd, 4th, 8th edge
    ctail = np.zeros((3, K // 2 + 3), dtype=np.int64)  # broad components saturated from point k on
    broad = np.zeros(3, dtype=np.bool_)
    for i in range(n):
        cdf[:] = 0
        tail[:] = 0
        broad[:] = False
        _weights_of(lg, i, n_sig, wt, ws)
        for c in range(m):
            w = ws[c]
            if w == 0:
                continue
            p0, step, sh = _slope_of(mu[i, c], ls[i, c], K, inv_t, r_scale, mu_limit)
            if sh > 0:  # a broad component: sampled at every 2**sh-th edge, summed per stride
                k = sh - 1
                if not broad[k]:
                    coarse[k, :] = 0
                    ctail[k, :] = 0
                    broad[k] = True
                step <<= sh
                start, stop, mid = _span_of(p0, step, lo_bound, hi_bound, ((K - 2) >> sh) + 2)
                p = p0 + start * step
                for q in range(start, mid):
                    coarse[k, q] += w * (centre - np.int64(sig[-(p >> 36)]))
                    p += step
                for q in range(mid, stop):
                    coarse[k, q] += w * (centre + np.int64(sig[p >> 36]))
                    p += step
                ctail[k, stop] += w * full
                continue
            start, stop, mid = _span_of(p0, step, lo_bound, hi_bound, K - 1)
            p = p0 + start * step
            for j in range(start, mid):
                cdf[j] += w * (centre - np.int64(sig[-(p >> 36)]))  # sig(t) = 2**16 - sig(-t)
                p += step
            for j in range(mid, stop):
                cdf[j] += w * (centre + np.int64(sig[p >> 36]))
                p += step
            tail[stop] += w * full
        for k in range(3):
            if broad[k]:
                sh = k + 1
                run = 0
                for q in range(((K - 2) >> sh) + 2):
                    run += ctail[k, q]
                    coarse[k, q] += run
                for j in range(K - 1):
                    lo = j >> sh
                    cdf[j] += coarse[k, lo] + (((coarse[k, lo + 1] - coarse[k, lo]) * (j - (lo << sh))) >> sh)
        r = dest[i] if len(dest) else i
        run = 0
        prev = 0
        for j in range(K - 1):
            run += tail[j]
            q = (((cdf[j] + run) * top) >> (15 + sig_bits)) + j + 1
            out[r, j] = q - prev
            prev = q
        out[r, K - 1] = (1 << table_bits) - prev


def components_of(lg, mu, ls, i, K, wt, inv_t, n_sig, r_scale, mu_limit, ws, geo):  # pragma: no cover - compiled
    """Mixture i's weights into ws (M,) and each component's geometry into geo (M, 3): p0,
    the step of num A from one sampled point to the next, the stride shift (:func:`_kernel`'s)."""
    _weights_of(lg, i, n_sig, wt, ws)
    for c in range(lg.shape[1]):
        p0, step, sh = _slope_of(mu[i, c], ls[i, c], K, inv_t, r_scale, mu_limit)
        geo[c, 0], geo[c, 1], geo[c, 2] = p0, step << sh, sh


def _term(pt, w, geo, c, sig, t_first, t_full, centre, full):  # pragma: no cover - compiled
    """Component c's weighted sigmoid at its sampled point pt (an edge, if it is narrow):
    what :func:`_kernel` adds there (0 below t_first, saturated from t_full on; t rises
    with pt, so these are its spans' bounds)."""
    t = (geo[c, 0] + pt * geo[c, 1]) >> 36
    if t < t_first:
        return 0
    if t >= t_full:
        return w * full
    if t < 0:
        return w * (centre - np.int64(sig[-t]))  # sig(t) = 2**16 - sig(-t)
    return w * (centre + np.int64(sig[t]))


def q_at(j, ws, geo, K, sig, t_first, t_full, sig_bits, table_bits):  # pragma: no cover - compiled
    """q_j of the mixture that :func:`components_of` described (0 for j = -1, 2**24 for
    j = K - 1): every narrow component's term at edge j, each broad stride's linear
    interpolation between its two points around j, summed over the stride's components
    first, as :func:`_kernel` sums them."""
    if j < 0:
        return np.int64(0)
    if j > K - 2:
        return np.int64(1) << table_bits
    full = np.int64(1) << sig_bits
    centre = np.int64(1) << (sig_bits - 1)
    cdf = np.int64(0)
    a1, b1, a2, b2, a3, b3 = 0, 0, 0, 0, 0, 0
    for c in range(len(ws)):
        w = ws[c]
        if w == 0:
            continue
        sh = geo[c, 2]
        if sh == 0:
            cdf += _term(j, w, geo, c, sig, t_first, t_full, centre, full)
            continue
        lo = j >> sh
        ta = _term(lo, w, geo, c, sig, t_first, t_full, centre, full)
        tb = _term(lo + 1, w, geo, c, sig, t_first, t_full, centre, full)
        if sh == 1:
            a1, b1 = a1 + ta, b1 + tb
        elif sh == 2:
            a2, b2 = a2 + ta, b2 + tb
        else:
            a3, b3 = a3 + ta, b3 + tb
    cdf += a1 + (((b1 - a1) * (j & 1)) >> 1)
    cdf += a2 + (((b2 - a2) * (j & 3)) >> 2)
    cdf += a3 + (((b3 - a3) * (j & 7)) >> 3)
    return ((cdf * ((np.int64(1) << table_bits) - K)) >> (15 + sig_bits)) + j + 1


def _edge_kernel(lg, mu, ls, K, sig, wt, inv_t, n_sig, t_first, t_full, r_scale, mu_limit, table_bits, sig_bits,
                 symbols, dest, left, freq):  # pragma: no cover - compiled
    """What :func:`_kernel`'s table of mixture i holds at symbols[i] alone, into place
    dest[i] (i when ``dest`` is empty): left[.] the sum of the frequencies before it (q of
    the symbol's lower edge), freq[.] its own; O(M) a symbol instead of O(M K)."""
    n, m = lg.shape
    ws = np.empty(m, dtype=np.int64)
    geo = np.empty((m, 3), dtype=np.int64)
    for i in range(n):
        s = symbols[i]
        components_of(lg, mu, ls, i, K, wt, inv_t, n_sig, r_scale, mu_limit, ws, geo)
        below = q_at(s - 1, ws, geo, K, sig, t_first, t_full, sig_bits, table_bits)
        r = dest[i] if len(dest) else i
        left[r] = below
        freq[r] = q_at(s, ws, geo, K, sig, t_first, t_full, sig_bits, table_bits) - below


# the kernels' helpers compiled first, so that the kernels call them compiled (unused without numba)
_weights_of, _slope_of, _span_of, components_of, _term, q_at = (
    compile_kernel(f) or f for f in (_weights_of, _slope_of, _span_of, components_of, _term, q_at))


def kernel_constants(levels: int) -> tuple:
    """The constants that the table and edge kernels (and a kernel that calls
    :func:`components_of` and :func:`q_at`) take after the mixtures: levels, the kernel
    tables, the saturation bounds, the clamps and the bit widths."""
    t_first, t_full = _saturation()
    return (levels, *kernel_tables(), _N, t_first, t_full, _R, MU_LIMIT, TABLE_BITS, SIG_BITS)


_KERNEL: list = []
_EDGE_KERNEL: list = []
_NO_DEST = np.zeros(0, dtype=np.int64)


def frequencies(logits, mu, log_s, levels: int, out: np.ndarray | None = None,
                dest: np.ndarray | None = None) -> np.ndarray:
    """Integer frequency tables (N, K), each row positive and summing to 2**24, of N
    discretized logistic mixtures given as (N, M) integer arrays in 2**-12 units (see the
    module docstring). Identical from the numba kernel and from :func:`frequencies_numpy`.

    ``out``: an int64 or float64 array of K columns that receives table i in row ``dest[i]``
    (in rows 0..N-1 without ``dest``) and is returned; a new int64 array without it."""
    if not 2 <= levels <= fixed.MIXTURE_MAX_LEVELS:
        raise ValueError(f"levels must be 2..{fixed.MIXTURE_MAX_LEVELS}, got {levels}")
    if not _KERNEL:
        _KERNEL.append(compile_kernel(_kernel))
    kernel = _KERNEL[0]
    if kernel is None and out is None:
        return frequencies_numpy(logits, mu, log_s, levels)
    lg, mu, ls = _prepare(logits, mu, log_s)
    if out is None:
        out = np.empty((lg.shape[0], levels), dtype=np.int64)
    if dest is None:
        dest = _NO_DEST
        room = len(lg) <= len(out)
    else:
        dest = np.ascontiguousarray(dest, dtype=np.int64)
        room = len(dest) == len(lg) and (not len(dest) or 0 <= dest.min() <= dest.max() < len(out))
    if out.dtype not in (np.int64, np.float64) or out.ndim != 2 or out.shape[1] != levels or not room:
        raise ValueError(f"no room for {len(lg)} tables of {levels} levels in an array of shape {out.shape}")
    if kernel is None:
        out[np.arange(len(lg)) if not len(dest) else dest] = frequencies_numpy(lg, mu, ls, levels)
    elif len(lg):
        kernel(lg, mu, ls, *kernel_constants(levels), dest, out)
    return out


def edges(logits, mu, log_s, levels: int, symbols, left: np.ndarray, freq: np.ndarray,
          dest: np.ndarray | None = None) -> None:
    """What :func:`frequencies`' table of mixture i holds at level symbols[i], without the
    rest of the table: ``left[dest[i]]`` receives the sum of the table's frequencies before
    the symbol, ``freq[dest[i]]`` the symbol's own (places 0..N-1 without ``dest``), the same
    integers. An encoder needs no more (a decoder searches the whole table). A numba kernel
    only: without numba the caller builds the tables (:func:`edges_compiled`)."""
    if not 2 <= levels <= fixed.MIXTURE_MAX_LEVELS:
        raise ValueError(f"levels must be 2..{fixed.MIXTURE_MAX_LEVELS}, got {levels}")
    if not edges_compiled():
        raise RuntimeError("the edges kernel needs numba")
    lg, mu, ls = _prepare(logits, mu, log_s)
    sym = np.ascontiguousarray(symbols, dtype=np.int64)
    dest = _NO_DEST if dest is None else np.ascontiguousarray(dest, dtype=np.int64)
    places = len(dest) if len(dest) else len(lg)
    if len(sym) != len(lg) or places != len(lg) or (len(sym) and not 0 <= sym.min() <= sym.max() < levels):
        raise ValueError(f"{len(lg)} mixtures need as many symbols (0..{levels - 1}) and places")
    for a in (left, freq):
        if a.dtype != np.int64 or a.ndim != 1 or (len(lg) and (dest.max() if len(dest) else len(lg) - 1) >= len(a)):
            raise ValueError(f"no room for {len(lg)} edges in an array of shape {a.shape} ({a.dtype})")
    if len(lg):
        _EDGE_KERNEL[0](lg, mu, ls, *kernel_constants(levels), sym, dest, left, freq)


def edges_compiled() -> bool:
    """Whether :func:`edges` runs here (numba is installed and not turned off)."""
    if not _EDGE_KERNEL:
        _EDGE_KERNEL.append(compile_kernel(_edge_kernel))
    return _EDGE_KERNEL[0] is not None


def code_lengths(freq: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """-log2 p(symbol) under integer tables (N, K): the bits the coder spends, up to its
    own rounding."""
    return TABLE_BITS - np.log2(freq[np.arange(len(freq)), symbols].astype(np.float64))

