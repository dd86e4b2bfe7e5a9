"""Integer discrete flow coding: one forward pass to integer latents, the latents through
the range coder with their priors' tables; decoding decodes the latents and runs the flow's
inverse, one parallel pass per scale for the whole batch.

The flow (:class:`arcodec.models.flows.IDF`, in exact mode) gives its latent groups in
coding order, each with its prior's parameters (mixture logits, means, log scales of a
:class:`~arcodec.models.flows.DiscretizedLogistic` mixture) and its alphabet -bound..bound;
:func:`window_table` turns them into coder weights with integer arithmetic.
Inside a stream the symbols are group by group (the last scale's latents first), then
tile by tile, then position by position. The decoder asks the flow to invert itself with a
callback that decodes one group at a time: a factored-out group's prior depends on the
groups decoded before it, which the flow computes between two calls.

Latents never leave their alphabet: the flow clamps its translations, so a latent's
magnitude is bounded by the centred pixel's plus the translations that moved it
(``IDF.bounds``). An out-of-range latent would be a bug, and is reported as one.

The tables (:func:`window_table`, :func:`dense_table`) use integer arithmetic only, so every
weight is a pure function of the grid parameters, the same on every machine: a component's
CDF is the integer-built sigmoid table (multiples of 2**-24) and its weight exp(logit - max)
is rounded down to a multiple of 2**-20, so sums of products are exact int64 values; every
weight gets 1 unit (2**-44) added, so no symbol has probability 0.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from arcodec import exact
from arcodec.codec.coders import register_coder
from arcodec.codec.entropy import Decoder as StreamDecoder
from arcodec.codec.entropy import Encoder as StreamEncoder
from arcodec.codec.entropy import check_room
from arcodec.errors import ArcodecError, FormatError

WINDOW = 47  # half-width of the window of values around round(mu) with their own bins
CHUNK = 16  # tiles whose tables are built at a time: small blocks stay in the CPU caches


def check_shape(model, h: int, w: int) -> None:
    """A clear error unless tiles of h x w are what the flow codes (whole images, no tiling)."""
    cfg = model.config
    if (h, w) != (cfg.height, cfg.width):
        raise ArcodecError(f"this integer flow codes whole {cfg.height}x{cfg.width} images (no tiling or "
                           f"padding), got a {h}x{w} tile")


WEIGHT_FRAC = 20  # mixture weights are rounded down to multiples of 2**-20
_SIG_FRAC = exact.TABLE_FRAC  # the sigmoid table's outputs are multiples of 2**-24


@lru_cache(maxsize=None)
def _sigmoid_int() -> torch.Tensor:
    """The integer-built sigmoid table of :func:`exact.gate_tables` as int64 multiples of 2**-24."""
    return torch.round(exact.gate_tables()[1] * 2.0**_SIG_FRAC).long()


def _quantize(pi: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights in 2**-20 units, mu in grid units, 1 / s in 2**-SCALE_FRAC units), int64
    (P, M, 1) each, from grid parameters (P, M)."""
    one = 1 << exact.ACT_FRAC
    r = exact.LOG_SCALE_RANGE * one
    w = torch.floor(exact.softmax_weights(pi.double(), dim=1) * 2.0**WEIGHT_FRAC).long()  # exact: 2**-44 grid
    mu_q = torch.round(mu.double() * one).long()
    ls_q = torch.round(log_s.double() * one).long().clamp(-r, r)
    return w.unsqueeze(2), mu_q.unsqueeze(2), exact.exp_scale_table()[r - ls_q].unsqueeze(2)


def _cdf(q, edges: torch.Tensor) -> torch.Tensor:
    """Unnormalised mixture CDF sum_m w_m sigmoid((edge - mu_m) / s_m) at edges (P, E)
    in grid units, int64 (units 2**-44): |edge - mu| < 2**22 and 1 / s < 2**31, so the
    products are exact int64; w < 2**21 and sigmoid < 2**25 units keep the sum exact."""
    w, mu_q, inv = q
    one = 1 << exact.ACT_FRAC
    half = 1 << (exact.SCALE_FRAC - 1)
    t = torch.bitwise_right_shift((edges.unsqueeze(1) - mu_q) * inv + half, exact.SCALE_FRAC)
    n = exact.TABLE_RANGE * one
    sig = _sigmoid_int()[t.clamp_(-n, n).add_(n)]  # (P, M, E), multiples of 2**-24 as integers
    return (w * sig).sum(dim=1)


