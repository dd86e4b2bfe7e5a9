"""A local autoregressive photo model (in the manner of NeLLoC, Zhang, Zhang & McDonagh 2021).

Every pixel's distribution depends only on a small causal window: the ``horizon`` rows
above it (``horizon`` columns to either side) and the ``horizon`` pixels to its left in its
own row, through one masked (2h+1) x (2h+1) type-A convolution; then ``blocks`` residual
blocks of 1x1 convolutions, which do not widen the window. The head is a discretized
logistic mixture per sub-pixel (PixelCNN++, Salimans et al. 2017) whose colour channels are
coupled linearly: the mean of G moves with the pixel's R, the mean of B with its R and G
(one coefficient per component and pair). The whole trunk runs once per pixel; only the
coupling differs between the channels of a pixel.

Because the window is small and the network is fully convolutional, the model codes any
image size, and a decoder can decode every pixel on a wavefront t = c + (h+1) r at once
(:mod:`arcodec.coding.wavefront`).

Outputs:

* ``forward(x)``: log-probabilities (B, K, C, H, W) over the K levels (teacher forcing: the
  coupling uses x's earlier channels), with the uniform floor the coder adds;
* ``objective(x, forward)``: the training loss, the code length in bits at x of every
  sub-pixel whose window lies inside the crop (no zero-padded border is trained on);
* in exact mode (the codec), ``exact_params`` / ``exact_params_at`` give the head's raw
  parameters as integers on the activation grid and ``channel_params`` applies the colour
  coupling in integer arithmetic; :mod:`arcodec.coding.mixture` turns them into the
  coder's integer frequency tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arcodec.models import exact
from arcodec.models.heads import DiscretizedLogisticMixture
from arcodec.models.layers import CausalConv2d, ExactModule, MaskedConv2d
from arcodec.registry import register_model

# The coder's frequency tables have this many bits of precision; every level keeps at least
# one unit, which is the uniform floor (levels / 2**TABLE_BITS of the mass). The float path
# mixes in the same floor, so training optimises what the coder pays.
TABLE_BITS = 24


@dataclass(frozen=True)
class LocalPhotoConfig:
    channels: int = 3
    levels: int = 256
    hidden: int = 128
    horizon: int = 3  # rows above and columns to either side the window reaches
    blocks: int = 2  # residual blocks of two 1x1 convolutions
    components: int = 10  # logistics in each sub-pixel's mixture

    def __post_init__(self):
        if self.channels not in (1, 2, 3, 4):
            raise ValueError(f"local-photo codes 1..4 channels, got {self.channels}")
        if not 2 <= self.levels <= exact.MIXTURE_MAX_LEVELS:
            raise ValueError(f"levels must be 2..{exact.MIXTURE_MAX_LEVELS}, got {self.levels}")
        if self.horizon < 1 or self.hidden < 1 or self.blocks < 0 or not 1 <= self.components <= 64:
            raise ValueError("local-photo needs horizon >= 1, hidden >= 1, blocks >= 0, components 1..64")


def floor_eps(levels: int) -> float:
    """The uniform floor's share of the mass, as the coder's tables give it."""
    return levels / 2.0**TABLE_BITS


def scale_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer levels -> [-1, 1] (float32 for training)."""
    return x.float() * (2.0 / (levels - 1)) - 1.0


