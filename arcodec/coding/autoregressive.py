"""Autoregressive coding: teacher-forced encode, raster-order decode, same numbers both ways.

Images are cut into planes (one per channel when the model is grayscale) and tiles of at
most ``tile`` x ``tile`` pixels. Tiles of equal shape form a group; a group is cut into
chunks of at most ``chunk`` tiles, and each chunk is one range-coder stream. Inside a
stream the symbols follow the decoder's order: row, column, channel, then tile, so that the
decoder pushes every tile of the chunk through each step as one batch.

Both sides evaluate the model in exact mode (:mod:`arcodec.models.exact`): the encoder
runs the full network on bands of rows, the decoder runs a stepper (cached activations,
or the naive full pass) one pixel at a time. Exact arithmetic makes them agree bit for
bit, whatever the batch size, the crop or the thread count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from arcodec.coding.entropy import Decoder as StreamDecoder
from arcodec.coding.entropy import Encoder as StreamEncoder
from arcodec.models.exact import softmax_weights
from arcodec.models.heads import nll_bits

DEFAULT_CHUNK = 256
ENCODE_BAND = 8  # rows of logits the encoder computes at a time


@dataclass(frozen=True)
class TileRef:
    image: int
    plane: int  # channel of the image for a grayscale model, -1 for all channels
    y: int
    x: int


@dataclass
class Stream:
    height: int
    width: int
    tiles: list[TileRef] = field(default_factory=list)


def plan_streams(shapes: list[tuple[int, int, int]], model_channels: int, tile: int,
                 chunk: int = DEFAULT_CHUNK) -> list[Stream]:
    """Streams for images of shapes (H, W, C): a pure function of the header."""
    groups: dict[tuple[int, int], list[TileRef]] = {}
    for i, (h, w, c) in enumerate(shapes):
        planes = range(c) if model_channels == 1 else [-1]
        for p in planes:
            for y in range(0, h, tile):
                for x in range(0, w, tile):
                    key = (min(tile, h - y), min(tile, w - x))
                    groups.setdefault(key, []).append(TileRef(i, p, y, x))
    streams = []
    for (th, tw), refs in groups.items():
        for k in range(0, len(refs), chunk):
            streams.append(Stream(th, tw, refs[k: k + chunk]))
    return streams


def gather(images: list[np.ndarray], stream: Stream) -> torch.Tensor:
    """The tiles of ``stream`` as a (n, C, h, w) int64 tensor."""
    out = []
    for t in stream.tiles:
        img = images[t.image][t.y: t.y + stream.height, t.x: t.x + stream.width]
        out.append(img[:, :, t.plane: t.plane + 1] if t.plane >= 0 else img)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).long()


def scatter(images: list[np.ndarray], stream: Stream, x: torch.Tensor) -> None:
    tiles = x.permute(0, 2, 3, 1).numpy().astype(np.uint8)
    for t, v in zip(stream.tiles, tiles):
        dst = images[t.image][t.y: t.y + stream.height, t.x: t.x + stream.width]
        if t.plane >= 0:
            dst[:, :, t.plane] = v[:, :, 0]
        else:
            dst[...] = v


def table(logits: torch.Tensor) -> np.ndarray:
    """Coder weights (n, K) from exact logits (n, K): the one place logits become numbers
    the coder sees."""
    return softmax_weights(logits, dim=1).numpy()


class Stepper(Protocol):
    """Raster-order evaluation of a model: ``begin_row(x, r)`` then ``step(x, r, c)`` for
    every column, returning logits (n, K, C) of pixel (r, c) given x's pixels before it."""

    def begin_row(self, x: torch.Tensor, r: int) -> None: ...

    def step(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor: ...


class FullPassStepper:
    """The naive decoder: the whole network on every row up to r, at every pixel."""

    def __init__(self, model, batch: int, height: int, width: int):
        self.model = model

    def begin_row(self, x, r):
        pass

    @torch.no_grad()
    def step(self, x, r, c):
        return self.model(x[:, :, : r + 1])[:, :, :, r, c]


def make_stepper(model, batch: int, channels: int, height: int, width: int, naive: bool = False) -> Stepper:
    """The cached stepper of the model where it has one (one call per pixel), else the
    naive one (which may be called again for each channel of a pixel)."""
    if not naive and channels == 1 and hasattr(model, "incremental"):
        return model.incremental(batch, height, width)
    return FullPassStepper(model, batch, height, width)


@torch.no_grad()
def teacher_forced_logits(model, x: torch.Tensor, band: int = ENCODE_BAND) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(r0, r1, logits of rows r0..r1-1) for x (n, C, h, w), computed band by band.

    A band only needs the rows its receptive field reaches, so memory stays bounded."""
    h = x.shape[2]
    above = model.receptive_field()[0] if hasattr(model, "receptive_field") else h
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        lo = max(0, r0 - above)
        yield r0, r1, model(x[:, :, lo:r1])[:, :, :, r0 - lo:]


@torch.no_grad()
def encode_stream(model, x: torch.Tensor, on_table: Callable | None = None) -> tuple[bytes, float]:
    """Encode tiles x (n, C, h, w); returns (payload, model NLL in bits of these symbols)."""
    enc = StreamEncoder()
    n, C, h, w = x.shape
    bits = 0.0
    for r0, r1, logits in teacher_forced_logits(model, x):
        xs = x[:, :, r0:r1]
        bits += float(nll_bits(logits, xs).sum())
        K = logits.shape[1]
        # decoder order: row, column, channel, tile
        lg = logits.permute(3, 4, 2, 0, 1).reshape(-1, K)
        weights = table(lg)
        if on_table is not None:
            on_table(r0, r1, weights)
        enc.encode(xs.permute(2, 3, 1, 0).reshape(-1).numpy(), weights)
    return enc.finish(), bits


@torch.no_grad()
def decode_stream(model, payload: bytes, n: int, channels: int, h: int, w: int,
                  naive: bool = False, on_table: Callable | None = None,
                  progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Decode n tiles of (channels, h, w) in raster order, all tiles as one batch."""
    dec = StreamDecoder(payload)
    x = torch.zeros(n, channels, h, w, dtype=torch.long)
    stepper = make_stepper(model, n, channels, h, w, naive)
    for r in range(h):
        stepper.begin_row(x, r)
        for c in range(w):
            for ch in range(channels):
                weights = table(stepper.step(x, r, c)[:, :, ch])
                if on_table is not None:
                    on_table(r, c, ch, weights)
                x[:, ch, r, c] = torch.from_numpy(dec.decode(weights))
        if progress is not None:
            progress(w * n)
    return x
