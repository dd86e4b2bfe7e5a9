"""Exact enumeration of tiny models: the probability of every image (e.g. 4x4 binary: 2^16
images) is the ground truth of every query, and :func:`validate_tiny` measures how far each
approximation is from it (docs/inference.md, benchmarks/inference_validation.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from arcodec.errors import ArcodecError
from arcodec.explore.inpainting import inpaint_bottom, inpaint_top
from arcodec.explore.likelihood import log_joint, raster, raster_index
from arcodec.explore.model import as_model, labels
from arcodec.explore.queries import first_pixel, given_future, given_past, given_rest, middle_marginal


def all_images(levels: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Every image of the given shape, (levels^(C*H*W), C, H, W), raster order as digits."""
    d = channels * height * width
    n = levels ** d
    if n > 1 << 20:
        raise ArcodecError(f"{n} images is too many to enumerate")
    idx = torch.arange(n)
    digits = torch.stack([(idx // levels ** (d - 1 - k)) % levels for k in range(d)], 1)  # (n, H*W*C) raster
    return digits.view(n, height, width, channels).permute(0, 3, 1, 2).contiguous()


@dataclass
class Enumeration:
    """Every image of a tiny model with its probability: the ground truth of every query."""

    images: torch.Tensor  # (N, C, H, W)
    prob: np.ndarray  # (N,) float64, sums to 1 (up to rounding)
    levels: int
    log_total: float  # log of the model's total mass over all images (0 in exact arithmetic)

    def pixel_code(self, pos: tuple[int, int]) -> np.ndarray:
        """The value index (0..V-1) of pixel pos in every image."""
        v = np.zeros(len(self.images), dtype=np.int64)
        for ch in range(self.images.shape[1]):
            v = v * self.levels + self.images[:, ch, pos[0], pos[1]].numpy()
        return v

    def conditional(self, pos: tuple[int, int], known: np.ndarray, image: torch.Tensor) -> np.ndarray:
        """p(pixel pos | the pixels where ``known`` (H, W) bool is True equal those of image)."""
        match = np.ones(len(self.images), dtype=bool)
        img = image.numpy()
        imgs = self.images.numpy()
        for r, c in zip(*np.nonzero(known)):
            match &= (imgs[:, :, r, c] == img[:, r, c]).all(1)
        V = self.levels ** self.images.shape[1]
        p = np.bincount(self.pixel_code(pos)[match], weights=self.prob[match], minlength=V)
        return p / p.sum()

    def half_posterior(self, image: torch.Tensor, given: str) -> tuple[np.ndarray, np.ndarray]:
        """(keys, probs): the exact distribution of the unknown half given the ``given`` half
        of ``image``; keys identify the unknown half's content (:meth:`half_key`)."""
        H = self.images.shape[2]
        rows = slice(0, H // 2) if given == "top" else slice(H // 2, H)
        match = (self.images[:, :, rows] == image[:, rows]).flatten(1).all(1).numpy()
        other = "bottom" if given == "top" else "top"
        return self.half_key(self.images[match], other), self.prob[match] / self.prob[match].sum()

    def half_key(self, x: torch.Tensor, half: str) -> np.ndarray:
        """An integer naming the content of the ``half`` of each image of x."""
        H = x.shape[2]
        part = x[:, :, : H // 2] if half == "top" else x[:, :, H // 2:]
        flat = raster(part).numpy().astype(np.int64)
        return (flat * (self.levels ** np.arange(flat.shape[1]))).sum(1)


def enumerate_tiny(model, height: int, width: int, y=None) -> Enumeration:
    """p(x) of every image of a tiny model (e.g. 4x4 binary: 65,536 images)."""
    m = as_model(model)
    imgs = all_images(m.levels, m.channels, height, width)
    lj = log_joint(m, imgs, labels(m, y, len(imgs)))
    p = torch.softmax(lj, 0).numpy()  # normalising absorbs float rounding (the sum is 1 in exact arithmetic)
    return Enumeration(imgs, p, m.levels, float(torch.logsumexp(lj, 0)))


def tv(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance between two distributions on the same values."""
    return 0.5 * float(np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum())


def empirical_tv(keys: np.ndarray, probs: np.ndarray, sample_keys: np.ndarray) -> float:
    """TV between the exact distribution (keys, probs) and the empirical one of samples."""
    support = {int(k): float(p) for k, p in zip(keys, probs)}
    uniq, counts = np.unique(sample_keys, return_counts=True)
    emp = dict(zip(uniq.tolist(), (counts / counts.sum()).tolist()))
    allk = set(support) | set(emp)
    return 0.5 * sum(abs(support.get(k, 0.0) - emp.get(k, 0.0)) for k in allk)


def validate_tiny(model, images: torch.Tensor, samples: tuple[int, ...] = (16, 64, 256, 1024),
                  future_samples: tuple[int, ...] = (4, 16, 64, 256), proposals: tuple[int, ...] = (1, 8, 32),
                  sweeps: tuple[int, ...] = (1, 2, 4), n: int = 1000, seed: int = 0) -> list[dict]:
    """Every query on a tiny model against exact enumeration, for each conditioning image of
    ``images`` (B, C, H, W): one record per (query, method, setting) with the total-variation
    error, averaged over the images (and its maximum).

    Sample sets (f, g) are compared as empirical distributions of ``n`` samples; the same
    number of draws from the exact distribution gives the noise floor of that comparison."""
    m = as_model(model)
    _, C, H, W = images.shape
    pos = (H // 2, W // 2)
    en = enumerate_tiny(m, H, W)
    rng = np.random.default_rng(seed)
    rows: dict[tuple, list[tuple[float, dict]]] = {}  # (query, method, setting) -> (error, extras)

    def add(query, method, setting, err, **extra):
        rows.setdefault((query, method, setting), []).append((err, extra))

    past = np.zeros((H, W), dtype=bool)
    past.flat[: raster_index(pos, W)] = True
    future = np.zeros((H, W), dtype=bool)
    future.flat[raster_index(pos, W) + 1:] = True
    rest = np.ones((H, W), dtype=bool)
    rest[pos] = False
    none = np.zeros((H, W), dtype=bool)
    add("a", "one forward pass", "", tv(first_pixel(m, (H, W)).probs, en.conditional((0, 0), none, images[0])))
    exact_b = en.conditional(pos, none, images[0])
    for k, img in enumerate(images):
        for s in samples:  # b does not depend on the image: one repeat (new seed) per image
            add("b", "Monte Carlo over ancestral prefixes", f"{s} prefixes",
                tv(middle_marginal(m, pos, (H, W), s, seed + k).probs, exact_b))
        add("c", "one forward pass", "", tv(given_past(m, img, pos).probs, en.conditional(pos, past, img)))
        add("e", f"{m.levels ** C} forward passes", "",
            tv(given_rest(m, img, pos).probs, en.conditional(pos, rest, img)))
        exact_d = en.conditional(pos, future, img)
        for s in future_samples:
            a = given_future(m, img, pos, s, seed + k)
            add("d", "importance sampling, prior prefixes", f"{s} prefixes", tv(a.probs, exact_d),
                ess=a.info["ess"])
        keys, probs = en.half_posterior(img, "top")  # f: the bottom given the top
        floor = empirical_tv(keys, probs, rng.choice(keys, size=n, p=probs))
        f = inpaint_bottom(m, img, n, seed + k)
        add("f", "ancestral sampling", f"{n} samples", empirical_tv(keys, probs, en.half_key(f.samples, "bottom")),
            floor=floor)
        keys, probs = en.half_posterior(img, "bottom")  # g: the top given the bottom
        floor = empirical_tv(keys, probs, rng.choice(keys, size=n, p=probs))
        for p_ in proposals:
            g = inpaint_top(m, img, n, seed + k, proposals=p_)
            label = "prior samples (ignores the bottom)" if p_ == 1 else "sampling-importance-resampling"
            add("g", label, f"{p_} proposals", empirical_tv(keys, probs, en.half_key(g.samples, "top")),
                floor=floor, ess=g.info["ess_mean"])
        for sw in sweeps:
            g = inpaint_top(m, img, n, seed + k, proposals=1, sweeps=sw)
            add("g", "prior samples + Metropolis-within-Gibbs", f"{sw} sweep(s)",
                empirical_tv(keys, probs, en.half_key(g.samples, "top")), floor=floor,
                acceptance=g.info["acceptance"])
    out = []
    for (query, method, setting), vals in rows.items():
        errs = [e for e, _ in vals]
        rec = {"query": query, "method": method, "setting": setting, "images": len(vals),
               "tv_mean": float(np.mean(errs)), "tv_max": float(np.max(errs))}
        for key in vals[0][1]:
            rec[f"{key}_mean"] = float(np.mean([x[key] for _, x in vals]))
        out.append(rec)
    return out
