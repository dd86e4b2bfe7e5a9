"""Toy data sets for the warm-up models (:mod:`arcodec.models.toy`), generated in code.

* ``toy1d``: 10,000 draws of a mixture of two Gaussians discretised to the 100 values
  0..99, as (N, 1, 1, 1) uint8.
* ``toy2d``: 100,000 draws of (x1, x2) from a 200 x 200 discrete joint distribution whose
  density is a picture drawn with numpy (:func:`toy2d_density`), as (N, 1, 1, 2) uint8.

Both are split 80/20 into train and test by a seeded permutation; the first 10% of the
80% (in the permuted order) is ``val``, the rest ``train``: 72% / 8% / 20%. Everything is
a pure function of the seeds below: no download, no data file.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from arcodec.training.data import SPLIT_SEED, register_dataset

TOY1D_SEED = 1
TOY1D_N = 10_000
TOY1D_LEVELS = 100
# (weight, mean, standard deviation) of each component, on the 0..99 scale
TOY1D_MIXTURE = ((0.4, 30.0, 8.0), (0.6, 72.0, 5.0))

TOY2D_SEED = 2
TOY2D_N = 100_000
TOY2D_LEVELS = 200


def _splits(n: int) -> dict[str, np.ndarray]:
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_trainval = int(round(0.8 * n))
    n_val = int(round(0.1 * n_trainval))
    return {"val": perm[:n_val], "train": perm[n_val:n_trainval], "test": perm[n_trainval:]}


# ---------------------------------------------------------------------------- 1-D


def toy1d_pmf() -> np.ndarray:
    """The true distribution (100,) of ``toy1d``: each Gaussian's mass on [k - 0.5, k + 0.5),
    the tails folded into 0 and 99 (values are rounded, then clipped)."""
    edges = np.arange(TOY1D_LEVELS + 1) - 0.5
    pmf = np.zeros(TOY1D_LEVELS)
    for w, mu, sd in TOY1D_MIXTURE:
        cdf = np.array([0.5 * (1.0 + math.erf((e - mu) / (sd * math.sqrt(2.0)))) for e in edges])
        cdf[0], cdf[-1] = 0.0, 1.0
        pmf += w * np.diff(cdf)
    return pmf


@lru_cache(maxsize=1)
def _toy1d_all() -> np.ndarray:
    rng = np.random.default_rng(TOY1D_SEED)
    weights = np.array([c[0] for c in TOY1D_MIXTURE])
    comp = rng.choice(len(TOY1D_MIXTURE), size=TOY1D_N, p=weights)
    mu = np.array([c[1] for c in TOY1D_MIXTURE])[comp]
    sd = np.array([c[2] for c in TOY1D_MIXTURE])[comp]
    values = np.clip(np.round(mu + sd * rng.standard_normal(TOY1D_N)), 0, TOY1D_LEVELS - 1)
    return values.astype(np.uint8)


@register_dataset("toy1d", TOY1D_LEVELS, "mixture of two Gaussians on 0..99, 7,200 / 800 / 2,000, (N, 1, 1, 1)")
def load_toy1d(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    values = _toy1d_all()[_splits(TOY1D_N)[split]]
    return torch.from_numpy(values.copy()).view(-1, 1, 1, 1)


# ---------------------------------------------------------------------------- 2-D


def _disc(yy, xx, cy, cx, r) -> np.ndarray:
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float64)


@lru_cache(maxsize=1)
def _toy2d_image() -> np.ndarray:
    """A 200 x 200 picture (row x1, column x2), non-negative, drawn with numpy only:
    a ring, a bar chart, a triangle, a smile, a diagonal band and a faint background."""
    n = TOY2D_LEVELS
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    img = np.full((n, n), 0.02)
    img += 1.0 * (_disc(yy, xx, 55, 55, 38) - _disc(yy, xx, 55, 55, 24))  # ring
    for i, top in enumerate((40, 25, 60, 15)):  # bar chart, top right
        x0 = 112 + 20 * i
        img[top: 95, x0: x0 + 14] += 0.35 + 0.2 * i
    tri = (yy >= 115) & (yy <= 185) & (np.abs(xx - 50) <= (yy - 115) * 0.55)  # triangle
    img += 0.8 * tri
    face = _disc(yy, xx, 150, 145, 40)  # a face: disc, two eyes, a smile
    eyes = _disc(yy, xx, 137, 130, 6) + _disc(yy, xx, 137, 160, 6)
    mouth = (np.abs(np.hypot(yy - 140, xx - 145) - 24) <= 3) & (yy > 150)
    img += 0.5 * face - 0.5 * eyes + 1.2 * mouth * face
    img += 0.4 * (np.abs(yy + xx - 200) <= 4)  # a diagonal band across the picture
    return np.clip(img, 0.0, None)


def toy2d_density() -> np.ndarray:
    """The true joint distribution p(x1, x2) of ``toy2d``: (200, 200) float64, sums to 1."""
    img = _toy2d_image()
    return img / img.sum()


@lru_cache(maxsize=1)
def _toy2d_all() -> np.ndarray:
    p = toy2d_density().ravel()
    idx = np.random.default_rng(TOY2D_SEED).choice(p.size, size=TOY2D_N, p=p)
    return np.stack([idx // TOY2D_LEVELS, idx % TOY2D_LEVELS], axis=1).astype(np.uint8)


@register_dataset("toy2d", TOY2D_LEVELS, "(x1, x2) drawn from a 200x200 picture, 72,000 / 8,000 / 20,000, (N, 1, 1, 2)")
def load_toy2d(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    pairs = _toy2d_all()[_splits(TOY2D_N)[split]]
    return torch.from_numpy(pairs.copy()).view(-1, 1, 1, 2)
