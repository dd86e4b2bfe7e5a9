"""Autoregressive coding: teacher-forced encode, raster-order decode, same numbers both ways.

The coder of the streams of :mod:`arcodec.codec.plan` for models that give logits of every
sub-pixel given the ones before it in raster order. Inside a stream the symbols follow the
decoder's order: row, column, channel, then tile, so that the decoder pushes every tile of
the stream through each step as one batch.

Both sides evaluate the model in exact mode (:mod:`arcodec.exact`): the encoder
runs the full network on bands of rows, the decoder runs a stepper (cached activations,
or the naive full pass) one pixel at a time. Exact arithmetic makes them agree bit for
bit, whatever the batch size, the crop or the thread count.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from arcodec.codec.coders import register_coder
from arcodec.codec.entropy import Decoder as StreamDecoder
from arcodec.codec.entropy import Encoder as StreamEncoder
from arcodec.codec.entropy import check_room
from arcodec.exact import softmax_weights
from arcodec.models.heads import nll_bits

ENCODE_POSITIONS = 1 << 18  # pixels (tiles x rows x columns) the encoder evaluates at a time


def table(logits: torch.Tensor) -> np.ndarray:
    """Coder weights (n, K) from exact logits (n, K): the one place logits become numbers
    the coder sees."""
    return softmax_weights(logits, dim=1).numpy()


class Stepper(Protocol):
    """Raster-order evaluation of a model: ``begin_row(x, r)`` then ``step(x, r, c)`` for
    every column, returning logits (n, K, C) of pixel (r, c) given x's pixels before it."""

    def begin_row(self, x: torch.Tensor, r: int) -> None: ...

    def step(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor: ...

    # optional: weights(x, r, c, ch) -> the coder's table (n, K) of channel ch, when the
    # stepper computes it itself (the same numbers as table(step(x, r, c)[:, :, ch]))


class FullPassStepper:
    """The naive decoder: the whole network on the rows above r that pixel (r, c) can see,
    at every pixel."""

    def __init__(self, model, batch: int, height: int, width: int):
        self.model = model

    def begin_row(self, x, r):
        pass

    @torch.no_grad()
    def step(self, x, r, c):
        # only the rows the receptive field reaches (exact arithmetic: same numbers as the full image)
        lo = max(0, r - self.model.receptive_field()[0]) if hasattr(self.model, "receptive_field") else 0
        return self.model(x[:, :, lo: r + 1])[:, :, :, r - lo, c]


def make_stepper(model, batch: int, channels: int, height: int, width: int, naive: bool = False) -> Stepper:
    """The model's own stepper where it has one, else the naive one. A stepper is called
    once per channel of a pixel, with the channels before it decoded."""
    if not naive and hasattr(model, "incremental"):
        return model.incremental(batch, height, width)
    return FullPassStepper(model, batch, height, width)


@torch.no_grad()
def teacher_forced_logits(model, x: torch.Tensor, band: int | None = None
                          ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(r0, r1, logits of rows r0..r1-1) for x (n, C, h, w), computed band by band.

    A band needs only the rows its receptive field reaches, so memory stays bounded; bands
    are as tall as ``ENCODE_POSITIONS`` allows (the whole tile when it fits), because every
    band recomputes the rows above it."""
    n, _, h, w = x.shape
    band = band or max(1, min(h, ENCODE_POSITIONS // max(1, n * w)))
    above = model.receptive_field()[0] if hasattr(model, "receptive_field") else h
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        lo = max(0, r0 - above)
        yield r0, r1, model(x[:, :, lo:r1])[:, :, :, r0 - lo:]


@torch.no_grad()
def encode_streams(model, x: torch.Tensor, counts: list[int],
                   on_table: Callable | None = None) -> list[tuple[bytes, float]]:
    """Encode tiles x (n, C, h, w) as consecutive streams of ``counts[i]`` tiles each.

    One teacher-forced pass over the whole batch; returns (payload, model NLL in bits of
    its symbols) per stream. ``on_table(r0, r1, weights)`` sees the batch's table in
    decoder order (row, column, channel, tile)."""
    if sum(counts) != len(x):
        raise ValueError(f"stream sizes {counts} do not add up to {len(x)} tiles")
    bounds = np.cumsum([0, *counts]).tolist()
    encs = [StreamEncoder() for _ in counts]
    bits = [0.0] * len(counts)
    n = len(x)
    for r0, r1, logits in teacher_forced_logits(model, x):
        xs = x[:, :, r0:r1]
        nb = nll_bits(logits, xs).flatten(1).sum(1)
        K = logits.shape[1]
        weights = table(logits.permute(3, 4, 2, 0, 1).reshape(-1, K))  # row, column, channel, tile
        if on_table is not None:
            on_table(r0, r1, weights)
        weights = weights.reshape(-1, n, K)
        symbols = xs.permute(2, 3, 1, 0).reshape(-1, n).numpy()
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            bits[i] += float(nb[a:b].sum())
            encs[i].encode(symbols[:, a:b], weights[:, a:b].reshape(-1, K))
    return [(e.finish(), b) for e, b in zip(encs, bits)]


@torch.no_grad()
def decode_streams(model, payloads: list[bytes], counts: list[int], channels: int, h: int, w: int,
                   naive: bool = False, on_table: Callable | None = None,
                   progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Decode consecutive streams of ``counts[i]`` tiles of (channels, h, w) in raster order,
    every tile of every stream in one batch: one model step per pixel, one coder call per
    stream and pixel."""
    decs = [StreamDecoder(p) for p in payloads]
    bounds = np.cumsum([0, *counts]).tolist()
    n = bounds[-1]
    x = torch.zeros(n, channels, h, w, dtype=torch.long)
    stepper = make_stepper(model, n, channels, h, w, naive)
    # a stepper that makes the coder's tables itself (a compiled kernel) gives them directly
    tables = getattr(stepper, "weights", None) or (lambda x, r, c, ch: table(stepper.step(x, r, c)[:, :, ch]))
    for r in range(h):
        stepper.begin_row(x, r)
        for c in range(w):
            for ch in range(channels):
                weights = tables(x, r, c, ch)
                if on_table is not None:
                    on_table(r, c, ch, weights)
                out = np.concatenate([d.decode(weights[a:b]) for d, a, b in zip(decs, bounds[:-1], bounds[1:])])
                x[:, ch, r, c] = torch.from_numpy(out)
        if progress is not None:
            progress(w * n * channels)
    return x


def room(model, payload: bytes, tiles: int, channels: int, h: int, w: int) -> None:
    """Refuse a stream too short for its tiles before decoding it: every sub-pixel is one
    symbol of a table over the model's levels (:func:`arcodec.codec.entropy.check_room`)."""
    check_room(len(payload), tiles * channels * h * w, model.config.levels)


register_coder("autoregressive", encode_streams, decode_streams, room=room)
