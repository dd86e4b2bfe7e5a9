"""Integer discrete flow coding: one forward pass to integer latents, the latents through
the range coder with their priors' tables; decoding decodes the latents and runs the flow's
inverse, one parallel pass per scale for the whole batch.

The flow (:class:`arcodec.models.flows.IDF`, in exact mode) gives its latent groups in
coding order, each with its prior's parameters (mixture logits, means, log scales) and its
alphabet -bound..bound;
:meth:`DiscretizedLogistic.table` turns them into coder weights with integer arithmetic.
Inside a stream the symbols are group by group (the last scale's latents first), then
tile by tile, then position by position. The decoder asks the flow to invert itself with a
callback that decodes one group at a time: a factored-out group's prior depends on the
groups decoded before it, which the flow computes between two calls.

Latents never leave their alphabet: the flow clamps its translations, so a latent's
magnitude is bounded by the centred pixel's plus the translations that moved it
(``IDF.bounds``). An out-of-range latent would be a bug, and is reported as one.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from arcodec.codec.entropy import Decoder as StreamDecoder
from arcodec.codec.entropy import Encoder as StreamEncoder
from arcodec.errors import ArcodecError, FormatError
from arcodec.models.flows import DiscretizedLogistic

WINDOW = 47  # half-width of the window of values around round(mu) with their own bins
CHUNK = 16  # tiles whose tables are built at a time: small blocks stay in the CPU caches


def check_shape(model, h: int, w: int) -> None:
    """A clear error unless tiles of h x w are what the flow codes (whole images, no tiling)."""
    cfg = model.config
    if (h, w) != (cfg.height, cfg.width):
        raise ArcodecError(f"this integer flow codes whole {cfg.height}x{cfg.width} images (no tiling or "
                           f"padding), got a {h}x{w} tile")


def _flat(pi: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor, n: int) -> list[torch.Tensor]:
    """Prior parameters (n, M, C, H, W) -> (n, C*H*W, M) each, positions in raster order."""
    return [t.reshape(n, t.shape[1], -1).transpose(1, 2) for t in (pi, mu, log_s)]


def _beyond(p: list[torch.Tensor], out: torch.Tensor, centre: torch.Tensor, h: int, bound: int) -> torch.Tensor:
    """Weights over the whole alphabet for the escaped positions ``out``, the window's values
    set to the floor weight 1 (they are known not to occur): an escaped value then costs
    what the prior gives it, escape bin and this table together."""
    dense = DiscretizedLogistic.table_dense(*(t[out] for t in p), bound)
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
            centre, w = DiscretizedLogistic.window_table(*(t[b0:b1].reshape(-1, t.shape[2]) for t in params),
                                                         g.bound, WINDOW)
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
    the codec calls both kinds of model alike."""
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
            centre, weights = DiscretizedLogistic.window_table(*(t[b0:b1].reshape(-1, t.shape[2]) for t in params),
                                                               bound, WINDOW)
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
    return x.long()
