"""Autoregressive implicit quantile networks (Ostrovski, Dabney and Munos, 2018, "Autoregressive
Quantile Networks for Generative Modeling"), on the PixelCNN-MADE skeleton.

Instead of a distribution over the K levels of sub-pixel (i, c), the network gives its
quantile function: q(tau | x_<i, x_i^<c) for any tau in (0, 1), the value below which the
sub-pixel falls with probability tau. It is trained with the quantile (pinball) loss

    rho_tau(u) = u * (tau - [u < 0]),   u = y - q(tau),   tau ~ U(0, 1)

whose minimiser over q is the tau-quantile of y's conditional distribution; a sample is
q(tau) at a fresh tau ~ U(0, 1), rounded to the nearest level. There is no likelihood: the
model never says how probable a value is, so it cannot drive an entropy coder, and neither
``arcodec eval`` (no NLL) nor the codec accept it (``codec_refusal``).

Network: phi_i, the features of a PixelCNN (type-A first layer, residual type-B blocks) at
pixel i; for channel c, z_c = ReLU(A_c [phi_i, one-hot(x_i^<c)]) and
q_c(tau) = B_c (z_c * ReLU(E cos(pi j tau)_{j<n})) -- IQN's cosine embedding of tau, mixed
in multiplicatively. Values are in the models' input units: level k is 2k / (K-1) - 1.

``forward(x, tau=None)`` -> quantiles (B, T, C, H, W) at taus (B, T, C, H, W); without
``tau``, the T = K quantiles at the midpoints (t + 1/2) / K. These are quantile *values*,
not logits; the shape is the project's (B, K, C, H, W) so that the gradient-based
causality check (:mod:`arcodec.models.causality`) applies unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from arcodec.models.layers import MaskedConv2d
from arcodec.models.made import one_hot
from arcodec.models.pixelcnn import LevelModel, ResidualBlock, check_common
from arcodec.registry import register_model


@dataclass(frozen=True)
class QuantilePixelCNNConfig:
    channels: int = 3
    levels: int = 4
    hidden: int = 96  # PixelCNN feature maps (as pixelcnn-made)
    blocks: int = 6
    first_kernel: int = 7
    kernel: int = 3
    features: int = 64  # phi_i
    head_hidden: int = 128  # width of each channel's head (z_c and the tau embedding)
    cosines: int = 32  # n: the cosine features of tau
    taus: int = 8  # taus drawn per sub-pixel and training image

    def __post_init__(self):
        check_common(self.channels, self.levels, (self.first_kernel, self.kernel))
        if self.blocks < 0 or self.hidden < 2 or self.hidden % 2 or self.features < 1:
            raise ValueError("quantile-pixelcnn needs blocks >= 0, an even hidden >= 2 and features >= 1")
        if self.head_hidden < 1 or self.cosines < 1 or self.taus < 1:
            raise ValueError("head_hidden, cosines and taus must be >= 1")


@register_model("quantile-pixelcnn", QuantilePixelCNNConfig)
class QuantilePixelCNN(LevelModel):
    """Quantile regression: an autoregressive model with no likelihood (module docstring)."""

    likelihood = False  # arcodec.training.train.evaluate_nll refuses it; training logs the quantile loss
    codec_refusal = "is a quantile regression model: it defines no likelihood and cannot compress"

    def __init__(self, config: QuantilePixelCNNConfig):
        super().__init__()
        self.config = c = config
        self.first = MaskedConv2d(c.channels, c.hidden, c.first_kernel, "A", 1)
        self.blocks = nn.ModuleList(ResidualBlock(c.hidden, c.kernel, 1, False) for _ in range(c.blocks))
        self.features = MaskedConv2d(c.hidden, c.features, 1, "B", 1)
        self.state = nn.ModuleList(nn.Linear(c.features + ch * c.levels, c.head_hidden) for ch in range(c.channels))
        self.tau_embed = nn.Linear(c.cosines, c.head_hidden)
        self.out = nn.ModuleList(nn.Linear(c.head_hidden, 1) for _ in range(c.channels))
        self.register_buffer("freqs", math.pi * torch.arange(c.cosines, dtype=torch.float32))

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """phi (B, features, H, W): position i from the pixels before i."""
        h = self.first(self.embed(x))
        for block in self.blocks:
            h = block(h)
        return torch.relu(self.features(torch.relu(h)))

    def midpoint_taus(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """(B, count, C, H, W): tau = (t + 1/2) / count for t = 0..count-1."""
        b, C, H, W = x.shape
        t = (torch.arange(count, dtype=torch.float32) + 0.5) / count
        return t.view(1, -1, 1, 1, 1).expand(b, count, C, H, W)

    def forward(self, x: torch.Tensor, tau: torch.Tensor | None = None) -> torch.Tensor:
        b, C, H, W = x.shape
        if tau is None:
            tau = self.midpoint_taus(x, self.config.levels)
        T = tau.shape[1]
        P = b * H * W
        phi = self.context(x).permute(0, 2, 3, 1).reshape(P, -1)
        xs = x.permute(0, 2, 3, 1).reshape(P, C)
        taus = tau.permute(0, 3, 4, 1, 2).reshape(P, T, C)
        outs = []
        for ch in range(C):
            prev = one_hot(xs[:, :ch], self.config.levels, False).reshape(P, -1)  # the channels before ch
            z = torch.relu(self.state[ch](torch.cat([phi, prev], dim=1)))  # (P, hidden)
            e = torch.relu(self.tau_embed(torch.cos(taus[:, :, ch: ch + 1] * self.freqs)))  # (P, T, hidden)
            outs.append(self.out[ch](z.unsqueeze(1) * e)[..., 0])  # (P, T)
        q = torch.stack(outs, dim=2)  # (P, T, C)
        return q.view(b, H, W, T, C).permute(0, 3, 4, 1, 2)

    def objective(self, x: torch.Tensor, forward) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean quantile loss, its value per sub-pixel averaged over the taus). Training draws
        ``taus`` random taus per sub-pixel; evaluation (eval mode) uses ``taus`` midpoints,
        so the validation number is deterministic. Not bits: there is no likelihood."""
        b, C, H, W = x.shape
        T = self.config.taus
        tau = torch.rand(b, T, C, H, W) if self.training else self.midpoint_taus(x, T)
        q = forward(x, tau)
        u = self.embed(x).unsqueeze(1) - q
        loss = (u * (tau - (u < 0).float())).mean(dim=1)  # (B, C, H, W)
        return loss.mean(), loss

    def receptive_field(self) -> tuple[int, int]:
        """(rows above, columns to either side) a sub-pixel's quantiles can depend on."""
        c = self.config
        reach = c.first_kernel // 2 + c.blocks * (c.kernel // 2)
        return reach, reach

    @torch.no_grad()
    def sample(self, n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
        """n images (n, C, H, W): every sub-pixel in raster order is q(tau) at a fresh
        tau ~ U(0, 1), rounded to the nearest level (float path, eval mode)."""
        c = self.config
        was_training = self.training
        self.eval()
        g = torch.Generator().manual_seed(seed)
        x = torch.zeros(n, c.channels, height, width, dtype=torch.long)
        above = self.receptive_field()[0]
        try:
            for r in range(height):
                lo = max(0, r - above)
                for col in range(width):
                    for ch in range(c.channels):
                        crop = x[:, :, lo: r + 1]
                        tau = torch.rand(n, 1, 1, 1, 1, generator=g).expand(n, 1, c.channels, *crop.shape[2:])
                        q = self(crop, tau)[:, 0, ch, r - lo, col]
                        level = torch.round((q + 1.0) * (c.levels - 1) / 2.0).clamp(0, c.levels - 1)
                        x[:, ch, r, col] = level.long()
        finally:
            self.train(was_training)
        return x
