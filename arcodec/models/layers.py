"""Causal building blocks shared by the autoregressive models.

Every layer has two modes: the float path used for training, and the exact path
(``self.exact = True``, float64 inputs) used by the codec. See :mod:`arcodec.models.exact`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from arcodec.models import exact


class ExactModule(nn.Module):
    """A module whose forward has a float path and an exact path, chosen by ``exact``."""

    exact: bool = False


def set_exact(model: nn.Module, flag: bool = True) -> nn.Module:
    """Switch every layer of ``model`` to the exact (codec) or float (training) path."""
    for m in model.modules():
        if isinstance(m, ExactModule):
            m.exact = flag
    return model


class CausalConv2d(ExactModule):
    """A convolution whose output at (i, j) sees only a causal neighbourhood of its input.

    The padding is explicit (possibly negative, which crops), so that output position
    (i, j) of any crop of the input equals output (i, j) of the full image as long as the
    crop holds the receptive field.

    ``kind``:
      * ``"down"``  — vertical stack: rows i-kh+1..i (``shift=False``) or i-kh..i-1
        (``shift=True``), columns j-kw//2..j+kw//2 (times the dilation);
      * ``"right"`` — horizontal stack: columns j-kw+1..j, or j-kw..j-1 with ``shift``;
      * ``"point"`` — a 1x1 convolution.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], kind: str, shift: bool = False,
                 dilation: int = 1, bias: bool = True):
        super().__init__()
        kh, kw = kernel
        d = dilation
        if kind == "down":
            side = (kw // 2) * d
            top = (kh - 1) * d + (1 if shift else 0)
            self.pad = (side, side, top, -1 if shift else 0)
        elif kind == "right":
            left = (kw - 1) * d + (1 if shift else 0)
            self.pad = (left, -1 if shift else 0, 0, 0)
        elif kind == "point":
            self.pad = (0, 0, 0, 0)
        else:
            raise ValueError(f"unknown causal conv kind {kind!r}")
        self.dilation = d
        self.conv = nn.Conv2d(cin, cout, kernel, dilation=d, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        if self.exact:
            return exact.conv2d(x, self._quantized(), self.dilation)
        return self.conv(x)

    def _quantized(self):
        """Quantized weights, recomputed only when the weights change."""
        w, b = self.conv.weight, self.conv.bias
        key = (w._version, w.data_ptr(), None if b is None else (b._version, b.data_ptr()))
        cache = self.__dict__.get("_qcache")
        if cache is None or cache[0] != key:
            cache = (key, exact.quantize_conv(w, b))
            self.__dict__["_qcache"] = cache
        return cache[1]


class Gate(ExactModule):
    """Gated activation tanh(a) * sigmoid(b), a and b the two halves of the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        if self.exact:
            return exact.gate(a, b)
        return torch.tanh(a) * torch.sigmoid(b)
