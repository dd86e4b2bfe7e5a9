"""Normalizing flows: the course's affine coupling flow (continuous, not a codec) and
integer discrete flows (Hoogeboom et al., 2019, "Integer Discrete Flows and Lossless
Compression"), which the codec uses.

* ``coupling-flow`` — a density on dequantized images. The image is flattened to a vector
  of D = C*H*W values x = (k + u) / K, u ~ U[0, 1) (uniform dequantization). Each of the
  ``couplings`` layers splits the vector into two halves (the even and the odd positions;
  the roles swap from layer to layer), feeds one half to an MLP of ``mlp_layers`` linear
  layers with ReLUs, and transforms the other half affinely, y_b = x_b * exp(tanh(s)) + t;
  the layer's output is then multiplied by exp(s_i), s_i a learned vector of dimension D.
  Prior N(0, I). The log-likelihood of the discrete image is bounded below by the
  dequantized one: log P(k) >= E_u[log p(x)] - D log K (the density of x lives on bins of
  width 1/K), so bits/dim = -log2 p(x) / D + log2 K. The codec refuses it: it is a density
  over real vectors, not a distribution over integers.
* ``idf`` — an integer discrete flow. Pixels (centred: k - K/2) are squeezed 2x2 into
  channels; each additive coupling adds a rounded translation to one half of the channels,
  b += round(t(a)) (straight-through gradient while training), so the map between images
  and integer latents is a bijection on integers and log P(x) = log P(z) exactly. Multi-
  scale: after the couplings of every scale but the last, half the channels leave as
  latents whose prior (a mixture of ``components`` discretized logistics) is predicted
  from the other half; the rest is squeezed again. The last scale's latents have learned
  factorised mixture priors. Decoding is one parallel inverse pass per scale (:mod:`arcodec.codec.flow`).

IDF exactness: encoder and decoder must compute the same integer translations from the
same integer inputs. In exact mode (``set_exact``) the translation and prior networks run
in the fixed-point arithmetic of :mod:`arcodec.exact` (order-independent sums), so
the translations do not depend on the batch size, the thread count or the machine; the
priors' parameters are on the fixed-point grid, and the coder builds their tables with
integer arithmetic (:func:`arcodec.codec.flow.window_table`). Translations are clamped to
``±translation``, so every latent provably stays in a known range, which is the coded
alphabet (see docs/flows.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from arcodec import exact
from arcodec.models.layers import ExactModule, quantized_cached
from arcodec.registry import register_model

# ------------------------------------------------------------------------- coupling flow


@dataclass(frozen=True)
class CouplingFlowConfig:
    channels: int = 1
    levels: int = 256  # K: x = (k + u) / K
    height: int = 28
    width: int = 28
    couplings: int = 4  # coupling layers
    mlp_layers: int = 5  # linear layers of each coupling's MLP
    hidden: int = 256  # width of the MLPs' hidden layers

    def __post_init__(self):
        d = self.channels * self.height * self.width
        if d % 2 or d < 2:
            raise ValueError(f"the coupling flow splits the image vector in halves: C*H*W={d} must be even")
        if self.couplings < 1 or self.mlp_layers < 2 or self.hidden < 1 or self.levels < 2:
            raise ValueError("couplings >= 1, mlp_layers >= 2, hidden >= 1 and levels >= 2 are required")

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width


class AffineCoupling(nn.Module):
    """One coupling layer on vectors (B, D): the half ``keep`` (even or odd positions)
    conditions an MLP whose output (s, t) transforms the other half as x * exp(tanh(s)) + t;
    then the whole vector is multiplied by exp(scale), ``scale`` a learned (D,) vector."""

    def __init__(self, dims: int, hidden: int, mlp_layers: int, keep: int):
        super().__init__()
        self.keep = keep  # 0: the even positions condition, the odd ones change; 1: the other way
        half = dims // 2
        sizes = [half] + [hidden] * (mlp_layers - 1) + [2 * half]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)
        nn.init.zeros_(self.mlp[-1].weight)  # starts as the identity
        nn.init.zeros_(self.mlp[-1].bias)
        self.scale = nn.Parameter(torch.zeros(dims))

    def _halves(self, x):
        return x[:, self.keep::2], x[:, 1 - self.keep::2]

    def _merge(self, a, b):
        out = torch.empty(a.shape[0], a.shape[1] + b.shape[1], dtype=a.dtype, device=a.device)
        out[:, self.keep::2], out[:, 1 - self.keep::2] = a, b
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self._halves(x)
        s, t = self.mlp(a - 0.5).chunk(2, dim=1)
        s = torch.tanh(s)
        y = self._merge(a, b * torch.exp(s) + t) * torch.exp(self.scale)
        return y, s.sum(dim=1) + self.scale.sum()

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        a, b = self._halves(y * torch.exp(-self.scale))
        s, t = self.mlp(a - 0.5).chunk(2, dim=1)
        return self._merge(a, (b - t) * torch.exp(-torch.tanh(s)))


@register_model("coupling-flow", CouplingFlowConfig)
class CouplingFlow(nn.Module):
    """The course's coupling flow on dequantized images (see the module docstring).

    ``forward(x)`` takes continuous images (B, C, H, W) in [0, 1) and returns (z (B, D),
    log|det dz/dx| (B,)); ``inverse(z)`` gives images back; ``calc_likelihood(x)`` is
    log p(x) in nats per image; ``intermediates(x)`` every layer's output; ``sample(n)``.
    """

    coding = "continuous"  # the codec refuses it (arcodec.codec.api)

    def __init__(self, config: CouplingFlowConfig):
        super().__init__()
        self.config = config
        d = config.dims
        self.layers = nn.ModuleList(AffineCoupling(d, config.hidden, config.mlp_layers, i % 2)
                                    for i in range(config.couplings))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c = self.config
        return (c.channels, c.height, c.width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.reshape(len(x), -1)
        logdet = torch.zeros(len(x), dtype=h.dtype, device=h.device)
        for layer in self.layers:
            h, ld = layer(h)
            logdet = logdet + ld
        return h, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.inverse_intermediates(z)[-1].view(len(z), *self.image_shape)

    def intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[x, output of layer 1, ..., output of the last layer = z], each (B, D)."""
        out = [x.reshape(len(x), -1)]
        for layer in self.layers:
            out.append(layer(out[-1])[0])
        return out

    def inverse_intermediates(self, z: torch.Tensor) -> list[torch.Tensor]:
        """[z, input of the last layer, ..., input of layer 1 = x], each (B, D): the
        intermediates of a sample, from its latent to the image."""
        out = [z]
        for layer in reversed(self.layers):
            out.append(layer.inverse(out[-1]))
        return out

    def calc_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats, (B,): standard normal log-density of z plus log|det J|."""
        z, logdet = self(x)
        return -0.5 * (z * z).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi) + logdet

    def dequantize(self, k: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x = (k + u) / K, u ~ U[0, 1)."""
        u = torch.rand(k.shape, generator=generator, device=k.device)
        return (k.float() + u) / self.config.levels

    def objective(self, k: torch.Tensor, forward=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean bits/dim, bits of every sub-pixel) of integer images k (B, C, H, W): the
        dequantization bound -log2 p(x) + D log2 K, spread evenly over the sub-pixels.
        In eval mode u is drawn from a fixed seed, so validation numbers are repeatable."""
        forward = forward or self
        g = None if self.training else torch.Generator(device=k.device).manual_seed(0)
        z, logdet = forward(self.dequantize(k, g))
        d = z.shape[1]
        logp = -0.5 * (z * z).sum(dim=1) - 0.5 * d * math.log(2 * math.pi) + logdet
        bits = (-logp / math.log(2.0) + d * math.log2(self.config.levels)) / d  # bits/dim per image
        return bits.mean(), bits.view(-1, 1, 1, 1).expand(k.shape)

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1]: z ~ N(0, temperature^2 I) through the inverse."""
        g = None if seed is None else torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.config.dims, generator=g) * temperature
        return self.inverse(z).clamp(0.0, 1.0)


