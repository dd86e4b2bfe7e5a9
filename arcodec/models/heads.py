"""Output distributions. The categorical head's NLL in bits is *the* NLL of the project:
training, evaluation and the codec's size estimate all call :func:`nll_bits`.

Every head hands the rest of the project logits (B, K, C, H, W) over the K levels; a head
whose output is a normalised log-probability (:class:`DiscretizedLogisticMixture`) fits
the same place, since the cross-entropy of log-probabilities is -log p and the coder's
weights exp(logit - max) are proportional to p."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from arcodec import exact
from arcodec.models.layers import ExactModule


def nll_bits(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Code length -log2 p(x) of every sub-pixel, in bits.

    logits: (B, K, C, H, W) over K levels; x: integer levels (B, C, H, W).
    Returns (B, C, H, W) float tensor; ``.mean()`` is bits/dim. Any (N, K, ...) logits with
    (N, ...) levels work the same ((N, K) with (N,) is the fastest layout).
    """
    return F.cross_entropy(logits.float(), x.long(), reduction="none") / math.log(2.0)


class DiscretizedLogisticMixture(ExactModule):
    """Discretized logistic mixture (Salimans et al., 2017, "PixelCNN++"), one mixture per
    sub-pixel, as log-probabilities over the K levels.

    ``forward(pi, mu, log_s)``: mixture logits, means and log scales, each (B, M, C, H, W),
    -> log p (B, K, C, H, W). Level k sits at 2k / (K-1) - 1 in [-1, 1]; its bin reaches
    1 / (K-1) to either side, the first and last bins take the tails (the CDF from -inf, to
    +inf). log s is clamped to [-7, 7] on both paths.

    Float path: ln(sigmoid(a) - sigmoid(b)) = ln sigmoid(a) + ln sigmoid(-b) + ln(1 - exp(-(a - b)))
    with a - b = 2 / ((K-1) s): log-sigmoids and expm1, stable for every argument; the
    components are combined with a log-sum-exp.

    Exact path (:func:`exact.logistic_mixture`): the same formula in int64 fixed point with
    integer-built tables, rounded onto the activation grid: a pure function of the grid
    inputs, identical on every machine and batch size.
    """

    def __init__(self, levels: int, components: int):
        super().__init__()
        if levels < 2 or components < 1:
            raise ValueError("a logistic mixture needs levels >= 2 and components >= 1")
        self.levels, self.components = levels, components

    def extra_repr(self) -> str:
        return f"levels={self.levels}, components={self.components}"

    def forward(self, pi: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
        if self.exact:
            return exact.logistic_mixture(pi, mu, log_s, self.levels)
        K = self.levels
        r = float(exact.LOG_SCALE_RANGE)
        log_s = log_s.clamp(-r, r)
        inv = torch.exp(-log_s).unsqueeze(2)  # (B, M, 1, C, H, W)
        edges = (torch.arange(K - 1, device=mu.device, dtype=mu.dtype) * 2 + 2 - K) / (K - 1)
        t = (edges.view(1, 1, -1, 1, 1, 1) - mu.unsqueeze(2)) * inv  # (B, M, K-1, C, H, W)
        upper, lower = F.logsigmoid(t), F.logsigmoid(-t)
        gap = torch.log(-torch.expm1(-2.0 * inv / (K - 1)))  # ln(1 - exp(-(a - b)))
        comp = torch.cat([upper[:, :, :1], upper[:, :, 1:] + lower[:, :, :-1] + gap, lower[:, :, -1:]], dim=2)
        return torch.logsumexp(F.log_softmax(pi, dim=1).unsqueeze(2) + comp, dim=1)

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, 3, M, H, W) or (B, C * 3 * M, H, W) raw parameters (channel c's block holds
        its M logits, M means, M log scales) -> (pi, mu, log_s), each (B, M, C, H, W)."""
        b, h, w = params.shape[0], params.shape[-2], params.shape[-1]
        p = params.reshape(b, -1, 3, self.components, h, w).transpose(1, 3)  # (B, M, 3, C, H, W)
        return p[:, :, 0], p[:, :, 1], p[:, :, 2]
