"""Quantisation-aware training: the float network run through the integer engine's roundings.

A Gated PixelCNN codes through its integer engine (:mod:`arcodec.codec.gated`): int8
weights per output channel, activations rounded to 511 steps of calibrated scales, gates
rounded to 1/511. Rounding the trained float weights afterwards costs some NLL (1.4 % for
a model fine-tuned with large weights). :class:`EngineEmulation` computes the model's logits
with the same roundings and clamps in float32 (straight-through gradients: a rounding passes
the gradient as if it were the identity, a clamp passes none outside its range), so that
training minimises the code length the engine will actually give. ``arcodec train --set
qat=true`` trains through it; the model itself stays the plain float model, and its
weights are what ships.

The emulation follows the engine layer by layer (its scales from the model's ``act_max``
buffer, as the engine reads them): the vertical pre-activation on its scale (clamped to the
gate tables' range), the horizontal pre-activation as one accumulator of the horizontal
convolution and the link (their weights quantised together per output channel, as
:class:`arcodec.codec.engine.JointLayer` does), the gates, the residual stream on its one
scale, the head's hidden layer. It differs from the engine only where a value lands within
rounding error of a step's midpoint, and in the biases' rounding to accumulator units
(``tests/test_qat.py`` holds its NLL to the engine's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from arcodec.codec.gated import ACT, GATE, GATE_RANGE, WEIGHTS


def _round(x: torch.Tensor) -> torch.Tensor:
    """Round half up with a straight-through gradient."""
    return x + (torch.floor(x + 0.5) - x).detach()


def _requant(x: torch.Tensor, scale: float, lo: float | None, hi: float | None) -> torch.Tensor:
    """x on the grid of ``scale`` (rounded, clamped to [lo, hi] steps), as real values."""
    q = _round(x / scale)
    if lo is not None:
        q = q.clamp(lo, hi)
    return q * scale


def _weights(weight: torch.Tensor, in_scale: float = 1.0) -> torch.Tensor:
    """Per-output-channel int8 weights (straight-through), as real values."""
    return _joint([weight], [in_scale])[0]


def _joint(weights: list[torch.Tensor], in_scales: list[float]) -> list[torch.Tensor]:
    """The weights of several input parts, each times its input's scale, quantised together
    per output channel (one scale, the largest magnitude / WEIGHTS), then divided back."""
    real = [w.reshape(len(w), -1) * s for w, s in zip(weights, in_scales)]
    peak = torch.cat(real, dim=1).abs().amax(dim=1, keepdim=True).detach()
    unit = torch.where(peak > 0, peak / WEIGHTS, torch.ones_like(peak))
    return [(_round(r / unit) * unit / s).view_as(w) for r, w, s in zip(real, weights, in_scales)]


def _conv(x: torch.Tensor, layer, weight: torch.Tensor) -> torch.Tensor:
    """The causal convolution ``layer`` (a CausalConv2d) with other weights, no bias."""
    if any(layer.pad):
        x = F.pad(x, layer.pad)
    return F.conv2d(x, weight, None, dilation=layer.dilation)


def _gate(pre: torch.Tensor) -> torch.Tensor:
    a, b = pre.chunk(2, dim=1)
    return _round(torch.tanh(a) * torch.sigmoid(b) * GATE) / GATE


class EngineEmulation(nn.Module):
    """``EngineEmulation(model)(x)``: the logits of a Gated PixelCNN ``model`` (B, K, C, H, W)
    as its integer engine would compute them, differentiable (see the module docstring). The
    model must be calibrated (its ``act_max``); the scales are read at every call, so a
    calibration during training takes effect at once."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if getattr(model, "arch", None) != "gated-pixelcnn" or not model.config.causal or model.config.classes:
            raise ValueError("quantisation-aware training emulates the integer engine of causal gated-pixelcnn "
                             "models without classes")
        self.model = model

    def scales(self) -> list[float]:
        peaks = self.model.act_max.tolist()
        if not all(p > 0 for p in peaks):
            raise ValueError("quantisation-aware training needs a calibrated model (its act_max): start from a "
                             "trained one (--init) or calibrate it first")
        return peaks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, cfg = self.model, self.model.config
        n = cfg.layers
        peaks = self.scales()
        stream = peaks[2 * n] / ACT
        v = h = x.float() * (2.0 / (cfg.levels - 1)) - 1.0  # the levels (2k - (K - 1)) / (K - 1): exact
        h_scale = 1.0 / (cfg.levels - 1)
        for i, layer in enumerate(m.layers):
            sv = min(peaks[i], GATE_RANGE) / ACT
            sh = min(peaks[n + i], GATE_RANGE) / ACT
            pre_v = _conv(v, layer.v, _weights(layer.v.conv.weight)) + layer.v.conv.bias.view(1, -1, 1, 1)
            pre_v = _requant(pre_v, sv, -ACT, ACT)
            w_h, w_link = _joint([layer.h.conv.weight, layer.link.conv.weight], [h_scale, sv])
            pre_h = (_conv(h, layer.h, w_h) + _conv(pre_v, layer.link, w_link)
                     + (layer.h.conv.bias + layer.link.conv.bias).view(1, -1, 1, 1))
            pre_h = _requant(pre_h, sh, -ACT, ACT)
            out = _conv(_gate(pre_h), layer.out, _weights(layer.out.conv.weight)) + layer.out.conv.bias.view(1, -1, 1, 1)
            out = _requant(out, stream, None, None)
            h = out if layer.first else h + out
            h = h.clamp(-ACT * stream, ACT * stream)
            v, h_scale = _gate(pre_v), stream
        hidden = peaks[2 * n + 1] / ACT
        first, last = m.head[1], m.head[3]
        t = _conv(h.clamp(min=0), first, _weights(first.conv.weight)) + first.conv.bias.view(1, -1, 1, 1)
        t = _requant(t, hidden, 0, ACT)
        logits = _conv(t, last, _weights(last.conv.weight)) + last.conv.bias.view(1, -1, 1, 1)
        b, _, hh, ww = logits.shape
        return logits.view(b, cfg.levels, cfg.channels, hh, ww)
