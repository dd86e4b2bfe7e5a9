"""Causality, enforced: d log p(x_i) / d x must vanish for pixel i itself, every later
pixel, and the later channels of pixel i. Used by the tests on every registered model and
by the zoo before it trusts a checkpoint. Pure torch: the figures are drawn in
:mod:`arcodec.explore.figures`.

Both checks run on a float copy (:func:`arcodec.models.layers.float_copy`): the model handed
in is never switched, so checking the zoo's cached exact model leaves the codec's numbers
alone."""

from __future__ import annotations

import torch

from arcodec.models.layers import float_copy


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """model(x); a class-conditional model (``config.classes`` > 0) gets label 0 for every
    image (a label is the same for every pixel: it cannot carry a pixel's value)."""
    if getattr(model.config, "classes", 0):
        return model(x, torch.zeros(len(x), dtype=torch.long))
    return model(x)


def violations(model: torch.nn.Module, height: int = 7, width: int = 7, seed: int = 0) -> list[tuple]:
    """(output position, input position) pairs where information flows the wrong way.

    Positions are (row, column, channel); raster order, channels in order within a pixel.
    Runs on a float copy of the model (the model itself is left as it is) on a random image;
    an empty list means the model is causal. A model defined for one image shape only names
    it in ``causality_shape`` (H, W).
    """
    height, width = getattr(model, "causality_shape", (height, width))
    cfg = model.config
    C, K = cfg.channels, cfg.levels
    model = float_copy(model)
    g = torch.Generator().manual_seed(seed)
    xi = torch.randint(0, K, (1, C, height, width), generator=g)
    x = xi.float().requires_grad_(True)
    logp = torch.log_softmax(_logits(model, x), dim=1)  # (1, K, C, H, W)
    bad = []
    for r in range(height):
        for c in range(width):
            for ch in range(C):
                (grad,) = torch.autograd.grad(logp[0, xi[0, ch, r, c], ch, r, c], x, retain_graph=True,
                                              allow_unused=True, materialize_grads=True)
                for ch2, r2, c2 in torch.nonzero(grad[0]).tolist():
                    if (r2, c2, ch2) >= (r, c, ch):
                        bad.append(((r, c, ch), (r2, c2, ch2)))
    return bad


def receptive_field(model: torch.nn.Module, height: int, width: int, row: int, col: int,
                    seed: int = 0) -> torch.Tensor:
    """|d log p(x_(row, col)) / d x|, maximum over channels: an (H, W) map, from a float copy
    of the model (the model itself is left as it is)."""
    cfg = model.config
    model = float_copy(model)
    g = torch.Generator().manual_seed(seed)
    xi = torch.randint(0, cfg.levels, (1, cfg.channels, height, width), generator=g)
    x = xi.float().requires_grad_(True)
    logp = torch.log_softmax(_logits(model, x), dim=1)[0, :, :, row, col]  # (K, C)
    total = sum(logp[xi[0, ch, row, col], ch] for ch in range(cfg.channels))
    (grad,) = torch.autograd.grad(total, x, allow_unused=True, materialize_grads=True)
    return grad[0].abs().amax(dim=0)
