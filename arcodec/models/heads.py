"""Output distributions. The categorical head's NLL in bits is *the* NLL of the project:
training, evaluation and the codec's size estimate all call :func:`nll_bits`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def nll_bits(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Code length -log2 p(x) of every sub-pixel, in bits.

    logits: (B, K, C, H, W) over K levels; x: integer levels (B, C, H, W).
    Returns (B, C, H, W) float tensor; ``.mean()`` is bits/dim.
    """
    return F.cross_entropy(logits.float(), x.long(), reduction="none") / math.log(2.0)