# -------------------------------------------------------------------------- integer flow

CENTRE_BOUND = 128  # |k - K/2| <= K/2 for K = 256: the bound of the centred pixels
OUT_GAIN = 32.0  # translation networks' outputs are multiplied by this (a power of two: exact)
INIT_LOG_SCALE = 3.5  # priors start with scale e^3.5 ~ 33 levels: about 7.5 bits/dim before training
LOG_GAIN = 4.0  # prior logits and log scales are parameters (or network outputs) times this
# The gains (powers of two, exact) let an optimiser step of ~1e-3 move a mean by ~0.03 levels
# and a log scale by ~0.004: without them the priors barely leave their initial values.


@dataclass(frozen=True)
class IDFConfig:
    channels: int = 1
    levels: int = 256
    height: int = 28
    width: int = 28
    scales: int = 2  # squeeze + couplings per scale; all scales but the last factor out half
    couplings: int = 4  # additive couplings per scale
    hidden: int = 48  # feature maps of the translation and prior networks
    kernel: int = 3
    translation: int = 64  # translations are clamped to [-translation, translation]
    components: int = 4  # logistics in each latent's prior (1: a plain discretized logistic)

    def __post_init__(self):
        f = 2**self.scales
        if self.scales < 1 or self.height % f or self.width % f:
            raise ValueError(f"idf with {self.scales} scales needs height and width divisible by {f}, "
                             f"got {self.height}x{self.width}")
        if self.couplings < 1 or self.hidden < 1 or self.kernel % 2 == 0 or self.translation < 0:
            raise ValueError("couplings >= 1, hidden >= 1, an odd kernel and translation >= 0 are required")
        if not 1 <= self.components <= 16:
            raise ValueError(f"components must be 1..16, got {self.components}")
        if self.levels > 2 * CENTRE_BOUND:
            raise ValueError(f"idf codes at most {2 * CENTRE_BOUND} levels, got {self.levels}")


