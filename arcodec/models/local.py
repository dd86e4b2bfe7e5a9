"""A local autoregressive photo model (in the manner of NeLLoC, Zhang, Zhang & McDonagh 2021).

Every pixel's distribution depends only on a small causal window: the ``horizon`` rows
above it (``horizon`` columns to either side) and the ``horizon`` pixels to its left in its
own row, through one masked (2h+1) x (2h+1) type-A convolution; then ``blocks`` residual
blocks of 1x1 convolutions, which do not widen the window. The head is a discretized
logistic mixture per sub-pixel (PixelCNN++, Salimans et al. 2017) whose colour channels are
coupled linearly: the mean of G moves with the pixel's R, the mean of B with its R and G
(one coefficient per component and pair). With ``surprise``, a channel's mixture also
follows how surprising the pixel's earlier channels were: the code length u = -ln p of each
earlier channel's level (clamped to [0, 16] nats) moves every component's logit and log
scale by a learnt gain times (u - 2.5). Where R was a surprise (an edge, texture) G and B
take their broad components; where it was predictable, their narrow ones. With
``channel_head`` (k units), every channel after the first has a small head of its own on the
pixel's earlier channels: k units, ReLU (saturating at 256) of the trunk's k outputs for that channel plus a
learnt mix of the earlier channels' scaled levels and their centred code lengths (u - 2.5) /
4, whose mix moves the channel's logits, means and log scales (all 3 M); its output weights
start at zero, so a model grown with it starts as the one it grew from. The whole trunk runs
once per pixel; only the coupling, the surprise and the channel heads differ between the
channels of a pixel.

Because the window is small and the network is fully convolutional, the model codes any
image size, and a decoder can decode every pixel on a wavefront t = c + (h+1) r at once
(:mod:`arcodec.codec.wavefront`).

Outputs:

* ``forward(x)``: log-probabilities (B, K, C, H, W) over the K levels (teacher forcing: the
  coupling uses x's earlier channels), with the uniform floor the coder adds;
* ``objective(x, forward)``: the training loss, the code length in bits at x of every
  sub-pixel whose window lies inside the crop (no zero-padded border is trained on);
* for the codec, :class:`arcodec.codec.engine.LocalEngine` is built from the weights (an
  integer network giving the head's raw parameters on the 2**-12 grid), ``channel_params``
  applies the colour coupling to them in integer arithmetic, and
  :mod:`arcodec.codec.mixture` turns them into the coder's integer frequency tables.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from arcodec.errors import ModelError
from arcodec import exact
from arcodec.models.heads import DiscretizedLogisticMixture
from arcodec.models.layers import CausalConv2d, ExactModule, MaskedConv2d, set_exact
from arcodec.models.local_layout import (HEAD_G_MAX, HEAD_U_SCALE, SURPRISE_CENTRE, SURPRISE_MAX, LocalPhotoConfig,
                                        floor_eps, head_layout, n_params, pairs)
from arcodec.registry import register_model


def scale_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer levels -> [-1, 1] (float32 for training)."""
    return x.float() * (2.0 / (levels - 1)) - 1.0