def exact_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer levels -> [-1, 1] on the activation grid (float64): an elementwise IEEE
    division and a rounding, the same bits everywhere."""
    return exact.to_grid(x.double() * (2.0 / (levels - 1)) - 1.0)


@register_model("local-photo", LocalPhotoConfig)
class LocalPhotoModel(ExactModule):
    """NeLLoC-style local model; see the module docstring."""

    scan = "wavefront"  # the codec decodes it on wavefronts (arcodec.coding.wavefront)

    def __init__(self, config: LocalPhotoConfig):
        super().__init__()
        self.config = config
        c, h, m = config.channels, config.horizon, config.components
        self.pairs = [(a, b) for a in range(c) for b in range(a)]  # (channel, earlier channel)
        self.n_params = c * 3 * m + m * len(self.pairs)
        self.inp = MaskedConv2d(c, config.hidden, 2 * h + 1, "A")
        self.blocks = nn.ModuleList(
            nn.ModuleList([CausalConv2d(config.hidden, config.hidden, (1, 1), "point"),
                           CausalConv2d(config.hidden, config.hidden, (1, 1), "point")])
            for _ in range(config.blocks))
        self.out = CausalConv2d(config.hidden, self.n_params, (1, 1), "point")
        self.mixture = DiscretizedLogisticMixture(config.levels, m)

    @property
    def horizon(self) -> int:
        return self.config.horizon

    def receptive_field(self) -> tuple[int, int]:
        """(rows above, columns to either side) that a pixel's distribution reaches."""
        return self.config.horizon, self.config.horizon

    # ------------------------------------------------------------------ trunk
    def _body(self, t: torch.Tensor) -> torch.Tensor:
        """Everything after the first convolution: residual blocks and the head."""
        if self.exact:  # ReLU and sums of grid values stay on the grid: exact
            t = t.clamp(min=0)
            for a, b in self.blocks:
                t = exact.to_grid(t + b(a(t).clamp_(min=0))).clamp_(min=0)
            return self.out(t)
        t = F.relu(t)
        for a, b in self.blocks:
            t = F.relu(t + b(F.relu(a(t))))
        return self.out(t)

    def raw(self, x: torch.Tensor, valid: bool = False) -> torch.Tensor:
        """Raw head parameters (B, n_params, H, W) of integer images x (B, C, H, W).

        ``valid``: only the positions whose window lies inside x, (B, n_params, H - h,
        W - 2h) for rows h.. and columns h..W-h-1 (what training uses)."""
        if self.exact:
            return self._body(self.inp(exact_levels(x, self.config.levels)))
        xs = scale_levels(x, self.config.levels)
        if valid:
            t = F.conv2d(xs, self.inp.conv.weight * self.inp.mask, self.inp.conv.bias)
        else:
            t = self.inp(xs)
        return self._body(t)

    # ------------------------------------------------------------------ head
    def split(self, raw: torch.Tensor, x: torch.Tensor):
        """(pi, mu, log_s), each (B, M, C, H, W), of raw parameters (B, n_params, H, W),
        the means of each channel moved by the pixel's earlier channels of x (float path)."""
        cfg = self.config
        b, _, hh, ww = raw.shape
        m, c = cfg.components, cfg.channels
        p = raw[:, : c * 3 * m].reshape(b, c, 3, m, hh, ww).permute(0, 2, 3, 1, 4, 5)  # (B, 3, M, C, H, W)
        pi, mu, log_s = p[:, 0], p[:, 1], p[:, 2]
        if self.pairs:
            coef = torch.tanh(raw[:, c * 3 * m:].reshape(b, len(self.pairs), m, hh, ww))
            xs = scale_levels(x, cfg.levels)
            shift = [torch.zeros_like(mu[:, :, 0]) for _ in range(c)]
            for k, (ch, prev) in enumerate(self.pairs):
                shift[ch] = shift[ch] + coef[:, k] * xs[:, prev].unsqueeze(1)
            mu = mu + torch.stack(shift, dim=2)
        return pi, mu, log_s

    def log_prob_at(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """ln p(x) (B, C, H, W) of every sub-pixel under its floored mixture (float path)."""
        cfg = self.config
        pi, mu, log_s = self.split(raw, x)
        K = cfg.levels
        r = float(exact.LOG_SCALE_RANGE)
        log_s = log_s.clamp(-r, r)
        inv = torch.exp(-log_s)
        centred = scale_levels(x, K).unsqueeze(1) - mu
        half = 1.0 / (K - 1)
        plus, minus = inv * (centred + half), inv * (centred - half)
        mid = F.logsigmoid(plus) + F.logsigmoid(-minus) + torch.log(-torch.expm1(-2.0 * half * inv))
        xk = x.unsqueeze(1).expand_as(mid)
        comp = torch.where(xk == 0, F.logsigmoid(plus), torch.where(xk == K - 1, F.logsigmoid(-minus), mid))
        logp = torch.logsumexp(F.log_softmax(pi, dim=1) + comp, dim=1)
        eps = floor_eps(K)
        return torch.logaddexp(logp + math.log1p(-eps), torch.full_like(logp, math.log(eps / K)))

    def objective(self, x: torch.Tensor, forward=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean bits, bits of each sub-pixel) over the positions whose window lies inside
        the crop: rows h.., columns h..W-h-1."""
        h = self.config.horizon
        x = x.long()
        if x.shape[-2] <= h or x.shape[-1] <= 2 * h:
            raise ValueError(f"training crops must be larger than {h + 1}x{2 * h + 1} for local-photo")
        raw = (forward or self)(x, valid=True)
        bits = -self.log_prob_at(raw, x[:, :, h:, h: x.shape[-1] - h]) / math.log(2.0)
        return bits.mean(), bits

    def forward(self, x: torch.Tensor, valid: bool = False) -> torch.Tensor:
        """Log-probabilities (B, K, C, H, W); with ``valid``, the raw parameters of the
        positions inside the crop (see :meth:`raw`)."""
        x = x.long() if not torch.is_floating_point(x) else x
        if valid:
            return self.raw(x, valid=True)
        if torch.is_floating_point(x) and not self.exact:  # causality checks pass float levels
            raw = self._body(self.inp(x * (2.0 / (self.config.levels - 1)) - 1.0))
        else:
            raw = self.raw(x.long())
        if self.exact:
            return self._exact_log_probs(raw, x.long())
        pi, mu, log_s = self.split(raw, x)
        logp = self.mixture(pi, mu, log_s)
        eps = floor_eps(self.config.levels)
        return torch.logaddexp(logp + math.log1p(-eps), torch.full_like(logp, math.log(eps / self.config.levels)))

    # ------------------------------------------------------------------ exact (codec) path
    def exact_params(self, x: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """Raw parameters of rows r0..r1-1 of integer images x (B, C, H, W) as int64 grid
        units (B, n_params, r1 - r0, W), from the crop of the rows the window reaches."""
        lo = max(0, r0 - self.config.horizon)
        return torch.round(self.raw(x[:, :, lo:r1])[:, :, r0 - lo:] * float(1 << exact.ACT_FRAC)).long()

    def exact_params_at(self, windows: torch.Tensor) -> torch.Tensor:
        """Raw parameters (N, n_params) int64 of N pixels from their windows (N, C, h + 1,
        2h + 1) of grid values (:func:`exact_levels`; rows r-h..r, columns c-h..c+h; what the
        mask hides may hold anything)."""
        t = exact.conv2d(windows, self.inp._quantized())  # one output per window
        return torch.round(self._body(t)[:, :, 0, 0] * float(1 << exact.ACT_FRAC)).long()

    def channel_params(self, raw: torch.Tensor, prev: torch.Tensor, ch: int):
        """(logits, means, log scales), each (N, M) int64 in grid units, of channel ``ch``
        of N pixels with raw parameters (N, n_params) and their earlier channels ``prev``
        (N, >= ch) integer levels. The coupling is integer arithmetic: tanh from the exact
        table (2**-24 units) times the scaled level (2**-12 units), rounded to the grid."""
        cfg = self.config
        m = cfg.components
        base = ch * 3 * m
        logits, mu, log_s = raw[:, base: base + m], raw[:, base + m: base + 2 * m], raw[:, base + 2 * m: base + 3 * m]
        r = exact.LOG_SCALE_RANGE << exact.ACT_FRAC
        log_s = log_s.clamp(-r, r)
        terms = [(k, prev_ch) for k, (c, prev_ch) in enumerate(self.pairs) if c == ch]
        if terms:
            tanh = _tanh_table_int()
            n = exact.TABLE_RANGE << exact.ACT_FRAC
            acc = torch.zeros_like(mu)
            for k, prev_ch in terms:
                coef = raw[:, cfg.channels * 3 * m + k * m: cfg.channels * 3 * m + (k + 1) * m]
                tq = tanh[(coef.clamp(-n, n) + n)]
                xq = torch.round(exact_levels(prev[:, prev_ch], cfg.levels) * float(1 << exact.ACT_FRAC)).long()
                acc = acc + tq * xq.unsqueeze(1)
            shift = exact.TABLE_FRAC
            mu = mu + torch.div(acc + (1 << (shift - 1)), 1 << shift, rounding_mode="floor")
        return logits, mu, log_s

    def _exact_log_probs(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Exact-mode forward (for tools that want (B, K, C, H, W) numbers): the generic exact
        logistic mixture of the coupled parameters. The codec itself uses integer frequency
        tables (arcodec.coding.mixture), which agree with these to the floor's precision."""
        b, _, hh, ww = raw.shape
        flat = raw.permute(0, 2, 3, 1).reshape(-1, self.n_params)
        xf = x.permute(0, 2, 3, 1).reshape(-1, self.config.channels)
        outs = []
        for ch in range(self.config.channels):
            lg, mu, ls = self.channel_params(flat, xf, ch)
            g = [t.double().div(float(1 << exact.ACT_FRAC)).view(b, hh, ww, -1).permute(0, 3, 1, 2).unsqueeze(2)
                 for t in (lg, mu, ls)]
            outs.append(exact.logistic_mixture(*g, self.config.levels))
        return torch.cat(outs, dim=2)


def _tanh_table_int() -> torch.Tensor:
    """The exact tanh table (2**-TABLE_FRAC units) as int64."""
    global _TANH
    if _TANH is None:
        _TANH = torch.round(exact.gate_tables()[0] * float(1 << exact.TABLE_FRAC)).long()
    return _TANH


_TANH = None
