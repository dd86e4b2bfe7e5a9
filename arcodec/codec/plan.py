"""The stream plan: which tiles of which images each range-coder stream codes, in what order.

Images are cut into planes (one per channel when the model is grayscale) and tiles of at
most ``tile`` x ``tile`` pixels, tiles in raster order. Tiles of equal shape form a group
(groups in order of first appearance); a group is cut into chunks of at most ``chunk``
tiles, and each chunk is one stream. The plan is a pure function of the header (shapes,
the model's channels, the tile side), so the decoder rebuilds the encoder's plan; every
coder (autoregressive, wavefront, flow) codes the streams of the same plan. Spec:
``docs/format.md`` ("Payload: streams").
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

DEFAULT_CHUNK = 256  # tiles per stream at most


@dataclass(frozen=True)
class TileRef:
    """One tile: its image, plane and top-left corner."""

    image: int
    plane: int  # channel of the image for a grayscale model, -1 for all channels
    y: int
    x: int


@dataclass
class Stream:
    """One range-coder stream: tiles of height x width, coded together."""

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


def gather(images: list[np.ndarray], stream: Stream) -> np.ndarray:
    """The tiles of ``stream`` as a (n, C, h, w) int64 array."""
    out = []
    for t in stream.tiles:
        img = images[t.image][t.y: t.y + stream.height, t.x: t.x + stream.width]
        out.append(img[:, :, t.plane: t.plane + 1] if t.plane >= 0 else img)
    return np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2), dtype=np.int64)


def scatter(images: list[np.ndarray], stream: Stream, x) -> None:
    """Write decoded tiles x (n, C, h, w) of ``stream`` into their images (H, W, C), cast to
    the images' dtype (uint8 pixels; float code lengths for a bits map): the inverse of
    :func:`gather`. x: a tensor or an array."""
    tiles = np.asarray(x).transpose(0, 2, 3, 1)
    for t, v in zip(stream.tiles, tiles):
        dst = images[t.image][t.y: t.y + stream.height, t.x: t.x + stream.width]
        if t.plane >= 0:
            dst[:, :, t.plane] = v[:, :, 0]
        else:
            dst[...] = v


def tiles_crc(x) -> int:
    """CRC32 of a stream's tiles (n, C, h, w) (a tensor or an array), the symbols it codes, as
    uint8 bytes in C order: what an archive's stream checksums (header tag 10) hold."""
    return zlib.crc32(np.ascontiguousarray(np.asarray(x).astype(np.uint8)).tobytes()) & 0xFFFFFFFF
