"""An image's own mixture offsets: the encoder's search for engines 2 to 5 of the wavefront
coder.

A photo model's mixtures were learnt on other photos. An image (or a region of one:
engines 3 and 4) sharper, noisier, smoother or with other colour statistics than those wants its
components weighted and scaled a little differently: a constant added to each component's
logit and to its log scale, channel by channel (2 C M numbers, 60 for an RGB model of 10
components). The encoder finds them here, on a sample of the pixels, by minimising the
float code length of the sample under the moved mixtures (L-BFGS with the exact gradient
below); :mod:`arcodec.codec.wavefront` rounds them to the grid it stores, keeps them where
they do save bits, and writes them into the stream. The decoder only reads them: nothing here runs when decoding, and nothing here
needs to be exact (the offsets are data once chosen).

The float code length is the discretized logistic mixture's (PixelCNN++) without the
uniform floor: a level k of K on [-1, 1], a bin of half-width 1/(K - 1), the first and last
bins taking the tails, with per-component logits l, means mu and log scales s:

    p(k) = sum_m softmax(l)_m P_m(k),  P_m(k) = sigmoid(a+) - sigmoid(a-),
    a+- = (x_k - mu_m +- 1/(K - 1)) exp(-s_m)

and its gradient with respect to offsets dl_m, ds_m shared by every pixel:

    d(-ln p)/d dl_m = softmax(l)_m - r_m,   d(-ln p)/d ds_m = -r_m d ln P_m / d s_m

with r_m = softmax(l)_m P_m / p the component's responsibility.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from arcodec import fixed

LOG_SCALE_RANGE = float(fixed.LOG_SCALE_RANGE)  # the tables clamp log scales to +- this
# evaluations of the code length the search may take: on held-out photos the first 20 reach
# all but 0.05 % of what 120 to 190 reach
FIT_EVALUATIONS = 30


def _softplus(a: np.ndarray) -> np.ndarray:
    """ln(1 + e^a), without overflow."""
    return np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))


def _logsumexp(a: np.ndarray) -> np.ndarray:
    """ln sum_m e^a (N, 1) of a (N, M)."""
    top = a.max(axis=1, keepdims=True)
    return top + np.log(np.exp(a - top).sum(axis=1, keepdims=True))


def code_length(offsets: np.ndarray, logits: np.ndarray, means: np.ndarray, log_scales: np.ndarray,
                levels: np.ndarray, K: int) -> tuple[float, np.ndarray]:
    """(mean code length in nats, its gradient (2 M,) float64) of ``levels`` (N,) under
    mixtures of logits, means and log scales (N, M) (means on [-1, 1]) moved by ``offsets``
    (2 M,): M logit offsets, then M log-scale offsets. The numpy reference of
    :func:`code_length_fast`."""
    M = logits.shape[1]
    dt = logits.dtype
    lg = logits + offsets[:M].astype(dt)
    raw_s = log_scales + offsets[M:].astype(dt)
    s = np.clip(raw_s, -LOG_SCALE_RANGE, LOG_SCALE_RANGE)
    inv = np.exp(-s)
    half = dt.type(1.0 / (K - 1))
    centred = (levels * (2.0 / (K - 1)) - 1.0).astype(dt)[:, None] - means
    ap, am = (centred + half) * inv, (centred - half) * inv
    up, down = -_softplus(-ap), -_softplus(am)  # ln sigmoid(a+), ln sigmoid(-a-)
    width = (2 * half) * inv  # a+ - a-
    log_p = up + down + np.log(-np.expm1(-width))
    d_up = -ap * np.exp(-_softplus(ap))  # d ln sigmoid(a+) / ds: -a+ sigmoid(-a+)
    d_down = am * np.exp(-_softplus(-am))  # d ln sigmoid(-a-) / ds: a- sigmoid(a-)
    d_log_p = d_up + d_down - width / np.expm1(width)
    lo, hi = np.flatnonzero(levels == 0), np.flatnonzero(levels == K - 1)  # the tails' bins: few
    log_p[lo], d_log_p[lo] = up[lo], d_up[lo]
    log_p[hi], d_log_p[hi] = down[hi], d_down[hi]
    d_log_p *= (raw_s > -LOG_SCALE_RANGE) & (raw_s < LOG_SCALE_RANGE)  # where s moves with its offset
    log_w = lg - _logsumexp(lg)
    joint = log_w + log_p
    total = _logsumexp(joint)
    resp = np.exp(joint - total)
    grad = np.concatenate([(np.exp(log_w) - resp).mean(axis=0, dtype=np.float64),
                           -(resp * d_log_p).mean(axis=0, dtype=np.float64)])
    return float(-total.mean(dtype=np.float64)), grad


class Sample(NamedTuple):
    """A sample's mixtures (N, M) and levels (N,), with what every evaluation of its code
    length shares (:func:`sample`): the search evaluates the same pixels 15 to 30 times
    under moved offsets, and a logit offset multiplies exp(logit), a log-scale offset
    exp(-log scale), so the kernel takes their exponentials once."""

    logits: np.ndarray
    means: np.ndarray
    log_scales: np.ndarray
    levels: np.ndarray
    K: int
    weights: np.ndarray  # exp(logit - the pixel's largest logit)
    inv_scales: np.ndarray  # exp(-log scale), unclamped: the kernel clamps log scale + offset
    centred: np.ndarray  # the level's bin centre on [-1, 1] minus the mean


def sample(logits: np.ndarray, means: np.ndarray, log_scales: np.ndarray, levels: np.ndarray, K: int) -> Sample:
    """The :class:`Sample` of mixtures of logits, means and log scales (N, M) (means on
    [-1, 1]) and ``levels`` (N,) of K."""
    logits, means, log_scales = (np.ascontiguousarray(a, dtype=np.float64) for a in (logits, means, log_scales))
    levels = np.ascontiguousarray(levels, dtype=np.int64)
    return Sample(logits, means, log_scales, levels, int(K),
                  np.exp(logits - logits.max(axis=1, keepdims=True)),
                  np.exp(-log_scales),
                  (levels * (2.0 / (K - 1)) - 1.0)[:, None] - means)


def _code_length_kernel(weights, inv_scales, log_scales, centred, levels, K, d_logits, d_scales, r, grad):
    """:func:`code_length` pixel by pixel (numba): the mean code length in nats, its gradient
    added into ``grad`` (2 M,) as sums (the caller divides them by N). In probabilities
    (a bin's P_m = sigmoid(a+) sigmoid(-a-) (1 - e^-width)): a component's weight and
    inverse scale are the sample's exponentials times the offsets' (:class:`Sample`), and
    e^-width the ratio or product of the two sigmoids' exponentials, so a component takes
    two exponentials (three for a bin wider than 0.01 scales, or where they underflow) and a
    pixel one logarithm; a pixel whose every component's probability underflows (a level
    hundreds of scales from every mean) again in logarithms, as the reference."""
    n, m = weights.shape
    half = 1.0 / (K - 1)
    ew = np.exp(d_logits)
    es = np.exp(-d_scales)
    w = np.empty(m)  # the softmax weights
    P = np.empty(m)
    dlp = np.empty(m)
    lp = np.empty(m)
    total = 0.0
    for i in range(n):
        k = levels[i]
        z = 0.0
        for j in range(m):
            w[j] = weights[i, j] * ew[j]
            z += w[j]
        p = 0.0
        for j in range(m):
            w[j] /= z
            raw_s = log_scales[i, j] + d_scales[j]
            inside = -r < raw_s < r
            inv = inv_scales[i, j] * es[j] if inside else math.exp(-min(max(raw_s, -r), r))
            c = centred[i, j]
            ap = (c + half) * inv
            am = (c - half) * inv
            ep = math.exp(-abs(ap))
            up, up_not = (1.0 / (1.0 + ep), ep / (1.0 + ep)) if ap >= 0 else (ep / (1.0 + ep), 1.0 / (1.0 + ep))
            d_up = -ap * up_not  # d ln sigmoid(a+) / ds: -a+ sigmoid(-a+)
            em = math.exp(-abs(am))
            down, down_not = (1.0 / (1.0 + em), em / (1.0 + em)) if am <= 0 else (em / (1.0 + em), 1.0 / (1.0 + em))
            d_down = am * down_not  # d ln sigmoid(-a-) / ds: a- sigmoid(a-)
            if k == 0:
                P[j], dlp[j] = up, d_up
            elif k == K - 1:
                P[j], dlp[j] = down, d_down
            else:
                width = 2.0 * half * inv
                # e^-width = e^(a- - a+): ep / em (both >= 0), em / ep (both < 0), or ep em
                if width < 0.01 or min(ep, em) < 1e-290:
                    gap = -math.expm1(-width)  # 1 - e^-width; e^width - 1 = gap / (1 - gap)
                elif am >= 0:
                    gap = 1.0 - ep / em
                elif ap < 0:
                    gap = 1.0 - em / ep
                else:
                    gap = 1.0 - ep * em
                P[j] = up * down * gap
                dlp[j] = d_up + d_down - width * (1.0 - gap) / gap
            if not inside:
                dlp[j] = 0.0
            p += w[j] * P[j]
        if p > 1e-250:
            total += math.log(p)
            for j in range(m):
                resp = w[j] * P[j] / p
                grad[j] += w[j] - resp
                grad[m + j] -= resp * dlp[j]
            continue
        top = -1e300  # every component underflowed: the same in logarithms
        for j in range(m):
            raw_s = log_scales[i, j] + d_scales[j]
            inv = math.exp(-min(max(raw_s, -r), r))
            c = centred[i, j]
            ap = (c + half) * inv
            am = (c - half) * inv
            up = -(max(-ap, 0.0) + math.log1p(math.exp(-abs(ap))))  # ln sigmoid(a+)
            down = -(max(am, 0.0) + math.log1p(math.exp(-abs(am))))  # ln sigmoid(-a-)
            if k == 0:
                lp[j] = up
            elif k == K - 1:
                lp[j] = down
            else:
                lp[j] = up + down + math.log(-math.expm1(-2.0 * half * inv))
            lp[j] += math.log(w[j]) if w[j] > 0 else -1e300
            top = max(top, lp[j])
        t = 0.0
        for j in range(m):
            t += math.exp(lp[j] - top)
        t = top + math.log(t)
        total += t
        for j in range(m):
            resp = math.exp(lp[j] - t)
            grad[j] += w[j] - resp
            grad[m + j] -= resp * dlp[j]
    return -total / n


_KERNEL: list = []


def code_length_of(offsets: np.ndarray, s: Sample) -> tuple[float, np.ndarray]:
    """:func:`code_length` of a :class:`Sample` through the numba kernel (5x faster than
    the numpy reference on 4,096 pixels of 10 components, one thread), or the reference
    without numba."""
    if not _KERNEL:
        from arcodec.codec.mixture import compile_kernel

        _KERNEL.append(compile_kernel(_code_length_kernel))
    if _KERNEL[0] is None:
        return code_length(offsets, s.logits, s.means, s.log_scales, s.levels, s.K)
    M = s.logits.shape[1]
    grad = np.zeros(2 * M)
    offsets = np.asarray(offsets, dtype=np.float64)
    value = _KERNEL[0](s.weights, s.inv_scales, s.log_scales, s.centred, s.levels, s.K,
                       np.ascontiguousarray(offsets[:M]), np.ascontiguousarray(offsets[M:]), LOG_SCALE_RANGE, grad)
    return value, grad / max(1, len(s.levels))


def ready() -> None:
    """Import the search's optimiser and load its compiled kernel, on the calling thread.
    The encoder calls it before its pool's threads start searching: an import on a pool
    thread holds the GIL for a third of a second while this thread's work waits on it (a
    process's first Kodak encode took 5.9 s instead of 3.8)."""
    import scipy.optimize  # noqa: F401

    code_length_of(np.zeros(2), sample(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), 2))


