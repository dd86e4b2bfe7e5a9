"""Inpainting with a raster-order model: one half of an image given the other.

f) the bottom half given the top is a raster conditional: ancestral sampling continues from
the middle row, exactly. g) the top half given the bottom is not (the known pixels come
after the unknown ones): sampling-importance-resampling from the model's prior, then
optional Metropolis-within-Gibbs sweeps on the joint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from arcodec.explore.likelihood import ess, model_logits, raster, suffix_logp
from arcodec.explore.model import InferenceModel, as_model, image_batch, labels
from arcodec.explore.sampling import ancestral


@dataclass
class Inpainting:
    """Samples (n, C, H, W) of one half of an image given the other half."""

    key: str  # "f" or "g"
    question: str
    given: str  # "top" or "bottom": the half that is known
    image: torch.Tensor  # (C, H, W) the conditioning image
    samples: torch.Tensor
    exact: bool
    method: str
    info: dict = field(default_factory=dict)


def inpaint_bottom(model, image, n: int = 8, seed: int = 0, y=None) -> Inpainting:
    """f) bottom half given the top half: ancestral sampling from row H//2, exact."""
    m = as_model(model)
    x = image_batch(m, image)
    H, W = x.shape[2:]
    out = ancestral(m, x.expand(n, -1, -1, -1), (H // 2) * W, None, seed, labels(m, y, n))
    return Inpainting("f", "bottom half | top half", "top", x[0], out, True,
                      "ancestral sampling continues the raster order from the middle row")


def _sir(m: InferenceModel, x: torch.Tensor, n: int, proposals: int, g: torch.Generator,
         y: torch.Tensor | None) -> tuple[torch.Tensor, list[float]]:
    """n top halves, each chosen from its own ``proposals`` draws of the prior by weight
    p(bottom | top) (sampling-importance-resampling). Returns (images, ESS of each draw)."""
    H, W = x.shape[2:]
    half = (H // 2) * W
    yy = None if y is None else y.repeat_interleave(proposals)
    props = ancestral(m, x.expand(n * proposals, -1, -1, -1), 0, half, y=yy, generator=g)
    lw = suffix_logp(m, props, half, yy).view(n, proposals)
    pick = torch.multinomial(torch.softmax(lw, 1), 1, generator=g)[:, 0]
    chosen = props.view(n, proposals, *x.shape[1:])[torch.arange(n), pick]
    return chosen, [ess(row) for row in lw]


@torch.no_grad()
def mh_sweeps(m: InferenceModel, x: torch.Tensor, sites: list[int], sweeps: int, g: torch.Generator,
              y: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Metropolis-within-Gibbs on the sub-pixels ``sites`` (raster indices row, column,
    channel) of the chains x (n, C, H, W), targeting p(x_sites | the other sub-pixels).

    A site's proposal is the model's own conditional p(x_j | x_<j) (x_<j is the same before
    and after the move), so the acceptance probability is the likelihood ratio of the later
    sub-pixels alone: one forward pass of the chains per site. Returns (chains, acceptance
    rate)."""
    x = x.clone().long()
    n, C, H, W = x.shape
    if not sweeps or not sites:
        return x, float("nan")
    logits = model_logits(m.net, x, y).double()
    lp = torch.log_softmax(logits, 1)
    accepted = total = 0
    for _ in range(sweeps):
        for s in sites:
            (r, c), ch = divmod(s // C, W), s % C
            prop = x.clone()
            prop[:, ch, r, c] = torch.multinomial(lp[:, :, ch, r, c].exp(), 1, generator=g)[:, 0]
            new_lp = torch.log_softmax(model_logits(m.net, prop, y).double(), 1)
            old = raster(lp.gather(1, x.unsqueeze(1))[:, 0])[:, s + 1:].sum(1)
            new = raster(new_lp.gather(1, prop.unsqueeze(1))[:, 0])[:, s + 1:].sum(1)
            ok = torch.rand(n, generator=g, dtype=torch.float64).log() < (new - old)
            x[ok], lp[ok] = prop[ok], new_lp[ok]
            accepted += int(ok.sum())
            total += n
    return x, accepted / total


def inpaint_top(model, image, n: int = 8, seed: int = 0, proposals: int = 32, sweeps: int = 0,
                y=None) -> Inpainting:
    """g) top half given the bottom half: not a raster conditional (the known pixels come
    after the unknown ones), so it is approximated.

    Each of the n samples is drawn by sampling-importance-resampling: ``proposals`` top
    halves from the model's prior, one kept with probability ∝ p(bottom | top); then
    ``sweeps`` Metropolis-within-Gibbs sweeps (:func:`mh_sweeps`) move the chains towards
    p(top | bottom). Consistent as proposals or sweeps grow; ``info`` holds the ESS of
    every resampling and the acceptance rate."""
    m = as_model(model)
    x = image_batch(m, image)
    _, C, H, W = x.shape
    g = torch.Generator().manual_seed(seed)
    yy = labels(m, y, n)
    chosen, esses = _sir(m, x, n, proposals, g, yy)
    chains, acc = mh_sweeps(m, chosen, list(range((H // 2) * W * C)), sweeps, g, yy)
    method = f"sampling-importance-resampling: each sample kept from {proposals} prior draws by p(bottom | top)"
    if sweeps:
        method += f", then {sweeps} Metropolis-within-Gibbs sweep(s) (acceptance {acc:.2f})"
    return Inpainting("g", "top half | bottom half", "bottom", x[0], chains, False, method,
                      {"proposals": proposals, "sweeps": sweeps, "ess_mean": float(np.mean(esses)),
                       "acceptance": acc})