class Conv(ExactModule):
    """A same-padded convolution with a float path and an exact path (quantized weights,
    :func:`exact.conv2d`: the same bits for any batch, crop or thread count)."""

    def __init__(self, cin: int, cout: int, kernel: int, zero: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
        if zero:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.exact:
            return self.conv(x)
        p = self.conv.padding[0]
        w, b = self.conv.weight, self.conv.bias
        q = quantized_cached(self, (w, b), lambda: exact.quantize_conv(w, b))
        return exact.conv2d(F.pad(x, (p, p, p, p)), q)


class ConvNet(ExactModule):
    """conv - ReLU - conv - ReLU - conv, the last one zero-initialised; input integers in
    units of CENTRE_BOUND, output times OUT_GAIN (both powers of two, exact on the grid)."""

    def __init__(self, cin: int, cout: int, hidden: int, kernel: int):
        super().__init__()
        self.body = nn.ModuleList([Conv(cin, hidden, kernel), Conv(hidden, hidden, 1),
                                   Conv(hidden, cout, kernel, zero=True)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x / CENTRE_BOUND
        if self.exact:
            h = exact.to_grid(h.double())
        for i, conv in enumerate(self.body):
            h = conv(h)
            if i < len(self.body) - 1:
                h = torch.relu(h)
        return h * OUT_GAIN


def _round_st(t: torch.Tensor) -> torch.Tensor:
    """round(t) with the straight-through gradient (identity)."""
    return t + (torch.round(t) - t).detach()


class IntegerCoupling(ExactModule):
    """b += round(clamp(t(a), ±T)) with (a, b) the two halves of the channels (or the other
    way round when ``flip``). Exactly invertible: b -= the same translation, computed from
    the unchanged half."""

    def __init__(self, channels: int, hidden: int, kernel: int, translation: int, flip: bool):
        super().__init__()
        self.flip, self.limit = flip, float(translation)
        self.net = ConvNet(channels // 2, channels - channels // 2, hidden, kernel)

    def translation(self, a: torch.Tensor) -> torch.Tensor:
        """The integer translation for condition half a (float path: straight-through)."""
        t = self.net(a).clamp(-self.limit, self.limit)
        return torch.round(t) if self.exact else _round_st(t)

    def _split(self, x):
        a, b = x.chunk(2, dim=1)
        return (b, a) if self.flip else (a, b)

    def _join(self, a, b):
        return torch.cat([b, a] if self.flip else [a, b], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self._split(x)
        return self._join(a, b + self.translation(a))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        a, b = self._split(y)
        return self._join(a, b - self.translation(a))


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): every 2x2 block becomes 4 channels."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * h, 2 * w)


class DiscretizedLogistic:
    """A mixture of M discretized logistics over the integers -bound..bound (the outermost
    bins take the tails): P(v) = sum_m pi_m [sigmoid((v + 1/2 - mu_m) / s_m) -
    sigmoid((v - 1/2 - mu_m) / s_m)], pi = softmax of the mixture logits, log s clamped to
    [-LOG_SCALE_RANGE, LOG_SCALE_RANGE]. M = 1 is the plain discretized logistic.

    :meth:`log_prob` is the float path, for training; the coder's tables of the same
    distribution, in integer arithmetic, are built by :mod:`arcodec.codec.flow`
    (``window_table``, ``dense_table``)."""

    @staticmethod
    def log_prob(z: torch.Tensor, pi: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor,
                 bound: int) -> torch.Tensor:
        """ln P(z) for z (B, ...) and parameters (B, M, ...), float path: log-sigmoids,
        stable for every argument, combined with a log-sum-exp."""
        r = float(exact.LOG_SCALE_RANGE)
        inv = torch.exp(-log_s.clamp(-r, r))
        v = z.unsqueeze(1)
        a, b = (v + 0.5 - mu) * inv, (v - 0.5 - mu) * inv
        inner = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-inv))
        comp = torch.where(v <= -bound, F.logsigmoid(a), torch.where(v >= bound, F.logsigmoid(-b), inner))
        return torch.logsumexp(F.log_softmax(pi, dim=1) + comp, dim=1)


class PriorNet(ExactModule):
    """The mixture parameters (pi, mu, log s), each (B, M, C, H, W), of the factored-out
    half from the half that stays."""

    def __init__(self, cin: int, cout: int, hidden: int, kernel: int, components: int):
        super().__init__()
        self.m = components
        self.net = ConvNet(cin, 3 * components * cout, hidden, kernel)
        with torch.no_grad():  # start wide, the means spread over the pixel range
            bias = self.net.body[-1].conv.bias.view(3, components, cout)
            bias[1] = _spread(components).view(-1, 1) / OUT_GAIN
            bias[2] = INIT_LOG_SCALE * LOG_GAIN / OUT_GAIN

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(h)
        b, _, hh, ww = out.shape
        pi, mu, log_s = out.view(b, 3, self.m, -1, hh, ww).unbind(1)
        g = LOG_GAIN / OUT_GAIN
        return pi * g, mu, log_s * g  # mu in latent units, pi and log s in natural units


def _spread(m: int) -> torch.Tensor:
    """M initial means spread evenly over the centred pixel range."""
    return (torch.arange(m, dtype=torch.float32) + 0.5) * (2 * CENTRE_BOUND / m) - CENTRE_BOUND


class Latent(NamedTuple):
    """One group of latents z (B, C, H, W) with its prior's mixture logits, means and log
    scales (B, M, C, H, W), and the alphabet -bound..bound."""

    z: torch.Tensor
    pi: torch.Tensor
    mu: torch.Tensor
    log_s: torch.Tensor
    bound: int


@register_model("idf", IDFConfig)
class IDF(ExactModule):
    """Integer discrete flow (see the module docstring).

    ``forward(x)`` maps integer images (B, C, H, W) to their latent groups, in the order
    the codec codes them (the last scale first), each with its prior's parameters;
    ``inverse(take, n)`` rebuilds n images, asking ``take(pi, mu, log_s, bound)`` for each
    latent group in the same order (a coder's decode callback: the flow never sees the
    coder)."""

    coding = "flow"

    def __init__(self, config: IDFConfig):
        super().__init__()
        self.config = config
        cfg = config
        self.scales = nn.ModuleList()
        self.split_priors = nn.ModuleList()
        c = cfg.channels
        for s in range(cfg.scales):
            c *= 4
            self.scales.append(nn.ModuleList(IntegerCoupling(c, cfg.hidden, cfg.kernel, cfg.translation, i % 2 == 1)
                                             for i in range(cfg.couplings)))
            if s < cfg.scales - 1:
                self.split_priors.append(PriorNet(c - c // 2, c // 2, cfg.hidden, cfg.kernel, cfg.components))
                c -= c // 2
        f = 2**cfg.scales
        shape = (cfg.components, c, cfg.height // f, cfg.width // f)
        self.top_pi = nn.Parameter(torch.zeros(shape))  # times LOG_GAIN
        self.top_mu = nn.Parameter(_spread(cfg.components).view(-1, 1, 1, 1).expand(shape) / OUT_GAIN)  # OUT_GAIN
        self.top_log_s = nn.Parameter(torch.full(shape, INIT_LOG_SCALE / LOG_GAIN))  # times LOG_GAIN
        self.bounds = self._bounds()

    def _bounds(self) -> list[int]:
        """Alphabet bound of every latent group, in coding order: a centred pixel is within
        ±CENTRE_BOUND, and every coupling that changes a value moves it by at most
        ``translation``; the couplings alternate, so a half changes ceil(n/2) (the second
        half) or floor(n/2) (the first half) times per scale."""
        cfg = self.config
        n, t = cfg.couplings, cfg.translation
        moves, out = 0, []
        for s in range(cfg.scales):
            first, second = moves + n // 2, moves + (n + 1) // 2
            if s < cfg.scales - 1:
                out.append(CENTRE_BOUND + t * first)  # the first half leaves
                moves = second
            else:
                out.append(CENTRE_BOUND + t * max(first, second))
        return out[::-1]

    def _top(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last scale's prior parameters (pi, mu, log s), each (n, M, C, H, W)."""
        params = (self.top_pi, self.top_mu, self.top_log_s)
        if self.exact:
            params = tuple(p.double() for p in params)
        params = (params[0] * LOG_GAIN, params[1] * OUT_GAIN, params[2] * LOG_GAIN)
        if self.exact:
            params = tuple(exact.to_grid(p) for p in params)
        return tuple(p.expand(n, *p.shape) for p in params)

    def _centre(self, x: torch.Tensor) -> torch.Tensor:
        h = x.double() if self.exact else x.float()
        return h - self.config.levels // 2

    def forward(self, x: torch.Tensor) -> list[Latent]:
        h = self._centre(x)
        groups = []
        bounds = self.bounds[::-1]
        for s, couplings in enumerate(self.scales):
            h = squeeze(h)
            for coupling in couplings:
                h = coupling(h)
            if s < len(self.scales) - 1:
                z, h = h[:, : h.shape[1] // 2], h[:, h.shape[1] // 2:]
                groups.append(Latent(z, *self.split_priors[s](h), bounds[s]))
        groups.append(Latent(h, *self._top(len(x)), bounds[-1]))
        return groups[::-1]

    def inverse(self, take: Callable[..., torch.Tensor], n: int) -> torch.Tensor:
        """Images (n, C, H, W) (integers, float64 in exact mode) from latents supplied by
        ``take(pi, mu, log_s, bound) -> z`` group by group, in :meth:`forward`'s order."""
        bounds = iter(self.bounds)
        h = take(*self._top(n), next(bounds))
        for s in reversed(range(len(self.scales))):
            if s < len(self.scales) - 1:
                h = torch.cat([take(*self.split_priors[s](h), next(bounds)), h], dim=1)
            for coupling in reversed(self.scales[s]):
                h = coupling.inverse(h)
            h = unsqueeze(h)
        return h + self.config.levels // 2

    def objective(self, x: torch.Tensor, forward=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean bits/dim, bits of every sub-pixel): -log2 P(z) of every latent, which is
        -log2 P(x) (a bijection on integers), spread evenly over each image's sub-pixels."""
        forward = forward or self
        bits = sum(-DiscretizedLogistic.log_prob(g.z, g.pi, g.mu, g.log_s, g.bound).flatten(1).sum(1)
                   for g in forward(x)) / math.log(2.0)
        d = x[0].numel()
        per_dim = bits / d
        return per_dim.mean(), per_dim.view(-1, 1, 1, 1).expand(x.shape)
