"""Classical lossless codecs, with their exact settings, on the images the learned models code.

    python benchmarks/classical.py                      # every codec on the 24 whole Kodak photos
    python benchmarks/classical.py --data mnist --limit 500
    python benchmarks/classical.py --gray               # the Kodak photos turned to gray: classical_gray.*

Each codec is one call of Pillow or imagecodecs (single-threaded where the library has a
choice); its settings are recorded beside its result. Every file is decoded and compared
with the original. A codec missing from this imagecodecs build is skipped with a printed
note (and listed under "unavailable" in the output).

How images are handed to the codecs: gray images as (H, W) arrays. WebP has no grayscale
mode, so a gray image goes in as RGB with three equal channels, which is what a user gets
(Pillow converts an "L" image to RGB when saving WebP). The general-purpose compressors
(gzip, bzip2, xz, zstd) see the raw pixel bytes (row-major, channels interleaved), with no
shape stored: the decoder is told the shape, so they carry even less than a file format.

Standalone, this script writes benchmarks/results/classical.{json,csv,md}: the sanity check
of these settings on whole photos (Kodak by default); ``benchmarks/compression.py`` calls
:func:`measure` and :func:`streams` on the same images as the learned models.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from _common import bpd, command, load_set, machine, md_table, write


@dataclass(frozen=True)
class Codec:
    name: str
    settings: str  # the exact call, recorded in the results
    encode: Callable[[np.ndarray], bytes]  # (H, W, C) uint8 -> bytes
    decode: Callable[[bytes, tuple], np.ndarray]  # (bytes, shape) -> (H, W, C) uint8
    kind: str = "image"  # "image": an image format; "raw": a general compressor of the raw pixels


def _plain(a: np.ndarray) -> np.ndarray:
    """(H, W, 1) -> (H, W): the array a gray image is handed to the codecs as."""
    return a[:, :, 0] if a.shape[2] == 1 else a


def _shaped(b: np.ndarray, shape: tuple) -> np.ndarray:
    b = np.asarray(b)
    if b.ndim == 2:
        b = b[:, :, None]
    if shape[2] == 1 and b.shape[2] == 3 and (b == b[:, :, :1]).all():
        b = b[:, :, :1]  # WebP gives back the gray image as RGB
    return b


def _pil_png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_plain(a)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _pil_decode(data: bytes, shape: tuple) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return _shaped(np.asarray(im), shape)


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(a, 3, axis=2)) if a.shape[2] == 1 else a


def _codecs() -> list[Codec]:
    out = [Codec("PNG (Pillow)", "PIL.Image.save(format='PNG', optimize=True)", _pil_png, _pil_decode)]
    try:
        import imagecodecs as ic
    except ImportError as e:
        print(f"note: imagecodecs is not installed ({e}): only Pillow's PNG is measured", file=sys.stderr)
        return out
    raw = lambda fn: (lambda d, shape: np.frombuffer(fn(d), dtype=np.uint8).reshape(shape))  # noqa: E731
    out += [
        Codec("PNG (imagecodecs)", "imagecodecs.png_encode(level=9)",
              lambda a: ic.png_encode(_plain(a), level=9), lambda d, s: _shaped(ic.png_decode(d), s)),
        Codec("WebP lossless", "imagecodecs.webp_encode(lossless=True, method=6, level=100, numthreads=1); "
              "gray stored as RGB", lambda a: ic.webp_encode(_rgb(a), lossless=True, method=6, level=100, numthreads=1),
              lambda d, s: _shaped(ic.webp_decode(d), s)),
        Codec("JPEG XL lossless e7", "imagecodecs.jpegxl_encode(lossless=True, effort=7, numthreads=1)",
              lambda a: ic.jpegxl_encode(_plain(a), lossless=True, effort=7, numthreads=1),
              lambda d, s: _shaped(ic.jpegxl_decode(d, numthreads=1), s)),
        Codec("JPEG XL lossless e10", "imagecodecs.jpegxl_encode(lossless=True, effort=10, numthreads=1)",
              lambda a: ic.jpegxl_encode(_plain(a), lossless=True, effort=10, numthreads=1),
              lambda d, s: _shaped(ic.jpegxl_decode(d, numthreads=1), s)),
        Codec("JPEG-LS", "imagecodecs.jpegls_encode(level=0) (CharLS, lossless, no colour transform)",
              lambda a: ic.jpegls_encode(_plain(a), level=0), lambda d, s: _shaped(ic.jpegls_decode(d), s)),
        Codec("JPEG 2000 lossless", "imagecodecs.jpeg2k_encode(reversible=True, codecformat='J2K', "
              "numthreads=1) (OpenJPEG, 5/3 wavelet, colour transform on RGB, bare codestream)",
              lambda a: ic.jpeg2k_encode(_plain(a), reversible=True, codecformat="J2K", numthreads=1),
              lambda d, s: _shaped(ic.jpeg2k_decode(d, numthreads=1), s)),
        Codec("gzip", "imagecodecs.gzip_encode(raw pixels, level=9)",
              lambda a: ic.gzip_encode(a.tobytes(), level=9), raw(ic.gzip_decode), "raw"),
        Codec("bzip2", "imagecodecs.bz2_encode(raw pixels, level=9)",
              lambda a: ic.bz2_encode(a.tobytes(), level=9), raw(ic.bz2_decode), "raw"),
        Codec("xz", "imagecodecs.lzma_encode(raw pixels, level=9)",
              lambda a: ic.lzma_encode(a.tobytes(), level=9), raw(ic.lzma_decode), "raw"),
        Codec("zstd", "imagecodecs.zstd_encode(raw pixels, level=19)",
              lambda a: ic.zstd_encode(a.tobytes(), level=19), raw(ic.zstd_decode), "raw"),
    ]
    return out


def available(names: list[str] | None = None) -> tuple[list[Codec], dict[str, str]]:
    """The codecs that work in this build (tried on a small gray and a small RGB image),
    and a note for each that does not; only those ``names`` when given (ValueError for a
    name no codec has)."""
    rng = np.random.default_rng(0)
    probes = [rng.integers(0, 256, (16, 16, c), dtype=np.uint8) for c in (1, 3)]
    codecs = _codecs()
    if names is not None:
        unknown = sorted(set(names) - {c.name for c in codecs})
        if unknown:
            raise ValueError(f"no classical codec named {', '.join(map(repr, unknown))} (see benchmarks/classical.py)")
    ok, missing = [], {}
    for c in codecs:
        if names is not None and c.name not in names:
            continue
        try:
            for a in probes:
                if not np.array_equal(c.decode(bytes(c.encode(a)), a.shape), a):
                    raise RuntimeError("the round trip is not exact")
            ok.append(c)
        except Exception as e:  # missing from this build, or not lossless here: say so, go on
            missing[c.name] = f"{e.__class__.__name__}: {e}"
            print(f"note: {c.name} is skipped: {missing[c.name]}", file=sys.stderr)
    return ok, missing


def measure(images: list[np.ndarray], codecs: list[Codec]) -> list[dict]:
    """Per codec: bits/dim over the set (one file per image), encode and decode images/s
    (each image timed alone, one thread), and exact round trips."""
    dims = sum(a.size for a in images)
    out = []
    for c in codecs:
        c.decode(bytes(c.encode(images[0])), images[0].shape)  # warm up (lazy library set-up)
        size = enc = dec = 0.0
        ok = 0
        for a in images:
            t = time.perf_counter()
            data = bytes(c.encode(a))
            t1 = time.perf_counter()
            b = c.decode(data, a.shape)
            dec += time.perf_counter() - t1
            enc += t1 - t
            size += len(data)
            ok += bool(np.array_equal(b, a))
        out.append({"codec": c.name, "settings": c.settings, "kind": c.kind, "bpd": bpd(size, dims),
                    "bytes": int(size), "encode_img_s": len(images) / max(enc, 1e-9),
                    "decode_img_s": len(images) / max(dec, 1e-9), "roundtrips": f"{ok}/{len(images)}"})
    return out


def streams(images: list[np.ndarray], codecs: list[Codec]) -> list[dict]:
    """The general-purpose compressors on the whole set's raw pixels as one stream."""
    blob = b"".join(a.tobytes() for a in images)
    dims = len(blob)
    out = []
    for c in codecs:
        if c.kind != "raw":
            continue
        t = time.perf_counter()
        data = bytes(c.encode(np.frombuffer(blob, np.uint8).reshape(1, -1, 1)))
        t1 = time.perf_counter()
        ok = c.decode(data, (1, dims, 1)).tobytes() == blob
        t2 = time.perf_counter()
        out.append({"codec": f"{c.name}, whole set as one stream", "settings": c.settings, "kind": "stream",
                    "bpd": bpd(len(data), dims), "bytes": len(data), "encode_img_s": len(images) / (t1 - t),
                    "decode_img_s": len(images) / (t2 - t1), "roundtrips": "1/1" if ok else "0/1"})
    return out