def dense_table(pi: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor, bound: int) -> torch.Tensor:
    """Weights (P, 2 bound + 1) of every value of the alphabet, from the mixture logits,
    means and log scales (P, M) of P positions; :func:`window_table`'s bins equal these
    element for element (a test checks it)."""
    q = _quantize(pi, mu, log_s)
    edges = ((torch.arange(-bound, bound, dtype=torch.int64) * 2 + 1) << (exact.ACT_FRAC - 1)).view(1, -1)
    cdf = _cdf(q, edges.expand(len(pi), -1))
    total = q[0].sum(dim=1) << _SIG_FRAC  # the CDF at +infinity
    full = torch.cat([torch.zeros_like(total), cdf, total], dim=1)
    return (full[:, 1:] - full[:, :-1] + 1).double()


def window_table(pi: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor, bound: int, half: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(centres c (P,), coder weights (P, 2h + 2)) with h = min(half, bound), from the
    mixture logits, means and log scales (P, M) of P positions: the bins of the 2h + 1
    values c - h..c + h, c = round(mu of the component with the largest logit) moved inside
    -bound + h..bound - h, then an escape bin holding the probability of every value
    outside the window."""
    h = min(half, bound)
    q = _quantize(pi, mu, log_s)
    one = 1 << exact.ACT_FRAC
    top = torch.gather(q[1][:, :, 0], 1, pi.argmax(dim=1, keepdim=True))  # (P, 1), grid units
    c = torch.div(top + one // 2, one, rounding_mode="floor").clamp(-bound + h, bound - h)
    edges = (2 * (c - h + torch.arange(2 * h + 2, dtype=torch.int64).view(1, -1)) - 1) << (exact.ACT_FRAC - 1)
    cdf = _cdf(q, edges)  # at c - h - 1/2 .. c + h + 1/2
    total = q[0].sum(dim=1) << _SIG_FRAC
    lower = torch.where(c - h > -bound, cdf[:, :1], torch.zeros_like(total))  # the alphabet's tails
    upper = torch.where(c + h < bound, cdf[:, -1:], total)
    inside = torch.cat([lower, cdf[:, 1:-1], upper], dim=1)
    escape = lower + (total - upper)
    return c.view(-1), (torch.cat([inside[:, 1:] - inside[:, :-1], escape], dim=1) + 1).double()


def _flat(pi: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor, n: int) -> list[torch.Tensor]:
    """Prior parameters (n, M, C, H, W) -> (n, C*H*W, M) each, positions in raster order."""
    return [t.reshape(n, t.shape[1], -1).transpose(1, 2) for t in (pi, mu, log_s)]


def _beyond(p: list[torch.Tensor], out: torch.Tensor, centre: torch.Tensor, h: int, bound: int) -> torch.Tensor:
    """Weights over the whole alphabet for the escaped positions ``out``, the window's values
    set to the floor weight 1 (they are known not to occur): an escaped value then costs
    what the prior gives it, escape bin and this table together."""
    dense = dense_table(*(t[out] for t in p), bound)
    idx = centre[out].view(-1, 1) + bound - h + torch.arange(2 * h + 1)
    return dense.scatter_(1, idx, 1.0)


def _blocks(n: int):
    """Tile ranges [b0, b1) of CHUNK tiles: the tables are built for a block at a time."""
    for b0 in range(0, n, CHUNK):
        yield b0, min(n, b0 + CHUNK)


def _streams_in(bounds: list[int], b0: int, b1: int):
    """(stream, r0, r1): the part of every stream that lies in the tiles b0..b1-1."""
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if a < b1 and b > b0:
            yield i, max(a, b0), min(b, b1)


@torch.no_grad()
def encode_streams(model, x: torch.Tensor, counts: list[int], on_table: Callable | None = None,
                   on_escape: Callable[[int, int, int], None] | None = None) -> list[tuple[bytes, float]]:
    """Encode tiles x (n, C, h, w) as consecutive streams of ``counts[i]`` tiles each.

    Every latent is coded in the window of 2 WINDOW + 1 values around the round(mu) of its
    prior's leading component, with an escape bin for the rest; after a stream's window
    symbols of a latent group come its escaped latents, each coded with its prior over the
    values outside the window. Returns (payload, code length in bits of its symbols under
    those tables) per stream; ``on_table(group, b0, b1, weights)`` sees every window table
    (tiles b0..b1-1 of latent group ``group``) and ``on_escape(group, escaped, latents)`` how
    many of a block's latents fell outside the window."""
    if sum(counts) != len(x):
        raise ValueError(f"stream sizes {counts} do not add up to {len(x)} tiles")
    x = torch.as_tensor(x)  # the codec gives numpy tiles
    check_shape(model, x.shape[2], x.shape[3])
    n = len(x)
    bounds = np.cumsum([0, *counts]).tolist()
    encs = [StreamEncoder() for _ in counts]
    bits = [0.0] * len(counts)

    def code(i: int, sym: np.ndarray, w: np.ndarray) -> None:
        encs[i].encode(sym, w)
        bits[i] += float(-np.log2(w[np.arange(len(sym)), sym] / w.sum(axis=1)).sum())

    for gi, g in enumerate(model(x.long())):
        z = g.z.reshape(n, -1).long()
        if len(z) and int(z.abs().max()) > g.bound:
            raise ArcodecError(f"latent {int(z.abs().max())} outside the alphabet ±{g.bound}: a bug in the flow")
        params = _flat(g.pi, g.mu, g.log_s, n)
        escaped: list[list] = [[] for _ in counts]  # (tile range, positions, centres) per stream
        for b0, b1 in _blocks(n):
            centre, w = window_table(*(t[b0:b1].reshape(-1, t.shape[2]) for t in params), g.bound, WINDOW)
            if on_table is not None:
                on_table(gi, b0, b1, w)
            h = (w.shape[1] - 2) // 2
            d = z[b0:b1].reshape(-1) - centre
            out = d.abs() > h
            if on_escape is not None:
                on_escape(gi, int(out.sum()), out.numel())
            sym = torch.where(out, 2 * h + 1, d + h).numpy()
            per = z.shape[1]
            for i, r0, r1 in _streams_in(bounds, b0, b1):
                rows = slice((r0 - b0) * per, (r1 - b0) * per)
                code(i, sym[rows], w[rows].numpy())
                escaped[i].append((r0, r1, out[rows], centre[rows], h))
        for i, parts in enumerate(escaped):
            for r0, r1, out, centre, h in parts:
                if out.any():
                    p = [t[r0:r1].reshape(-1, t.shape[2]) for t in params]
                    v = z[r0:r1].reshape(-1)[out]
                    code(i, (v + g.bound).numpy(), _beyond(p, out, centre, h, g.bound).numpy())
    return [(e.finish(), b) for e, b in zip(encs, bits)]


@torch.no_grad()
def decode_streams(model, payloads: list[bytes], counts: list[int], channels: int, h: int, w: int,
                   naive: bool = False, on_table: Callable | None = None,
                   progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Decode consecutive streams of ``counts[i]`` tiles of (channels, h, w): each latent
    group of every stream, then the flow's inverse for the whole batch at once (one pass per
    scale). ``naive`` has no meaning for a flow (it has one decoder); it is accepted so that
    the codec calls both kinds of model alike. The tiles come back as uint8 levels."""
    check_shape(model, h, w)
    decs = [StreamDecoder(p) for p in payloads]
    bounds = np.cumsum([0, *counts]).tolist()
    n = bounds[-1]
    group = iter(range(1 << 30))

    def take(pi: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor, bound: int) -> torch.Tensor:
        gi = next(group)
        params = _flat(pi, mu, log_s, n)
        per = params[0].shape[1]
        z = torch.zeros(n * per, dtype=torch.int64)
        escaped: list[list] = [[] for _ in counts]
        for b0, b1 in _blocks(n):
            centre, weights = window_table(*(t[b0:b1].reshape(-1, t.shape[2]) for t in params), bound, WINDOW)
            if on_table is not None:
                on_table(gi, b0, b1, weights)
            k = (weights.shape[1] - 2) // 2
            for i, r0, r1 in _streams_in(bounds, b0, b1):
                rows = slice((r0 - b0) * per, (r1 - b0) * per)
                sym = torch.from_numpy(decs[i].decode(weights[rows].numpy()))
                z[r0 * per: r1 * per] = centre[rows] + sym - k
                escaped[i].append((r0, r1, sym == 2 * k + 1, centre[rows], k))
        for i, parts in enumerate(escaped):
            for r0, r1, out, centre, k in parts:
                if out.any():
                    p = [t[r0:r1].reshape(-1, t.shape[2]) for t in params]
                    z[r0 * per: r1 * per][out] = torch.from_numpy(decs[i].decode(_beyond(p, out, centre, k, bound)
                                                                                  .numpy())) - bound
        return z.view(n, *mu.shape[2:]).to(mu.dtype)

    x = model.inverse(take, n)
    levels = model.config.levels
    if x.shape != (n, channels, h, w):
        raise FormatError(f"the flow gives images of shape {tuple(x.shape[1:])}, the file holds {(channels, h, w)}")
    if n and (float(x.min()) < 0 or float(x.max()) > levels - 1):
        raise FormatError("corrupt payload (decoded pixels outside the model's levels)")
    if progress is not None:
        progress(x.numel())
    return x.to(torch.uint8)


def room(model, payload: bytes, tiles: int, channels: int, h: int, w: int) -> None:
    """Refuse a stream too short for its tiles before decoding it: every sub-pixel gives one
    latent, coded with a window table of 2 min(WINDOW, bound) + 2 entries at least
    (:func:`arcodec.codec.entropy.check_room`; an escaped latent costs more symbols)."""
    check_room(len(payload), tiles * channels * h * w, 2 * min(WINDOW, min(model.bounds)) + 2)


register_coder("flow", encode_streams, decode_streams, check=check_shape, room=room)
