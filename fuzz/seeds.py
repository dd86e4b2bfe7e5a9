"""Valid .arc files of every kind a decoder meets, with the pixels they hold: the seeds that
``tests/test_fuzz.py``, ``fuzz/fuzz_arc.py`` and ``benchmarks/fuzz.py`` mutate.

Each is tiny (a few to a few dozen pixels), so that a mutated copy decodes in a few
hundredths of a second with the shipped models. ``mutate`` applies random edits (bit flips,
byte changes, insertions, deletions, truncations) the same way everywhere.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

OPS = ("flip", "set", "insert", "delete", "truncate")
INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF)  # values that end, continue or overflow a varint


def _blob(h: int, w: int, c: int, value, at=(1, 1), size=(2, 2)) -> np.ndarray:
    a = np.zeros((h, w, c), dtype=np.uint8)
    a[at[0]: at[0] + size[0], at[1]: at[1] + size[1]] = value
    return a


@lru_cache(maxsize=1)
def seed_files() -> dict[str, tuple[bytes, tuple[np.ndarray, ...]]]:
    """{kind: (file bytes, the images it holds (H, W, C) uint8)} for: the stored method (raw
    and deflated), a model-coded digit (mnist-gated), a two-channel image coded plane by
    plane, 2-bit colour (colour-mnist-made), a level map (colour-mnist-made coding indices),
    the integer flow (mnist-idf, 28x28), archives (model-coded with several streams and their
    checksums, and stored), a 16-bit image (its byte planes), a palette image (indices,
    with palette and transparency records) and photos (photo-rgb and photo-gray: the
    wavefront coder, its bands and engine header; too small for offsets)."""
    from arcodec.codec import api as codec
    from arcodec.codec import container

    rng = np.random.default_rng(20240601)
    out: dict[str, tuple[bytes, tuple[np.ndarray, ...]]] = {}

    def add(kind: str, images: list[np.ndarray], data: bytes) -> None:
        out[kind] = (data, tuple(codec.as_image(a) for a in images))

    noise = rng.integers(0, 256, (5, 5, 1), dtype=np.uint8)
    add("stored-raw", [noise], codec.encode_images([noise]).data)
    colours = rng.integers(0, 4, (4, 4, 3), dtype=np.uint8)
    add("stored-deflate", [colours], codec.encode_stored([colours]).data)
    digit = _blob(3, 3, 1, 255, size=(1, 2))
    add("digit", [digit], codec.encode_images([digit], model="mnist-gated").data)
    alpha = np.concatenate([_blob(3, 2, 1, 200, at=(1, 0), size=(1, 1)), np.full((3, 2, 1), 255, np.uint8)], 2)
    add("gray-alpha", [alpha], codec.encode_images([alpha], model="mnist-gated").data)
    colour = _blob(3, 3, 3, (3, 1, 2))
    add("colour", [colour], codec.encode_images([colour], model="colour-mnist-made").data)
    mapped = _blob(3, 3, 3, (255, 85, 170))
    levels = (0, 85, 170, 255)
    m = codec.resolve("colour-mnist-made")  # the path auto takes when the level map wins
    add("level-map", [mapped], codec._encode(m, [(codec._indexed([mapped], levels), None, False)], None, None,
                                             codec.MAX_BATCH, [levels])[0].data)
    big = _blob(28, 28, 1, 255, at=(8, 10), size=(12, 6))
    add("idf", [big], codec.encode_images([big], model="mnist-idf").data)
    parts = [_blob(3, 3, 1, 255, size=(1, 1)), _blob(2, 3, 1, 128, size=(1, 2)), _blob(3, 3, 1, 64)]
    names = ["a.png", "sub/b.png", "c"]
    add("archive", parts, codec.encode_images(parts, names=names, model="mnist-gated").data)
    add("archive-stored", parts, codec.encode_stored([codec.as_image(a) for a in parts], names, archive=True).data)
    wide = _blob(3, 4, 1, 250).astype(np.uint16) * 251 + 7  # 16-bit samples (header tag 11)
    out["16-bit"] = (codec.encode_images([wide]).data, (wide,))  # decodes to uint16 (H, W, 1)
    indices = _blob(3, 3, 1, 2)
    palette = container.Metadata(palette=("RGB", bytes(range(9))), transparency=b"\x00\xff")
    add("palette", [indices], container.with_metadata(codec.encode_images([indices], model="mnist-gated").data,
                                                      palette, [indices]))
    photo = rng.integers(90, 160, (4, 5, 3), dtype=np.uint8)
    add("photo", [photo], codec.encode_images([photo], model="photo-rgb").data)
    gray = rng.integers(0, 256, (3, 4, 1), dtype=np.uint8) // 16 * 16
    add("photo-gray", [gray], codec.encode_images([gray], model="photo-gray").data)
    return out


def mutate(data: bytes, ops) -> bytes:
    """``data`` edited by ``ops``: (kind, position, value) triples, kind one of OPS; positions
    are taken modulo the length, so any integers will do."""
    b = bytearray(data)
    for kind, pos, value in ops:
        i = pos % (len(b) + 1)
        if kind == "flip" and b:
            b[i % len(b)] ^= 1 << (value % 8)
        elif kind == "set" and b:
            b[i % len(b)] = value % 256
        elif kind == "insert":
            b[i:i] = bytes([value % 256])
        elif kind == "delete" and b:
            del b[i % len(b)]
        elif kind == "truncate":
            del b[i:]
    return bytes(b)


def random_ops(rng: np.random.Generator, most: int = 3) -> list[tuple[str, int, int]]:
    """1..``most`` random edits; a third of the byte values come from INTERESTING."""
    ops = []
    for _ in range(int(rng.integers(1, most + 1))):
        value = int(rng.choice(INTERESTING)) if rng.random() < 1 / 3 else int(rng.integers(0, 256))
        ops.append((str(rng.choice(OPS)), int(rng.integers(0, 1 << 16)), value))
    return ops
