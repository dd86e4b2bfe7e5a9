"""An image's own mixture offsets: the encoder's search for engine 2 of the wavefront coder.

A photo model's mixtures were learnt on other photos. An image sharper, noisier, smoother
or with other colour statistics than those wants its components weighted and scaled a
little differently, and the same everywhere in the image: a constant added to each
component's logit and to its log scale, channel by channel (2 C M numbers, 60 for an RGB
model of 10 components). The encoder finds them here, on a sample of the image's pixels,
by minimising the float code length of the sample under the moved mixtures (L-BFGS with
the exact gradient below); :mod:`arcodec.codec.wavefront` rounds them to the grid it stores,
checks with the exact integer tables that they do save bits, and writes them into the
stream. The decoder only reads them: nothing here runs when decoding, and nothing here
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


def _code_length_kernel(logits, means, log_scales, levels, K, d_logits, d_scales, r, grad):
    """:func:`code_length` pixel by pixel (numba): the mean code length in nats, its gradient
    added into ``grad`` (2 M,) as sums (the caller divides them by N)."""
    n, m = logits.shape
    half = 1.0 / (K - 1)
    lw = np.empty(m)
    lp = np.empty(m)
    dlp = np.empty(m)
    total = 0.0
    for i in range(n):
        k = levels[i]
        x = k * 2.0 / (K - 1) - 1.0
        top = -1e300
        for j in range(m):
            lw[j] = logits[i, j] + d_logits[j]
            top = max(top, lw[j])
            raw_s = log_scales[i, j] + d_scales[j]
            inv = math.exp(-min(max(raw_s, -r), r))
            c = x - means[i, j]
            ap = (c + half) * inv
            am = (c - half) * inv
            e = math.exp(-abs(ap))  # sigmoid(-a+) = e / (1 + e) for a+ >= 0, else 1 / (1 + e)
            up = -(max(-ap, 0.0) + math.log1p(e))  # ln sigmoid(a+)
            d_up = -ap * (e if ap >= 0 else 1.0) / (1.0 + e)  # -a+ sigmoid(-a+)
            e = math.exp(-abs(am))
            down = -(max(am, 0.0) + math.log1p(e))  # ln sigmoid(-a-)
            d_down = am * (e if am <= 0 else 1.0) / (1.0 + e)  # a- sigmoid(a-)
            if k == 0:
                lp[j], dlp[j] = up, d_up
            elif k == K - 1:
                lp[j], dlp[j] = down, d_down
            else:
                width = 2.0 * half * inv
                gap = -math.expm1(-width)  # 1 - e^-width; e^width - 1 = gap / (1 - gap)
                lp[j] = up + down + math.log(gap)
                dlp[j] = d_up + d_down - width * (1.0 - gap) / gap
            if not -r < raw_s < r:
                dlp[j] = 0.0
        z = 0.0
        for j in range(m):
            z += math.exp(lw[j] - top)
        z = top + math.log(z)
        top = -1e300
        for j in range(m):
            lw[j] -= z
            top = max(top, lw[j] + lp[j])
        t = 0.0
        for j in range(m):
            t += math.exp(lw[j] + lp[j] - top)
        t = top + math.log(t)
        total += t
        for j in range(m):
            resp = math.exp(lw[j] + lp[j] - t)
            grad[j] += math.exp(lw[j]) - resp
            grad[m + j] -= resp * dlp[j]
    return -total / n


_KERNEL: list = []


def code_length_fast(offsets: np.ndarray, logits: np.ndarray, means: np.ndarray, log_scales: np.ndarray,
                     levels: np.ndarray, K: int) -> tuple[float, np.ndarray]:
    """:func:`code_length` through the numba kernel (about 10x faster), or the numpy
    reference without numba."""
    if not _KERNEL:
        from arcodec.codec.mixture import compile_kernel

        _KERNEL.append(compile_kernel(_code_length_kernel))
    if _KERNEL[0] is None:
        return code_length(offsets, logits, means, log_scales, levels, K)
    M = logits.shape[1]
    grad = np.zeros(2 * M)
    value = _KERNEL[0](logits, means, log_scales, levels, K, np.ascontiguousarray(offsets[:M], dtype=np.float64),
                       np.ascontiguousarray(offsets[M:], dtype=np.float64), LOG_SCALE_RANGE, grad)
    return value, grad / max(1, len(levels))


def fit_offsets(logits: np.ndarray, means: np.ndarray, log_scales: np.ndarray, levels: np.ndarray, K: int,
                reach: float) -> np.ndarray:
    """The logit and log-scale offsets (2 M,) float64, each within +- ``reach``, that
    minimise the mean code length of ``levels`` (N,) under mixtures (N, M) (see
    :func:`code_length`); zeros for no pixels."""
    M = logits.shape[1]
    if len(levels) == 0:
        return np.zeros(2 * M)
    from scipy.optimize import minimize

    args = tuple(np.ascontiguousarray(a, dtype=np.float64) for a in (logits, means, log_scales)) + (
        np.asarray(levels, dtype=np.int64), K)
    got = minimize(code_length_fast, np.zeros(2 * M), args=args, jac=True, method="L-BFGS-B",
                   bounds=[(-reach, reach)] * (2 * M), options={"maxfun": FIT_EVALUATIONS})
    return np.asarray(got.x, dtype=np.float64)
