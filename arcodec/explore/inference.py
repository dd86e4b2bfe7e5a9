"""Probabilistic inference with raster-order autoregressive models: the course's likelihood
queries, inpainting, and their validation by exact enumeration.

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
Everything here runs the model in float mode on a copy (:func:`load`), never the codec's
exact copy. :func:`enumerate_tiny` computes every query exactly from the full joint of a
model small enough to list all its images (e.g. 4x4 binary: 2^16 images); docs/inference.md
and benchmarks/inference_validation.py report how far each approximation is from it.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from arcodec.errors import ArcodecError
from arcodec.models.layers import set_exact

BATCH_LOGITS = 1 << 24  # logits per forward pass: 83 images of 28x28 with 256 levels, all 65,536 of 4x4x2
SAMPLE_BATCH = 512  # images sampled together
MAX_VALUES = 4096  # pixel values V = K^C a query may enumerate


# ----------------------------------------------------------------------------- models

@dataclass(frozen=True)
class InferenceModel:
    """A model ready for sampling and queries: a float-mode copy in eval mode."""

    name: str
    net: torch.nn.Module

    @property
    def levels(self) -> int:
        return self.net.config.levels

    @property
    def channels(self) -> int:
        return self.net.config.channels

    @property
    def classes(self) -> int:
        return int(getattr(self.net.config, "classes", 0) or 0)

    @property
    def is_flow(self) -> bool:
        """A flow (the registry's ``coding`` "flow" or "continuous"), not a raster model."""
        return getattr(self.net, "coding", "autoregressive") != "autoregressive" or hasattr(self.net, "intermediates")


def float_copy(net: torch.nn.Module) -> torch.nn.Module:
    """A float-mode, eval-mode copy of ``net`` (the zoo's cached exact model stays as it is)."""
    out = copy.deepcopy(net)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return set_exact(out, False)


def load(name: str) -> InferenceModel:
    """A zoo model by name or a checkpoint (``runs/x/best.pt``), as a float copy.

    Unlike :func:`arcodec.zoo.load_model`, a class-conditional checkpoint is accepted (the
    labels come with the query, not from a file)."""
    path = Path(name)
    if name.endswith(".pt") and path.is_file():
        from arcodec.training.train import load_checkpoint

        try:
            net, _ = load_checkpoint(path)
        except Exception as e:  # the user's file: any failure to read it is their input's fault
            raise ArcodecError(f"cannot load checkpoint {path}: {e}") from None
        return InferenceModel(name, float_copy(net))
    if name.endswith(".pt"):
        raise ArcodecError(f"{name}: no such checkpoint")
    from arcodec.zoo import load_model

    return InferenceModel(name, float_copy(load_model(name).net))


def as_model(model) -> InferenceModel:
    """A name, a checkpoint path, an :class:`InferenceModel`, a LoadedModel or a module."""
    if isinstance(model, InferenceModel):
        return model
    if isinstance(model, str):
        return load(model)
    if hasattr(model, "net") and hasattr(model, "sha256"):  # zoo.LoadedModel
        return InferenceModel(model.name, float_copy(model.net))
    return InferenceModel(getattr(model, "arch", type(model).__name__), float_copy(model))


def initialised_like(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised model of ``net``'s architecture and config (float mode, seeded)."""
    from arcodec.registry import build_model

    torch.manual_seed(seed)
    return build_model(net.arch, net.config).eval()


def require_causal(m: InferenceModel) -> None:
    """Queries and inpainting trust the factorisation: refuse a model that breaks it."""
    from arcodec.models.causality import violations

    if m.is_flow:
        raise ArcodecError(f"{m.name} is a flow: the likelihood queries need a raster-order autoregressive model")
    bad = violations(m.net)
    if bad:
        raise ArcodecError(f"{m.name} is not causal ({len(bad)} dependencies on later pixels): "
                           "its conditionals are not those of a joint distribution")


def labels(m: InferenceModel, y, n: int) -> torch.Tensor | None:
    """Labels (n,) for a class-conditional model (an int, a list or a tensor), None otherwise."""
    if not m.classes:
        if y is not None:
            raise ArcodecError(f"{m.name} is not class-conditional: it takes no label")
        return None
    if y is None:
        raise ArcodecError(f"{m.name} is class-conditional ({m.classes} classes): give a label")
    t = torch.as_tensor(y, dtype=torch.long).reshape(-1)
    if len(t) == 1:
        t = t.expand(n)
    if len(t) != n or int(t.min()) < 0 or int(t.max()) >= m.classes:
        raise ArcodecError(f"labels must be {n} integers in 0..{m.classes - 1}")
    return t.clone()


def _forward(net, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return net(x, y) if y is not None else net(x)


@torch.no_grad()
def subpixel_logp(m: InferenceModel, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x_j | x_<j) of every sub-pixel of x (B, C, H, W): float64 (B, C, H, W), teacher
    forced, in batches of :data:`BATCH_LOGITS` logits."""
    out = []
    step = max(1, BATCH_LOGITS // (x[0].numel() * m.levels))
    for i in range(0, len(x), step):
        xb = x[i: i + step]
        logits = _forward(m.net, xb, None if y is None else y[i: i + step]).double()
        lp = torch.log_softmax(logits, dim=1)
        out.append(lp.gather(1, xb.long().unsqueeze(1))[:, 0])
    return torch.cat(out) if out else torch.zeros(0, *x.shape[1:], dtype=torch.float64)


def raster(lp: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) per-sub-pixel values in raster order (row, column, channel): (B, H*W*C)."""
    return lp.permute(0, 2, 3, 1).reshape(len(lp), -1)


def log_joint(m: InferenceModel, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x) (B,), natural log, float64."""
    return raster(subpixel_logp(m, x, y)).sum(1)


def pixel_values(levels: int, channels: int) -> torch.Tensor:
    """Every value of a pixel, (V, C) with V = levels^channels, channel 0 most significant."""
    v = levels ** channels
    if v > MAX_VALUES:
        raise ArcodecError(f"a pixel has {v} values ({levels}^{channels}): more than {MAX_VALUES} to enumerate")
    return torch.tensor(list(itertools.product(range(levels), repeat=channels)), dtype=torch.long)


def with_pixel(x: torch.Tensor, pos: tuple[int, int], values: torch.Tensor) -> torch.Tensor:
    """For each image of x (B, C, H, W), V copies with pixel ``pos`` set to each of ``values``
    (V, C): (B * V, C, H, W), image-major."""
    r, c = pos
    out = x.repeat_interleave(len(values), dim=0).clone()
    out[:, :, r, c] = values.repeat(len(x), 1)
    return out


def _repeat(y: torch.Tensor | None, k: int) -> torch.Tensor | None:
    return None if y is None else y.repeat_interleave(k)


# ------------------------------------------------------------------------ ancestral sampling

class _FullPass:
    """Stepper of a model without its own: the whole network on the rows it can see."""

    def __init__(self, net, y):
        self.net, self.y = net, y
        self.above = net.receptive_field()[0] if hasattr(net, "receptive_field") else None

    def begin_row(self, x, r):
        pass

    @torch.no_grad()
    def step(self, x, r, c):
        lo = 0 if self.above is None else max(0, r - self.above)
        return _forward(self.net, x[:, :, lo: r + 1], self.y)[:, :, :, r - lo, c]


def _stepper(net, n: int, h: int, w: int, y: torch.Tensor | None):
    """The model's cached stepper (Gated PixelCNN, PixelCNN-MADE) where it has one."""
    if hasattr(net, "incremental"):
        return net.incremental(n, h, w, y) if y is not None else net.incremental(n, h, w)
    return _FullPass(net, y)


@torch.no_grad()
def ancestral(m: InferenceModel, x: torch.Tensor, start: int = 0, stop: int | None = None,
              seed: int = 0, y: torch.Tensor | None = None, generator: torch.Generator | None = None,
              progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Draw the pixels of raster index start..stop-1 of every image of x (B, C, H, W) from the
    model given the pixels before them; the pixels before ``start`` are kept, those from
    ``stop`` on are left as they are (they play no part). Exact for a causal model.
    ``progress(k)`` is told of every k sub-pixels drawn."""
    g = generator or torch.Generator().manual_seed(seed)
    n, C, H, W = x.shape
    stop = H * W if stop is None else stop
    x = x.clone().long()
    if start >= stop:
        return x
    step = SAMPLE_BATCH
    for b in range(0, n, step):
        xb = x[b: b + step]
        yb = None if y is None else y[b: b + step]
        st = _stepper(m.net, len(xb), H, W, yb)
        for r in range(H):
            if (r + 1) * W <= start:  # rows wholly before start: the stepper's row cache only
                st.begin_row(xb, r)
                continue
            if r * W >= stop:
                break
            st.begin_row(xb, r)
            for c in range(W):
                i = r * W + c
                if i >= stop:
                    break
                if i < start:
                    st.step(xb, r, c)  # fills the stepper's column cache
                    continue
                for ch in range(C):
                    p = torch.softmax(st.step(xb, r, c)[:, :, ch].double(), dim=1)
                    xb[:, ch, r, c] = torch.multinomial(p, 1, generator=g)[:, 0]
                if progress is not None:
                    progress(len(xb) * C)
        x[b: b + step] = xb
    return x


def sample(model, n: int, shape: tuple[int, int] = (28, 28), seed: int = 0, y=None) -> torch.Tensor:
    """n unconditional (or class ``y``) samples (n, C, H, W) of integer levels, seeded."""
    m = as_model(model)
    yy = labels(m, y, n)
    return ancestral(m, torch.zeros(n, m.channels, *shape, dtype=torch.long), seed=seed, y=yy)


def class_samples(model, per_class: int, shape: tuple[int, int] = (28, 28), seed: int = 0) -> torch.Tensor:
    """``per_class`` samples of every class of a class-conditional model, class-major:
    (classes * per_class, C, H, W)."""
    m = as_model(model)
    if not m.classes:
        raise ArcodecError(f"{m.name} is not class-conditional (config.classes is 0)")
    y = torch.arange(m.classes).repeat_interleave(per_class)
    return ancestral(m, torch.zeros(len(y), m.channels, *shape, dtype=torch.long), seed=seed, y=y)


# ------------------------------------------------------------------------------ queries

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


def _as_image(m: InferenceModel, image) -> torch.Tensor:
    """(C, H, W), (H, W) or (H, W, C) integer levels -> (1, C, H, W) long, checked."""
    t = image.long() if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image)).long()
    if t.ndim == 2:
        t = t[None]
    elif t.ndim == 3 and t.shape[0] != m.channels and t.shape[-1] == m.channels:
        t = t.permute(2, 0, 1)
    if t.ndim != 3 or t.shape[0] != m.channels:
        raise ArcodecError(f"{m.name} models {m.channels}-channel images, got shape {tuple(t.shape)}")
    if int(t.min()) < 0 or int(t.max()) >= m.levels:
        raise ArcodecError(f"{m.name} models levels 0..{m.levels - 1}, the image has {int(t.min())}..{int(t.max())}")
    return t[None].contiguous()


def _index(pos: tuple[int, int], width: int) -> int:
    return pos[0] * width + pos[1]


def _pixel_logp_given_past(m: InferenceModel, x: torch.Tensor, pos: tuple[int, int],
                           y: torch.Tensor | None) -> torch.Tensor:
    """log p(pixel pos = v | x_<pos) for every value v, (B, V): one pass per image for one
    channel, V teacher-forced passes when the channels of a pixel depend on each other."""
    r, c = pos
    if m.channels == 1:
        with torch.no_grad():
            logits = _forward(m.net, x, y)[:, :, 0, r, c].double()
        return torch.log_softmax(logits, dim=1)
    vals = pixel_values(m.levels, m.channels)
    lp = subpixel_logp(m, with_pixel(x, pos, vals), _repeat(y, len(vals)))[:, :, r, c].sum(1)
    return lp.view(len(x), len(vals))


def first_pixel(model, shape: tuple[int, int] = (28, 28), y=None) -> PixelAnswer:
    """a) p(x_(0,0)): exact in one forward pass."""
    m = as_model(model)
    x = torch.zeros(1, m.channels, *shape, dtype=torch.long)
    lp = _pixel_logp_given_past(m, x, (0, 0), labels(m, y, 1))[0]
    return PixelAnswer("a", "p(first pixel)", (0, 0), lp.exp().numpy(), True,
                       "the first pixel's conditional has an empty past (one forward pass)")


def middle_marginal(model, pos: tuple[int, int] = (14, 14), shape: tuple[int, int] = (28, 28),
                    samples: int = 64, seed: int = 0, y=None) -> PixelAnswer:
    """b) p(x_pos) = E_{x_<pos ~ p}[p(x_pos | x_<pos)]: Monte Carlo over ancestral prefixes,
    each contributing its whole conditional (Rao-Blackwellised); standard error per value."""
    m = as_model(model)
    yy = labels(m, y, samples)
    x = ancestral(m, torch.zeros(samples, m.channels, *shape, dtype=torch.long),
                  0, _index(pos, shape[1]), seed, yy)
    p = _pixel_logp_given_past(m, x, pos, yy).exp().numpy()
    se = p.std(0, ddof=1) / math.sqrt(samples) if samples > 1 else None
    return PixelAnswer("b", f"p(x{pos})", pos, p.mean(0), False,
                       f"Monte Carlo: mean of p(x_i | x_<i) over {samples} prefixes sampled ancestrally",
                       se, {"samples": samples})


def given_past(model, image, pos: tuple[int, int] = (14, 14), y=None) -> PixelAnswer:
    """c) p(x_pos | pixels above and to the left): the causal past, exact in one pass."""
    m = as_model(model)
    x = _as_image(m, image)
    lp = _pixel_logp_given_past(m, x, pos, labels(m, y, 1))[0]
    return PixelAnswer("c", f"p(x{pos} | above, left)", pos, lp.exp().numpy(), True,
                       "the conditioning set is the raster past (one forward pass)")


def _suffix_logp(m: InferenceModel, x: torch.Tensor, start: int, y: torch.Tensor | None) -> torch.Tensor:
    """sum of log p(x_k | x_<k) over the sub-pixels of pixels k >= start (raster), (B,)."""
    return raster(subpixel_logp(m, x, y))[:, start * m.channels:].sum(1)


def given_rest(model, image, pos: tuple[int, int] = (14, 14), y=None) -> PixelAnswer:
    """e) p(x_pos | every other pixel) ∝ p(x_pos | x_<pos) prod_{k > pos} p(x_k | x_<k):
    exact (up to float arithmetic) with one forward pass per value of the pixel."""
    m = as_model(model)
    x = _as_image(m, image)
    vals = pixel_values(m.levels, m.channels)
    yy = labels(m, y, 1)
    lw = _suffix_logp(m, with_pixel(x, pos, vals), _index(pos, x.shape[3]), _repeat(yy, len(vals)))
    return PixelAnswer("e", f"p(x{pos} | all other pixels)", pos, torch.softmax(lw, 0).numpy(), True,
                       f"Bayes over the {len(vals)} values of the pixel times the likelihood of every "
                       f"later pixel ({len(vals)} forward passes)")


def ess(log_w: torch.Tensor) -> float:
    """Effective sample size (sum w)^2 / sum w^2 of log weights."""
    w = torch.softmax(log_w.double(), 0)
    return float(1.0 / (w * w).sum())


def given_future(model, image, pos: tuple[int, int] = (14, 14), samples: int = 16, seed: int = 0,
                 y=None) -> PixelAnswer:
    """d) p(x_pos | pixels below and to the right), i.e. given every later pixel.

    p(v | x_>i) ∝ E_{x_<i ~ p}[p(v | x_<i) p(x_>i | x_<i, v)]: self-normalised importance
    sampling with the model's own prior over the prefix as proposal, the V values of pixel i
    enumerated for every prefix (samples x V forward passes). The prior knows nothing of
    the later pixels, so few prefixes carry the weight: ``info['ess']`` says how many."""
    m = as_model(model)
    x = _as_image(m, image)
    _, C, H, W = x.shape
    i = _index(pos, W)
    yy = labels(m, y, samples)
    pre = ancestral(m, x.expand(samples, -1, -1, -1), 0, i, seed, yy)  # x_<i ~ p, x_>=i from the image
    vals = pixel_values(m.levels, C)
    lw = _suffix_logp(m, with_pixel(pre, pos, vals), i, _repeat(yy, len(vals))).view(samples, len(vals))
    log_z = torch.logsumexp(lw, dim=1)  # log p(x_>=i... summed over v) = log p(x_>i | prefix s)
    probs = torch.softmax(torch.logsumexp(lw, dim=0), 0).numpy()
    return PixelAnswer("d", f"p(x{pos} | below, right)", pos, probs, False,
                       f"importance sampling: {samples} prefixes from the model's prior, the pixel's "
                       f"{len(vals)} values enumerated ({samples * len(vals)} forward passes)",
                       info={"samples": samples, "ess": ess(log_z)})


def inpaint_bottom(model, image, n: int = 8, seed: int = 0, y=None) -> Inpainting:
    """f) bottom half given the top half: ancestral sampling from row H//2, exact."""
    m = as_model(model)
    x = _as_image(m, image)
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
    lw = _suffix_logp(m, props, half, yy).view(n, proposals)
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
    logits = _forward(m.net, x, y).double()
    lp = torch.log_softmax(logits, 1)
    accepted = total = 0
    for _ in range(sweeps):
        for s in sites:
            (r, c), ch = divmod(s // C, W), s % C
            prop = x.clone()
            prop[:, ch, r, c] = torch.multinomial(lp[:, :, ch, r, c].exp(), 1, generator=g)[:, 0]
            new_lp = torch.log_softmax(_forward(m.net, prop, y).double(), 1)
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
    x = _as_image(m, image)
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


def course_queries(model, image, pos: tuple[int, int] = (14, 14), samples: int = 32,
                   future_samples: int = 8, n: int = 8, proposals: int = 32, sweeps: int = 0,
                   seed: int = 0, y=None, which: str = "abcdefg") -> list:
    """The course's queries a..g on one conditioning image, in order (``which`` picks some)."""
    m = as_model(model)
    x = _as_image(m, image)
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


# ---------------------------------------------------------------------- exact enumeration

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
    past.flat[: _index(pos, W)] = True
    future = np.zeros((H, W), dtype=bool)
    future.flat[_index(pos, W) + 1:] = True
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


# ------------------------------------------------------------------------ where the bits go

@dataclass
class BitsMap:
    """Code length of every sub-pixel of an image under the codec's own tables."""

    image: np.ndarray  # (H, W, C) uint8
    bits: np.ndarray  # (H, W, C) float64: -log2 of the coder's probability of each sub-pixel
    file_bytes: int  # the whole .arc file
    payload_bytes: int  # its range-coder streams (and their lengths), without header and CRC
    model: str

    @property
    def total_bits(self) -> float:
        return float(self.bits.sum())


def bits_map(image, model=None, tile: int | None = None) -> BitsMap:
    """Per-sub-pixel code lengths -log2 p (bits) of ``image`` ((H, W) or (H, W, C) uint8),
    computed from the exact teacher-forced tables the encoder hands the range coder (the
    same streams and tiles), next to the size of the file :func:`arcodec.codec.api.encode_images`
    writes. Their sum and the payload differ only by the coder's overhead (a few tens of bits
    per stream)."""
    from arcodec.codec import container
    from arcodec.codec.api import as_image, encode_images, resolve
    from arcodec.codec.autoregressive import DEFAULT_CHUNK, encode_streams, gather, plan_streams
    from arcodec.zoo import default_model

    from arcodec.codec.api import default_tile, scan_of
    from arcodec.codec import wavefront

    img = as_image(image)
    m = resolve(model if model is not None else default_model([img]))
    tile = tile or default_tile(m)
    data = encode_images([img], model=m, tile=tile).data
    _, payload, _ = container.read(data)
    bits = np.zeros(img.shape, dtype=np.float64)
    if scan_of(m) == container.SCAN_WAVEFRONT:  # integer tables: bits = 24 - log2(frequency)
        for s in plan_streams([img.shape], m.channels, tile, DEFAULT_CHUNK):
            x = gather([img], s)

            oy, ox, plane = (np.array([getattr(ref, k) for ref in s.tiles]) for k in ("y", "x", "plane"))

            def record(tiles, rows, cols, ch, freq, x=x, oy=oy, ox=ox, plane=plane):
                sym = x.numpy()[tiles, ch, rows, cols]
                chans = np.where(plane[tiles] < 0, ch, plane[tiles])
                bits[oy[tiles] + rows, ox[tiles] + cols, chans] = wavefront.code_lengths(freq, sym)

            wavefront.encode_streams(m.net, x, [len(x)], on_table=record)
        return BitsMap(img, bits, len(data), len(payload), m.name)
    for s in plan_streams([img.shape], m.channels, tile, DEFAULT_CHUNK):
        x = gather([img], s)  # (n, C, h, w)
        n, C = x.shape[:2]
        tables = []
        encode_streams(m.net, x, [n], on_table=lambda r0, r1, w: tables.append((r0, r1, w)))
        for r0, r1, w in tables:
            w = w.reshape(r1 - r0, s.width, C, n, -1)  # decoder order: row, column, channel, tile
            sym = x[:, :, r0:r1].permute(2, 3, 1, 0).numpy()
            p = np.take_along_axis(w, sym[..., None], -1)[..., 0] / w.sum(-1)
            b = -np.log2(p)
            for t, ref in enumerate(s.tiles):
                dst = bits[ref.y + r0: ref.y + r1, ref.x: ref.x + s.width]
                if ref.plane >= 0:
                    dst[:, :, ref.plane] = b[:, :, 0, t]
                else:
                    dst[...] = b[..., t]
    return BitsMap(img, bits, len(data), len(payload), m.name)


# ------------------------------------------------------------- class-conditional models

def digits_with_labels(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits (the ``digits`` data set, same splits) with their labels."""
    from arcodec.training.data import load_digits, load_digits_labels

    return load_digits(split), load_digits_labels(split)


def fit_class_conditional(x: torch.Tensor, y: torch.Tensor, settings: dict, steps: int, out: str | Path | None = None,
                          batch: int = 64, lr: float = 3e-3, seed: int = 0, data: str = "digits"
                          ) -> torch.nn.Module:
    """Train a class-conditional Gated PixelCNN (``classes`` = number of labels) on images x
    (N, 1, H, W) with labels y (N,): ``arcodec train`` takes no labels, so this short loop
    (AdamW, the training loop's warm-up and cosine schedule, :func:`nll_bits`) stands in
    for it. ``out``: also write a checkpoint there (``arcodec sample -m out``)."""
    from arcodec.models.heads import nll_bits
    from arcodec.registry import build_model, make_config
    from arcodec.training.train import TrainConfig, checkpoint, lr_at, make_optimizer

    classes = int(y.max()) + 1
    cfg = TrainConfig(arch="gated-pixelcnn", data=data, steps=steps, batch=batch, lr=lr,
                      warmup=max(1, steps // 10), seed=seed, threads=torch.get_num_threads())
    torch.manual_seed(seed)
    net = build_model("gated-pixelcnn", make_config("gated-pixelcnn", {**settings, "classes": classes}))
    opt = make_optimizer(net, cfg)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = nll_bits(net(x[idx], y[idx]), x[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
        opt.step()
    net.eval()
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint(net, cfg, steps), out)
    return net