def code_length_fast(offsets: np.ndarray, logits: np.ndarray, means: np.ndarray, log_scales: np.ndarray,
                     levels: np.ndarray, K: int) -> tuple[float, np.ndarray]:
    """:func:`code_length` through the numba kernel (:func:`code_length_of`)."""
    return code_length_of(offsets, sample(logits, means, log_scales, levels, K))


def fit_offsets(s: Sample, reach: float, start: np.ndarray | None = None,
                evaluations: int = FIT_EVALUATIONS) -> np.ndarray:
    """The logit and log-scale offsets (2 M,) float64, each within +- ``reach``, that
    minimise the mean code length of the :class:`Sample` ``s`` (see :func:`code_length`),
    searched from ``start`` (zeros when not given) with at most ``evaluations`` evaluations;
    ``start`` (or zeros) for no pixels."""
    M = s.logits.shape[1]
    x0 = np.zeros(2 * M) if start is None else np.clip(np.asarray(start, dtype=np.float64), -reach, reach)
    if len(s.levels) == 0:
        return x0
    from scipy.optimize import minimize  # imported already where ready() ran

    got = minimize(code_length_of, x0, args=(s,), jac=True, method="L-BFGS-B",
                   bounds=[(-reach, reach)] * (2 * M), options={"maxfun": evaluations})
    return np.asarray(got.x, dtype=np.float64)
