"""Images to .arc bytes and back: plans the streams, runs the coder, checks the CRC."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from arcodec import container
from arcodec.coding.autoregressive import DEFAULT_CHUNK, decode_stream, encode_stream, gather, plan_streams, scatter
from arcodec.container import Entry, Header
from arcodec.errors import ArcodecError, FormatError, IntegrityError
from arcodec.zoo import DEFAULT_GRAY, LoadedModel, check_fingerprint, load_model, model_for_id

Progress = Callable[[int], None]  # called with the number of sub-pixels just coded


@dataclass(frozen=True)
class Encoded:
    data: bytes
    nll_bits: float  # the model's code length of the pixels (the size estimate)
    subpixels: int
    seconds: float


def as_image(array) -> np.ndarray:
    """(H, W) or (H, W, C) uint8 -> (H, W, C) uint8, or a clear error."""
    a = np.asarray(array)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.integer) and a.size and (a.min() < 0 or a.max() > 255):
            raise ArcodecError(f"pixel values must be 0..255, got {a.min()}..{a.max()}")
        if not np.issubdtype(a.dtype, np.integer) and a.size:
            raise ArcodecError(f"pixels must be integers, got dtype {a.dtype}")
        a = a.astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or 0 in a.shape:
        raise ArcodecError(f"expected an (H, W) or (H, W, C) image with C <= 4, got shape {a.shape}")
    return np.ascontiguousarray(a)


def resolve(model: str | LoadedModel | None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    return load_model(model or DEFAULT_GRAY)


def _stream_lengths(payloads: list[bytes]) -> bytes:
    out = bytearray()
    for p in payloads[:-1]:
        container.put_varint(out, len(p))
    return bytes(out)


def encode_images(images: list, names: list[str] | None = None, model=None, tile: int = container.DEFAULT_TILE,
                  archive: bool | None = None, progress: Progress | None = None) -> Encoded:
    """Compress images into one .arc file (an archive when ``names`` is given or archive=True)."""
    t0 = time.perf_counter()
    m = resolve(model)
    imgs = [as_image(a) for a in images]
    for a in imgs:
        if int(a.max()) >= m.levels:
            raise ArcodecError(f"model {m.name!r} codes levels 0..{m.levels - 1}, the image has {a.max()}")
        if m.channels != 1 and a.shape[2] != m.channels:
            raise ArcodecError(f"model {m.name!r} codes {m.channels}-channel images, got {a.shape[2]} channels")
    archive = bool(names) if archive is None else archive
    if not archive and len(imgs) != 1:
        raise ArcodecError("a single-image file holds one image; use an archive for several")
    names = names or [""] * len(imgs)
    entries = tuple(Entry(a.shape[0], a.shape[1], a.shape[2], n) for a, n in zip(imgs, names))
    streams = plan_streams([a.shape for a in imgs], m.channels, tile, DEFAULT_CHUNK)
    payloads, bits = [], 0.0
    for s in streams:
        x = gather(imgs, s)
        payload, b = encode_stream(m.net, x)
        payloads.append(payload)
        bits += b
        if progress is not None:
            progress(x.numel())
    header = Header(m.model_id, m.fingerprint, entries, archive, m.bit_depth, tile)
    body = _stream_lengths(payloads) + b"".join(payloads)
    data = container.write(header, body, imgs)
    return Encoded(data, bits, sum(a.size for a in imgs), time.perf_counter() - t0)


def decode_file(data: bytes, model=None, naive: bool = False,
                progress: Progress | None = None) -> tuple[Header, list[np.ndarray]]:
    """Decode .arc bytes to (header, images (H, W, C) uint8); verifies the CRC32."""
    header, body, crc = container.read(data)
    if model is None:
        m = model_for_id(header.model_id, header.fingerprint)
    else:
        m = resolve(model)
        check_fingerprint(m, header.fingerprint)
    if m.bit_depth != header.bit_depth:
        raise FormatError(f"file has bit depth {header.bit_depth}, model {m.name!r} codes {m.bit_depth}")
    shapes = [(e.height, e.width, e.channels) for e in header.entries]
    streams = plan_streams(shapes, m.channels, header.tile, DEFAULT_CHUNK)
    r = container._Reader(body)
    lengths = [r.varint("stream lengths") for _ in streams[:-1]]
    rest = len(body) - r.pos
    if sum(lengths) > rest:
        raise FormatError("file is truncated (payload shorter than its streams)")
    lengths.append(rest - sum(lengths))
    images = [np.zeros(s, dtype=np.uint8) for s in shapes]
    pos = r.pos
    for s, n in zip(streams, lengths):
        channels = 1 if m.channels == 1 else m.channels
        x = decode_stream(m.net, body[pos: pos + n], len(s.tiles), channels, s.height, s.width,
                          naive=naive, progress=progress)
        pos += n
        scatter(images, s, x)
    if not container.verify(data, images):
        raise IntegrityError("the CRC32 check fails: the file is corrupt")
    return header, images


def compress(array, model: str | LoadedModel | None = None) -> bytes:
    """Compress one image ((H, W) or (H, W, C) uint8) to .arc bytes, in the manner of zlib."""
    return encode_images([array], model=model).data


def decompress(data: bytes, model: str | LoadedModel | None = None) -> np.ndarray:
    """The image of a single-image .arc file: (H, W) for grayscale, else (H, W, C)."""
    header, images = decode_file(data, model)
    if header.archive:
        raise ArcodecError("this is an archive of several images: use decompress_archive()")
    img = images[0]
    return img[:, :, 0] if img.shape[2] == 1 else img


def decompress_archive(data: bytes, model=None) -> dict[str, np.ndarray]:
    """Every image of an archive, by name."""
    header, images = decode_file(data, model)
    return {e.name: (a[:, :, 0] if a.shape[2] == 1 else a) for e, a in zip(header.entries, images)}