def table(rows: list[dict]) -> list[str]:
    return md_table(["codec", "bits/dim", "encode img/s", "decode img/s", "round trips", "settings"],
                    [[r["codec"], f"{r['bpd']:.4f}", f"{r['encode_img_s']:.4g}", f"{r['decode_img_s']:.4g}",
                      r["roundtrips"], f"`{r['settings']}`"] for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="photos", help="photos (a folder, see --photos), mnist or colour-mnist")
    ap.add_argument("--photos", default=None, help="folder of photos (default ../shared/data/kodak)")
    ap.add_argument("--crop", type=int, default=0, help="centre crop of each photo (0: the whole photo)")
    ap.add_argument("--limit", type=int, default=0, help="first N images (0: all)")
    ap.add_argument("--gray", action="store_true",
                    help="turn the images to gray first (arcodec.training.data.to_luma); writes classical_gray.*")
    args = ap.parse_args()
    images, what = load_set(args.data, args.limit, args.photos, args.crop)
    if args.gray:
        from arcodec.training.data import to_luma

        images = [to_luma(a) for a in images]
        what += ", turned to gray (round(0.299 R + 0.587 G + 0.114 B))"
    codecs, missing = available()
    rows = measure(images, codecs) + streams(images, codecs)
    res = {"command": command(), "images": what, "machine": machine(1), "codecs": rows, "unavailable": missing}
    md = [f"Classical lossless codecs on {what} (`{command()}`; one file per image, each timed alone on one "
          f"thread, {res['machine']['cpu']}):", "", *table(rows)]
    if missing:
        md += ["", "Not measured (missing from this imagecodecs build): " + "; ".join(f"{k} ({v})" for k, v in missing.items())]
    write("classical_gray" if args.gray else "classical", res, md, rows)


if __name__ == "__main__":
    main()