@register_model("local-photo", LocalPhotoConfig)
class LocalPhotoModel(ExactModule):
    """NeLLoC-style local model; see the module docstring."""

    scan = "wavefront"  # the codec decodes it on wavefronts (arcodec.codec.wavefront)
    # settings that fine-tuning (``arcodec train --init``) may switch on: they add parameters
    # that start at zero, so the grown model starts as the model it grew from
    growable = ("surprise",)
    # sizes that fine-tuning may enlarge: the model starts as the smaller one (grow_from)
    enlargeable = ("hidden", "blocks", "channel_head", "horizon")

    def __init__(self, config: LocalPhotoConfig):
        super().__init__()
        self.config = config
        c, h, m = config.channels, config.horizon, config.components
        self.pairs = pairs(c)  # (channel, earlier channel)
        self.n_params = n_params(config)
        self.inp = MaskedConv2d(c, config.hidden, 2 * h + 1, "A")
        self.blocks = nn.ModuleList(
            nn.ModuleList([CausalConv2d(config.hidden, config.hidden, (1, 1), "point"),
                           CausalConv2d(config.hidden, config.hidden, (1, 1), "point")])
            for _ in range(config.blocks))
        self.out = CausalConv2d(config.hidden, self.n_params, (1, 1), "point")
        self.mixture = DiscretizedLogisticMixture(config.levels, m)
        if config.surprise and self.pairs:
            # gains of each (channel, earlier channel) pair and component: row 0 on the
            # logits, row 1 on the log scales; zero: the surprise changes nothing
            self.surprise_gain = nn.Parameter(torch.zeros(2, len(self.pairs), m))
        else:
            self.surprise_gain = None
        if config.channel_head:
            # each later channel's head: its k units' weights on the earlier channels' levels
            # and code lengths (features 0..C-2: levels, C-1..2C-3: code lengths), and the
            # units' weights (zero: the heads change nothing) and biases on the 3 M parameters
            f = 2 * (c - 1)
            self.head_in = nn.Parameter(torch.randn(c - 1, config.channel_head, f) / math.sqrt(f))
            self.head_out = nn.Parameter(torch.zeros(c - 1, config.channel_head, 3 * m))
            self.head_bias = nn.Parameter(torch.zeros(c - 1, 3 * m))
        else:
            self.head_in = self.head_out = self.head_bias = None
        # largest residual-stream and inner activations on training images (the integer
        # engine's scales, set by calibrate(); 0: not calibrated)
        self.register_buffer("act_max", torch.zeros(1 + config.blocks))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the engine have no act_max: keep it uncalibrated (zeros)
        state_dict.setdefault(prefix + "act_max", torch.zeros(1 + self.config.blocks))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def horizon(self) -> int:
        return self.config.horizon

    def receptive_field(self) -> tuple[int, int]:
        """(rows above, columns to either side) that a pixel's distribution reaches."""
        return self.config.horizon, self.config.horizon

    # ------------------------------------------------------------------ trunk
    def _body(self, t: torch.Tensor) -> torch.Tensor:
        """Everything after the first convolution: residual blocks and the head."""
        t = F.relu(t)
        for a, b in self.blocks:
            t = F.relu(t + b(F.relu(a(t))))
        return self.out(t)

    def raw(self, x: torch.Tensor, valid: bool = False) -> torch.Tensor:
        """Raw head parameters (B, n_params, H, W) of integer images x (B, C, H, W).

        ``valid``: only the positions whose window lies inside x, (B, n_params, H - h,
        W - 2h) for rows h.. and columns h..W-h-1 (what training uses)."""
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
            coef = torch.tanh(raw[:, c * 3 * m: (c * 3 + len(self.pairs)) * m].reshape(b, len(self.pairs), m, hh, ww))
            xs = scale_levels(x, cfg.levels)
            shift = [torch.zeros_like(mu[:, :, 0]) for _ in range(c)]
            for k, (ch, prev) in enumerate(self.pairs):
                shift[ch] = shift[ch] + coef[:, k] * xs[:, prev].unsqueeze(1)
            mu = mu + torch.stack(shift, dim=2)
        return pi, mu, log_s

    def _component_log_probs(self, mu: torch.Tensor, log_s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """ln p_m(x) (B, M, ...) of levels x (B, ...) under each logistic (means and log scales
        (B, M, ...)): ln sigmoid(a) + ln sigmoid(-b) + ln(1 - exp(-(a - b))), the first and last
        bins taking the tails."""
        K = self.config.levels
        r = float(exact.LOG_SCALE_RANGE)
        log_s = log_s.clamp(-r, r)
        inv = torch.exp(-log_s)
        centred = scale_levels(x, K).unsqueeze(1) - mu
        half = 1.0 / (K - 1)
        plus, minus = inv * (centred + half), inv * (centred - half)
        mid = F.logsigmoid(plus) + F.logsigmoid(-minus) + torch.log(-torch.expm1(-2.0 * half * inv))
        xk = x.unsqueeze(1).expand_as(mid)
        return torch.where(xk == 0, F.logsigmoid(plus), torch.where(xk == K - 1, F.logsigmoid(-minus), mid))

    def mixtures(self, raw: torch.Tensor, x: torch.Tensor):
        """(pi, mu, log_s, ln p): every sub-pixel's mixture (B, M, C, H, W), the means moved by
        the pixel's earlier channels of x and, with ``surprise``, the logits and log scales by
        their code lengths, and ln p(x) (B, C, H, W) of every sub-pixel under its floored
        mixture (float path; channel by channel, since a channel's mixture may depend on the
        earlier channels' ln p)."""
        pi, mu, log_s = self.split(raw, x)
        pis, means, scales, logps = [], [], [], []
        for ch in range(self.config.channels):
            p, m, s = pi[:, :, ch], mu[:, :, ch], log_s[:, :, ch]
            if self.surprise_gain is not None:
                for k, (c, prev) in enumerate(self.pairs):
                    if c == ch:
                        u = ((-logps[prev]).clamp(0.0, SURPRISE_MAX) - SURPRISE_CENTRE).unsqueeze(1)
                        p = p + self.surprise_gain[0, k].view(1, -1, 1, 1) * u
                        s = s + self.surprise_gain[1, k].view(1, -1, 1, 1) * u
            if self.head_in is not None and ch:
                d = self._channel_head(raw, x, logps, ch)
                M = self.config.components
                p, m, s = p + d[:, :M], m + d[:, M: 2 * M], s + d[:, 2 * M:]
            comp = self._component_log_probs(m, s, x[:, ch])
            logp = torch.logsumexp(F.log_softmax(p, dim=1) + comp, dim=1)
            logps.append(self._floored(logp))
            pis.append(p)
            means.append(m)
            scales.append(s)
        return torch.stack(pis, 2), torch.stack(means, 2), torch.stack(scales, 2), torch.stack(logps, 1)

    def _channel_head(self, raw: torch.Tensor, x: torch.Tensor, logps: list, ch: int) -> torch.Tensor:
        """What channel ``ch``'s own head adds to its logits, means and log scales (B, 3 M,
        H, W): ReLU of its trunk inputs plus its mix of the earlier channels' scaled levels
        of x and their centred code lengths (from ``logps``, theirs), through its output
        weights."""
        c = self.config.channels
        a, b = self.head_layout()[ch]["head"]
        levels = scale_levels(x[:, :ch], self.config.levels)
        u = torch.stack([(-q).clamp(0.0, SURPRISE_MAX) for q in logps[:ch]], 1)
        feats = torch.cat([levels, (u - SURPRISE_CENTRE) * HEAD_U_SCALE], 1)  # (B, 2 ch, H, W)
        w_in = self.head_in[ch - 1][:, list(range(ch)) + list(range(c - 1, c - 1 + ch))]  # (k, 2 ch)
        g = (raw[:, a:b] + torch.einsum("bfhw,kf->bkhw", feats, w_in)).clamp(0.0, HEAD_G_MAX)  # ReLU, saturating
        return torch.einsum("bkhw,kp->bphw", g, self.head_out[ch - 1]) + self.head_bias[ch - 1].view(1, -1, 1, 1)

    def log_prob_at(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """ln p(x) (B, C, H, W) of every sub-pixel under its floored mixture (float path)."""
        return self.mixtures(raw, x)[3]

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
            raise ModelError("local-photo has no exact-mode forward pass: the codec codes it through its "
                             "integer engine (arcodec.codec.engine); tools that sample or query need a raster model")
        if self.surprise_gain is not None or self.head_in is not None:
            pi, mu, log_s, _ = self.mixtures(raw, x)
        else:
            pi, mu, log_s = self.split(raw, x)
        return self._floored(self.mixture(pi, mu, log_s))

    def _floored(self, logp: torch.Tensor) -> torch.Tensor:
        """ln p mixed with the uniform floor the coder's tables add (``floor_eps``)."""
        K = self.config.levels
        eps = floor_eps(K)
        return torch.logaddexp(logp + math.log1p(-eps), torch.full_like(logp, math.log(eps / K)))

    @torch.no_grad()
    def grow_from(self, state: dict) -> None:
        """Start from the weights ``state`` of a smaller model of this architecture (fewer
        hidden channels, blocks or channel-head units, or no surprise): every old tensor goes into the leading
        corner of its new one, and the new parts are set so that this model computes exactly
        what the smaller one did. A wider window (``horizon``) takes the old taps in its
        bottom rows, centred, the new taps zero. New hidden channels reach no old unit and no output (those
        weights zero), a new block adds zero to the residual stream (its second convolution
        zero), the surprise gains and the new channel-head units' outputs start at zero. The new units' own weights keep their random
        start, so they learn. When the network grew, the engine's scales (``act_max``) are
        reset (training calibrates them at every validation). Weights of the same size load as they are."""
        own = self.state_dict()
        extra = sorted(set(state) - set(own))
        if extra:
            raise ModelError(f"the smaller model's weights do not fit: {', '.join(extra[:4])}")
        if "head_in" in state and state["head_in"].shape != own["head_in"].shape:
            raise ModelError(f"channel heads are added to a model without them, not enlarged (it has "
                             f"{state['head_in'].shape[1]} units, not {self.config.channel_head})")
        enlarged = False
        for key, new in own.items():
            if key.endswith("mask") or key == "act_max":
                continue
            if key not in state:
                if key in ("surprise_gain", "head_out", "head_bias") or (key.startswith("blocks.")
                                                                          and key.split(".")[2] == "1"):
                    new.zero_()  # gains that start neutral, a new block's or channel head's output
                elif not key.startswith("blocks.") and key != "head_in":  # a new block's or head's input stays random
                    raise ModelError(f"the smaller model's weights lack {key}")
                enlarged = enlarged or key.startswith("blocks.")
                continue
            old = state[key]
            if old.dim() != new.dim() or any(a > b for a, b in zip(old.shape, new.shape)):
                raise ModelError(f"{key} is {tuple(old.shape)} in the smaller model, {tuple(new.shape)} here")
            enlarged = enlarged or old.shape != new.shape
            place = [slice(0, n) for n in old.shape]
            if key == "inp.conv.weight":  # a wider window: the old taps at its bottom (the pixel's row), centred
                rows, cols = new.shape[2] - old.shape[2], (new.shape[3] - old.shape[3]) // 2
                place[2:] = slice(rows, new.shape[2]), slice(cols, cols + old.shape[3])
                new[: old.shape[0]] = 0.0  # the old units' new taps start at zero (new units' stay random)
            new[tuple(place)] = old
            if new.dim() >= 2:
                new[: old.shape[0], old.shape[1]:] = 0.0  # new channels into old units
        if enlarged or "act_max" not in state:
            self.act_max.zero_()
        else:
            self.act_max.copy_(state["act_max"])

    # ------------------------------------------------------------------ for the codec
    @torch.no_grad()
    def calibrate(self, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """Set ``act_max`` to the largest residual-stream and inner activations of the float
        network on ``images`` (N, C, H, W) integer levels: the integer engine's scales."""
        was, was_exact = self.training, self.exact
        self.eval()
        set_exact(self, False)
        t_max, u_max = 0.0, [0.0] * len(self.blocks)
        for i in range(0, len(images), batch):
            t = F.relu(self.inp(scale_levels(images[i: i + batch].long(), self.config.levels)))
            t_max = max(t_max, float(t.max()))
            for k, (a, b) in enumerate(self.blocks):
                u = F.relu(a(t))
                u_max[k] = max(u_max[k], float(u.max()))
                t = F.relu(t + b(u))
                t_max = max(t_max, float(t.max()))
        self.train(was)
        set_exact(self, was_exact)
        self.act_max.copy_(torch.tensor([t_max, *u_max]))
        return self.act_max

    def head_layout(self) -> list[dict]:
        """Where channel c's mixture sits in the head's outputs (:func:`local_layout.head_layout`)."""
        return head_layout(self.config)
