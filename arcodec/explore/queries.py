"""The course's likelihood queries on raster-order autoregressive models: which are exact,
which are approximated and how.

A raster model gives p(x) = prod_i p(x_i | x_<i): every conditional whose conditioning set
is exactly a raster prefix is one forward pass; anything else must marginalise or condition
on pixels the factorisation puts *after* the one asked about. For the middle pixel i
(``pos``, (14, 14) on 28x28) and an image x:

====  ================================  =====================================================
 key  query                             how
====  ================================  =====================================================
 a    p(x_first)                        exact, one pass (the first pixel has no past)
 b    p(x_i)                            Monte Carlo: mean of p(x_i | x_<i^s) over prefixes
                                        x_<i^s drawn ancestrally (Rao-Blackwellised)
 c    p(x_i | x_<i)                     exact, one pass (the conditioning set is the past)
 d    p(x_i | x_>i)                     self-normalised importance sampling: prefixes from
                                        the model's prior, x_i enumerated (S x V passes)
 e    p(x_i | x_-i)                     exact: Bayes over the V values of pixel i, times the
                                        likelihood of every later pixel (V passes)
 f    x_bottom ~ p(. | x_top)           exact: ancestral sampling continues the raster order
 g    x_top ~ p(. | x_bottom)           sampling-importance-resampling from the prior, then
                                        optional Metropolis-within-Gibbs sweeps on the joint
====  ================================  =====================================================

A "pixel value" is all channels of a pixel: V = K^C values (channel 0 most significant).
Everything here runs the model in float mode on a copy (:func:`~arcodec.explore.model.as_model`),
never the codec's exact copy. Queries f and g live in :mod:`arcodec.explore.inpainting`;
:func:`arcodec.explore.enumeration.enumerate_tiny` computes every query exactly from the full
joint of a model small enough to list all its images (e.g. 4x4 binary: 2^16 images);
docs/inference.md and benchmarks/inference_validation.py report how far each approximation
is from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from arcodec.errors import ArcodecError
from arcodec.explore.inpainting import Inpainting, inpaint_bottom, inpaint_top
from arcodec.explore.likelihood import (ess, pixel_logp_given_past, pixel_values, raster_index, repeat_labels,
                                        suffix_logp, with_pixel)
from arcodec.explore.model import as_model, image_batch, labels
from arcodec.explore.sampling import ancestral


@dataclass
class PixelAnswer:
    """A distribution over the V values of one pixel, and how it was obtained."""

    key: str  # "a" .. "e"
    question: str
    pos: tuple[int, int]
    probs: np.ndarray  # (V,), sums to 1
    exact: bool
    method: str
    stderr: np.ndarray | None = None  # (V,) Monte Carlo standard error, where there is one
    info: dict = field(default_factory=dict)


def first_pixel(model, shape: tuple[int, int] = (28, 28), y=None) -> PixelAnswer:
    """a) p(x_(0,0)): exact in one forward pass."""
    m = as_model(model)
    x = torch.zeros(1, m.channels, *shape, dtype=torch.long)
    lp = pixel_logp_given_past(m, x, (0, 0), labels(m, y, 1))[0]
    return PixelAnswer("a", "p(first pixel)", (0, 0), lp.exp().numpy(), True,
                       "the first pixel's conditional has an empty past (one forward pass)")


def middle_marginal(model, pos: tuple[int, int] = (14, 14), shape: tuple[int, int] = (28, 28),
                    samples: int = 64, seed: int = 0, y=None) -> PixelAnswer:
    """b) p(x_pos) = E_{x_<pos ~ p}[p(x_pos | x_<pos)]: Monte Carlo over ancestral prefixes,
    each contributing its whole conditional (Rao-Blackwellised); standard error per value."""
    m = as_model(model)
    yy = labels(m, y, samples)
    x = ancestral(m, torch.zeros(samples, m.channels, *shape, dtype=torch.long),
                  0, raster_index(pos, shape[1]), seed, yy)
    p = pixel_logp_given_past(m, x, pos, yy).exp().numpy()
    se = p.std(0, ddof=1) / math.sqrt(samples) if samples > 1 else None
    return PixelAnswer("b", f"p(x{pos})", pos, p.mean(0), False,
                       f"Monte Carlo: mean of p(x_i | x_<i) over {samples} prefixes sampled ancestrally",
                       se, {"samples": samples})


def given_past(model, image, pos: tuple[int, int] = (14, 14), y=None) -> PixelAnswer:
    """c) p(x_pos | pixels above and to the left): the causal past, exact in one pass."""
    m = as_model(model)
    x = image_batch(m, image)
    lp = pixel_logp_given_past(m, x, pos, labels(m, y, 1))[0]
    return PixelAnswer("c", f"p(x{pos} | above, left)", pos, lp.exp().numpy(), True,
                       "the conditioning set is the raster past (one forward pass)")


def given_rest(model, image, pos: tuple[int, int] = (14, 14), y=None) -> PixelAnswer:
    """e) p(x_pos | every other pixel) ∝ p(x_pos | x_<pos) prod_{k > pos} p(x_k | x_<k):
    exact (up to float arithmetic) with one forward pass per value of the pixel."""
    m = as_model(model)
    x = image_batch(m, image)
    vals = pixel_values(m.levels, m.channels)
    yy = labels(m, y, 1)
    lw = suffix_logp(m, with_pixel(x, pos, vals), raster_index(pos, x.shape[3]), repeat_labels(yy, len(vals)))
    return PixelAnswer("e", f"p(x{pos} | all other pixels)", pos, torch.softmax(lw, 0).numpy(), True,
                       f"Bayes over the {len(vals)} values of the pixel times the likelihood of every "
                       f"later pixel ({len(vals)} forward passes)")


def given_future(model, image, pos: tuple[int, int] = (14, 14), samples: int = 16, seed: int = 0,
                 y=None) -> PixelAnswer:
    """d) p(x_pos | pixels below and to the right), i.e. given every later pixel.

    p(v | x_>i) ∝ E_{x_<i ~ p}[p(v | x_<i) p(x_>i | x_<i, v)]: self-normalised importance
    sampling with the model's own prior over the prefix as proposal, the V values of pixel i
    enumerated for every prefix (samples x V forward passes). The prior knows nothing of
    the later pixels, so few prefixes carry the weight: ``info['ess']`` says how many."""
    m = as_model(model)
    x = image_batch(m, image)
    _, C, H, W = x.shape
    i = raster_index(pos, W)
    yy = labels(m, y, samples)
    pre = ancestral(m, x.expand(samples, -1, -1, -1), 0, i, seed, yy)  # x_<i ~ p, x_>=i from the image
    vals = pixel_values(m.levels, C)
    lw = suffix_logp(m, with_pixel(pre, pos, vals), i, repeat_labels(yy, len(vals))).view(samples, len(vals))
    log_z = torch.logsumexp(lw, dim=1)  # log p(x_>=i... summed over v) = log p(x_>i | prefix s)
    probs = torch.softmax(torch.logsumexp(lw, dim=0), 0).numpy()
    return PixelAnswer("d", f"p(x{pos} | below, right)", pos, probs, False,
                       f"importance sampling: {samples} prefixes from the model's prior, the pixel's "
                       f"{len(vals)} values enumerated ({samples * len(vals)} forward passes)",
                       info={"samples": samples, "ess": ess(log_z)})


def course_queries(model, image, pos: tuple[int, int] = (14, 14), samples: int = 32,
                   future_samples: int = 8, n: int = 8, proposals: int = 32, sweeps: int = 0,
                   seed: int = 0, y=None, which: str = "abcdefg") -> list:
    """The course's queries a..g on one conditioning image, in order (``which`` picks some)."""
    m = as_model(model)
    x = image_batch(m, image)
    shape = tuple(x.shape[2:])
    out = []
    for k in which:
        if k == "a":
            out.append(first_pixel(m, shape, y))
        elif k == "b":
            out.append(middle_marginal(m, pos, shape, samples, seed, y))
        elif k == "c":
            out.append(given_past(m, x[0], pos, y))
        elif k == "d":
            out.append(given_future(m, x[0], pos, future_samples, seed, y))
        elif k == "e":
            out.append(given_rest(m, x[0], pos, y))
        elif k == "f":
            out.append(inpaint_bottom(m, x[0], n, seed, y))
        elif k == "g":
            out.append(inpaint_top(m, x[0], n, seed, proposals, sweeps, y))
        else:
            raise ArcodecError(f"unknown query {k!r}: choose from a, b, c, d, e, f, g")
    return out


def describe(answer, levels: int, channels: int, top: int = 5) -> str:
    """One line per answer for the terminal: exact or approximate, method, mean, top values."""
    tag = "exact" if answer.exact else "approximate"
    if isinstance(answer, Inpainting):
        extra = "".join(f", {k} {v:.3g}" if isinstance(v, float) else f", {k} {v}" for k, v in answer.info.items())
        return f"{answer.key}) {answer.question}: {len(answer.samples)} samples [{tag}: {answer.method}{extra}]"
    p = answer.probs
    vals = pixel_values(levels, channels).numpy()
    mean = (p[:, None] * vals).sum(0)
    best = np.argsort(-p)[:top]
    name = (lambda v: str(int(vals[v][0]))) if channels == 1 else (lambda v: str(tuple(int(t) for t in vals[v])))
    tops = ", ".join(f"{name(v)}: {p[v]:.3f}" for v in best)
    extra = "".join(f", {k} {v:.3g}" if isinstance(v, float) else f", {k} {v}" for k, v in answer.info.items())
    means = ", ".join(f"{v:.2f}" for v in mean)
    return f"{answer.key}) {answer.question}: mean {means}; top {tops} [{tag}: {answer.method}{extra}]"
