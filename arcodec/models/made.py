"""MADE (Germain et al., 2015, "MADE: Masked Autoencoder for Distribution Estimation"):
one fully connected network whose weight masks make output d depend only on the inputs
that come before d in a fixed ordering of the D variables.

Here every variable takes one of K levels: the input is one-hot (D*K units), the output
is K logits per variable. Optional context features (the same for every variable, e.g.
a PixelCNN's features at a pixel when MADE is the head over its colour channels) feed
every hidden unit of the first layer and every output: they may, since no variable of
the sample is in them.

Masks and the ordering are buffers, so they are saved in the state dict with the weights.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from arcodec import exact
from arcodec.models.layers import ExactModule, quantized_cached


class MaskedLinear(ExactModule):
    """``y = x (W * mask)^T + b``. Without a mask, a plain linear layer.

    The exact path quantizes ``W * mask`` like a 1x1 :class:`~arcodec.models.layers.CausalConv2d`
    (cached until the weights or the mask change) and runs :func:`exact.conv2d` on inputs
    (B, in) that lie on the activation grid.
    """

    def __init__(self, cin: int, cout: int, mask: torch.Tensor | None = None, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(cin, cout, bias=bias)
        if mask is None:
            mask = torch.ones(cout, cin)
        if tuple(mask.shape) != (cout, cin):
            raise ValueError(f"mask of shape {tuple(mask.shape)} for a {cin} -> {cout} layer")
        self.register_buffer("mask", mask.to(torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.exact:
            y = exact.conv2d(x.reshape(-1, x.shape[-1], 1, 1), self._quantized())
            return y.view(*x.shape[:-1], -1)
        return F.linear(x, self.linear.weight * self.mask, self.linear.bias)

    def _quantized(self):
        """Quantized masked weights, recomputed only when the weights or the mask change."""
        w, b, m = self.linear.weight, self.linear.bias, self.mask
        return quantized_cached(self, (w, b, m), lambda: exact.quantize_conv(
            (w.detach() * m).view(w.shape[0], w.shape[1], 1, 1), b))


def one_hot(x: torch.Tensor, levels: int, exact_mode: bool) -> torch.Tensor:
    """Integer values x (...) -> one-hot (..., levels): float64 in exact mode, else float32.

    A float ``x`` that requires grad passes a straight-through gradient: the active entry
    is multiplied by ``1 + (x - x)`` (value 1, derivative 1), so that d output / d x is
    the weight of the active entry. A plain one-hot would hide every dependency from the
    gradient-based causality check (:mod:`arcodec.models.causality`)."""
    idx = torch.round(x.detach()).long() if x.is_floating_point() else x.long()
    oh = F.one_hot(idx, levels)
    if exact_mode:
        return oh.double()
    oh = oh.float()
    if x.is_floating_point() and x.requires_grad:
        oh = oh * (1.0 + (x - x.detach())).unsqueeze(-1).float()
    return oh


class MADE(ExactModule):
    """Autoregressive over ``dims`` variables of ``levels`` levels each.

    ``forward(x, context=None)``: x (B, D) integer values (float, or long), context
    (B, ``context``) features (on the exact grid in exact mode) -> logits (B, K, D).
    ``ordering`` lists the variables in the order they are generated (default 0..D-1).
    """

    def __init__(self, dims: int, levels: int, hidden: Sequence[int] = (128,), context: int = 0,
                 ordering: Sequence[int] | None = None):
        super().__init__()
        if dims < 1 or levels < 2 or not hidden:
            raise ValueError("MADE needs dims >= 1, levels >= 2 and at least one hidden layer")
        order = torch.arange(dims) if ordering is None else torch.as_tensor(list(ordering), dtype=torch.long)
        if sorted(order.tolist()) != list(range(dims)):
            raise ValueError(f"ordering {order.tolist()} is not a permutation of 0..{dims - 1}")
        self.dims, self.levels, self.context = dims, levels, context
        self.register_buffer("ordering", order)
        rank = torch.empty(dims, dtype=torch.long)
        rank[order] = torch.arange(dims)
        # Degrees: input/output units of variable d have degree rank[d] + 1 (1..D); a hidden
        # unit of degree m sees the variables of degree <= m, an output of degree m' sees the
        # hidden units of degree < m'. Hidden degrees cycle through 1..D-1 (0 when D = 1:
        # then the hidden units carry the context only).
        var_deg = (rank + 1).repeat_interleave(levels)  # unit (d, k) at d * K + k
        degrees = [var_deg]
        for h in hidden:
            degrees.append(torch.arange(h) % (dims - 1) + 1 if dims > 1 else torch.zeros(h, dtype=torch.long))
        self.layers = nn.ModuleList(
            MaskedLinear(len(a), len(b), (b[:, None] >= a[None, :]).float())
            for a, b in zip(degrees[:-1], degrees[1:]))
        self.out = MaskedLinear(len(degrees[-1]), dims * levels, (var_deg[:, None] > degrees[-1][None, :]).float())
        if context:
            self.ctx_hidden = MaskedLinear(context, hidden[0])
            self.ctx_out = MaskedLinear(context, dims * levels)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        if x.shape[1:] != (self.dims,):
            raise ValueError(f"MADE over {self.dims} variables got input of shape {tuple(x.shape)}")
        if (context is None) != (self.context == 0):
            raise ValueError(f"this MADE takes {self.context} context features, got "
                             f"{'none' if context is None else tuple(context.shape)}")
        h = one_hot(x, self.levels, self.exact).reshape(b, self.dims * self.levels)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i == 0 and context is not None:
                h = self._add(h, self.ctx_hidden(context))
            h = torch.relu(h)
        out = self.out(h)
        if context is not None:
            out = self._add(out, self.ctx_out(context))
        return out.view(b, self.dims, self.levels).transpose(1, 2)

    def _add(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a + b).clamp(-exact.ACT_LIMIT, exact.ACT_LIMIT) if self.exact else a + b
