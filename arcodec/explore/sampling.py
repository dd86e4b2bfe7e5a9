"""Ancestral sampling from raster-order autoregressive models.

Sampling draws every sub-pixel in raster order (row, column, channel) from the model's
distribution given the sub-pixels drawn so far: exact for a causal model. Each step is a
step of the codec's stepper (:func:`arcodec.codec.autoregressive.make_stepper`): the model's
cached one where it has one, else the network on the rows its receptive field reaches.
A non-causal model (the ablation) always gets the full pass: it has learned to read the
pixel it predicts, which sampling cannot give it, so its samples show what its excellent
training NLL is worth.
"""

from __future__ import annotations

from typing import Callable

import torch

from arcodec.codec.autoregressive import make_stepper
from arcodec.errors import ArcodecError
from arcodec.explore.model import InferenceModel, as_model, labels

SAMPLE_BATCH = 512  # images sampled together


class _Labelled:
    """A class-conditional network with its labels bound, as the codec's steppers call a
    model (images only): ``net(x, y)``, its receptive field, its cached stepper."""

    def __init__(self, net, y: torch.Tensor):
        self.net, self.y = net, y
        if hasattr(net, "receptive_field"):
            self.receptive_field = net.receptive_field
        if hasattr(net, "incremental"):
            self.incremental = lambda batch, height, width: net.incremental(batch, height, width, y)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.y)


@torch.no_grad()
def ancestral(m: InferenceModel, x: torch.Tensor, start: int = 0, stop: int | None = None,
              seed: int = 0, y: torch.Tensor | None = None, generator: torch.Generator | None = None,
              progress: Callable[[int], None] | None = None, naive: bool = False) -> torch.Tensor:
    """Draw the pixels of raster index start..stop-1 of every image of x (B, C, H, W) from the
    model given the pixels before them; the pixels before ``start`` are kept, those from
    ``stop`` on are left as they are (they play no part). Exact for a causal model.
    ``y``: labels (B,) of a class-conditional model; ``progress(k)`` is told of every k
    sub-pixels drawn; ``naive``: the full pass even where the model has a cached stepper."""
    g = generator or torch.Generator().manual_seed(seed)
    n, C, H, W = x.shape
    stop = H * W if stop is None else stop
    x = x.clone().long()
    if start >= stop:
        return x
    naive = naive or not getattr(m.net.config, "causal", True)
    for b in range(0, n, SAMPLE_BATCH):
        xb = x[b: b + SAMPLE_BATCH]
        net = m.net if y is None else _Labelled(m.net, y[b: b + SAMPLE_BATCH])
        st = make_stepper(net, len(xb), C, H, W, naive)
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
        x[b: b + SAMPLE_BATCH] = xb
    return x


def sample(model, n: int, shape: tuple[int, int] = (28, 28), seed: int = 0, y=None,
           progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """n unconditional (or class ``y``: an int, or n labels) samples (n, C, H, W) of integer
    levels, seeded. ``model``: anything :func:`~arcodec.explore.model.as_model` takes."""
    m = as_model(model)
    yy = labels(m, y, n)
    return ancestral(m, torch.zeros(n, m.channels, *shape, dtype=torch.long), seed=seed, y=yy, progress=progress)


def class_samples(model, per_class: int, shape: tuple[int, int] = (28, 28), seed: int = 0,
                  progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """``per_class`` samples of every class of a class-conditional model, class-major:
    (classes * per_class, C, H, W)."""
    m = as_model(model)
    if not m.classes:
        raise ArcodecError(f"{m.name} is not class-conditional (config.classes is 0)")
    return sample(m, m.classes * per_class, shape, seed, torch.arange(m.classes).repeat_interleave(per_class),
                  progress)
