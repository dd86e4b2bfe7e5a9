"""Log-probabilities under a raster-order model: every sub-pixel's conditional, the joint,
the values of one pixel, and the building blocks of the queries (a pixel's distribution
given its past, the likelihood of the pixels after it, effective sample sizes).

A "pixel value" is all channels of a pixel: V = K^C values (channel 0 most significant).
"""

from __future__ import annotations

import itertools

import torch

from arcodec.errors import ArcodecError
from arcodec.explore.model import InferenceModel

BATCH_LOGITS = 1 << 24  # logits per forward pass: 83 images of 28x28 with 256 levels, all 65,536 of 4x4x2
MAX_VALUES = 4096  # pixel values V = K^C a query may enumerate


def model_logits(net, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """``net``'s logits of x, with the labels y of a class-conditional model."""
    return net(x, y) if y is not None else net(x)


def repeat_labels(y: torch.Tensor | None, k: int) -> torch.Tensor | None:
    """Each label k times (for k copies of each image), None stays None."""
    return None if y is None else y.repeat_interleave(k)


def raster_index(pos: tuple[int, int], width: int) -> int:
    """The raster index of pixel ``pos`` (row, column)."""
    return pos[0] * width + pos[1]


@torch.no_grad()
def subpixel_logp(m: InferenceModel, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x_j | x_<j) of every sub-pixel of x (B, C, H, W): float64 (B, C, H, W), teacher
    forced, in batches of :data:`BATCH_LOGITS` logits."""
    out = []
    step = max(1, BATCH_LOGITS // (x[0].numel() * m.levels))
    for i in range(0, len(x), step):
        xb = x[i: i + step]
        logits = model_logits(m.net, xb, None if y is None else y[i: i + step]).double()
        lp = torch.log_softmax(logits, dim=1)
        out.append(lp.gather(1, xb.long().unsqueeze(1))[:, 0])
    return torch.cat(out) if out else torch.zeros(0, *x.shape[1:], dtype=torch.float64)


def raster(lp: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) per-sub-pixel values in raster order (row, column, channel): (B, H*W*C)."""
    return lp.permute(0, 2, 3, 1).reshape(len(lp), -1)


def log_joint(m: InferenceModel, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x) (B,), natural log, float64."""
    return raster(subpixel_logp(m, x, y)).sum(1)


def suffix_logp(m: InferenceModel, x: torch.Tensor, start: int, y: torch.Tensor | None) -> torch.Tensor:
    """sum of log p(x_k | x_<k) over the sub-pixels of pixels k >= start (raster), (B,)."""
    return raster(subpixel_logp(m, x, y))[:, start * m.channels:].sum(1)


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


def pixel_logp_given_past(m: InferenceModel, x: torch.Tensor, pos: tuple[int, int],
                          y: torch.Tensor | None) -> torch.Tensor:
    """log p(pixel pos = v | x_<pos) for every value v, (B, V): one pass per image for one
    channel, V teacher-forced passes when the channels of a pixel depend on each other."""
    r, c = pos
    if m.channels == 1:
        with torch.no_grad():
            logits = model_logits(m.net, x, y)[:, :, 0, r, c].double()
        return torch.log_softmax(logits, dim=1)
    vals = pixel_values(m.levels, m.channels)
    lp = subpixel_logp(m, with_pixel(x, pos, vals), repeat_labels(y, len(vals)))[:, :, r, c].sum(1)
    return lp.view(len(x), len(vals))


def ess(log_w: torch.Tensor) -> float:
    """Effective sample size (sum w)^2 / sum w^2 of log weights."""
    w = torch.softmax(log_w.double(), 0)
    return float(1.0 / (w * w).sum())
