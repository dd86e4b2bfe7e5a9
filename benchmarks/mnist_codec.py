"""The shipped MNIST model on the MNIST test set: NLL next to real file sizes, speed.

    python benchmarks/mnist_codec.py --limit 500       # `make bench`
    python benchmarks/mnist_codec.py --limit 10000     # the whole test set

Prints a table and writes benchmarks/results/mnist_codec.json and .md. Every number is
measured here; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from arcodec import container
from arcodec.codec import MAX_BATCH, decode_file, decode_many, encode_images, encode_many
from arcodec.data import load_mnist
from arcodec.zoo import load_model

RESULTS = Path(__file__).resolve().parent / "results"


def classical_sizes(images: np.ndarray) -> dict[str, float]:
    """Mean bits/dim, one file per image, of PNG (Pillow optimize) and the codecs of
    imagecodecs that are available."""
    from PIL import Image

    out = {}
    n = images[0].size
    png = [len(_pil_png(Image, a)) for a in images]
    out["PNG (Pillow, optimize)"] = 8 * float(np.mean(png)) / n
    try:
        import imagecodecs as ic
    except ImportError as e:
        print(f"(imagecodecs unavailable: {e})", file=sys.stderr)
        return out
    codecs = {
        # WebP has no grayscale mode: the gray image as RGB, as a user would have to
        "WebP lossless (method 6, gray as RGB)": lambda a: ic.webp_encode(np.stack([a] * 3, -1), lossless=True, method=6),
        "JPEG XL lossless (effort 10)": lambda a: ic.jpegxl_encode(a, lossless=True, effort=10),
    }
    for name, encode in codecs.items():
        try:
            out[name] = 8 * float(np.mean([len(encode(a)) for a in images])) / n
        except Exception as e:  # a codec missing from this imagecodecs build: say so, go on
            print(f"({name} unavailable: {e})", file=sys.stderr)
    return out


def _pil_png(Image, a) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def cli_seconds(image: np.ndarray) -> dict[str, float]:
    """Cold wall time of `arcodec compress` and `arcodec decompress` on one image."""
    from PIL import Image

    exe = Path(sys.executable).with_name("arcodec")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "digit.png"
        Image.fromarray(image).save(src)
        t = time.perf_counter()
        subprocess.run([str(exe), "compress", "-k", str(src)], check=True)
        t1 = time.perf_counter()
        subprocess.run([str(exe), "decompress", "-f", str(src) + ".arc"], check=True)
        t2 = time.perf_counter()
    return {"cli_compress_s": t1 - t, "cli_decompress_s": t2 - t1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=500, help="first N MNIST test images")
    ap.add_argument("--model", default="mnist-gated")
    ap.add_argument("--single-decode", type=int, default=10, help="files decoded one by one (batch 1)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    m = load_model(args.model)
    x = load_mnist("test", args.data_root).numpy()[: args.limit, 0]
    n, dims = len(x), x[0].size

    # one file per image, coded and decoded batched across files (MAX_BATCH tiles at a time)
    t = time.perf_counter()
    files = encode_many(list(x), model=m)
    enc_s = time.perf_counter() - t
    sizes = np.array([len(f.data) for f in files])
    nll = np.array([f.nll_bits for f in files])
    t = time.perf_counter()
    ok_files = sum(np.array_equal(img[0][:, :, 0], a) for (_, img), a in zip(decode_many([f.data for f in files]), x))
    dec_s = time.perf_counter() - t
    t = time.perf_counter()  # one file at a time: batch 1
    ok_single = sum(np.array_equal(decode_file(f.data)[1][0][:, :, 0], a)
                    for f, a in zip(files[: args.single_decode], x))
    dec1_s = (time.perf_counter() - t) / args.single_decode
    t = time.perf_counter()  # the naive decoder (a whole forward pass per pixel), for reference
    ok_naive = np.array_equal(decode_file(files[0].data, naive=True)[1][0][:, :, 0], x[0])
    naive_s = time.perf_counter() - t

    # one archive, decoded in batches of 256 tiles
    names = [f"{i:05d}.png" for i in range(n)]
    t = time.perf_counter()
    arc = encode_images(list(x), names, model=m)
    arc_enc_s = time.perf_counter() - t
    t = time.perf_counter()
    _, out = decode_file(arc.data)
    arc_dec_s = time.perf_counter() - t
    ok_arc = sum(np.array_equal(o[:, :, 0], a) for o, a in zip(out, x))

    res = {
        "model": m.name, "sha256": m.sha256, "images": n, "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "nll_bpd": float(nll.sum() / (n * dims)),
        "file_bpd": float(8 * sizes.sum() / (n * dims)),
        "file_overhead_pct": float(100 * (8 * sizes.sum() - nll.sum()) / nll.sum()),
        "file_overhead_bytes": float((sizes - nll / 8).mean()),
        "file_header_crc_bytes": container.header_size(files[0].data),
        "archive_bytes": len(arc.data),
        "archive_bpd": 8 * len(arc.data) / (n * dims),
        "archive_overhead_bytes_per_image": (len(arc.data) - arc.nll_bits / 8) / n,
        "archive_names_bytes_per_image": float(np.mean([len(s) + 1 for s in names])),
        "roundtrips_verified": {"files": f"{ok_files}/{n}", "files_batch1": f"{ok_single}/{args.single_decode}",
                                "archive": f"{ok_arc}/{n}"},
        "max_batch_tiles": MAX_BATCH,
        "encode_img_s_files": n / enc_s,
        "decode_img_s_files": n / dec_s,
        "decode_img_s_batch1": 1.0 / dec1_s,
        "naive_decode_img_s_batch1": 1.0 / naive_s,
        "naive_roundtrip_ok": bool(ok_naive),
        "encode_img_s_archive": n / arc_enc_s,
        "decode_img_s_archive": n / arc_dec_s,
        **cli_seconds(x[0]),
        "classical_bpd": classical_sizes(x),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mnist_codec.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        f"Shipped model `{m.name}` on the first {n} MNIST test images "
        f"(`python benchmarks/mnist_codec.py --limit {args.limit}`, {res['cpus']} CPUs, "
        f"{res['torch_threads']} torch threads):",
        "",
        "| codec | bits/dim |",
        "|---|---|",
        f"| model NLL (exact arithmetic) | {res['nll_bpd']:.4f} |",
        f"| arcodec, one file per image (header + CRC included) | {res['file_bpd']:.4f} |",
        f"| arcodec, one archive of all images | {res['archive_bpd']:.4f} |",
        *[f"| {k} | {v:.4f} |" for k, v in res["classical_bpd"].items()],
        "",
        f"- overhead per file: {res['file_overhead_bytes']:.1f} bytes ({res['file_overhead_pct']:.1f} %), "
        f"of which {res['file_header_crc_bytes']} bytes header + CRC; archive: "
        f"{res['archive_overhead_bytes_per_image']:.2f} bytes per image, names ({res['archive_names_bytes_per_image']:.0f} bytes) included",
        f"- round trips verified: {res['roundtrips_verified']['files']} (one file per image), "
        f"{res['roundtrips_verified']['archive']} (archive), {res['roundtrips_verified']['files_batch1']} "
        f"(files decoded one at a time)",
        f"- encode: {res['encode_img_s_files']:.1f} img/s (one file per image, files batched), "
        f"{res['encode_img_s_archive']:.1f} img/s (archive)",
        f"- decode: {res['decode_img_s_files']:.2f} img/s (one file per image, up to {MAX_BATCH} files per batch), "
        f"{res['decode_img_s_archive']:.2f} img/s (archive), {res['decode_img_s_batch1']:.2f} img/s (one file "
        f"at a time, batch 1); the naive decoder (whole network per pixel) {res['naive_decode_img_s_batch1']:.3f} img/s",
        f"- CLI wall time, one digit: compress {res['cli_compress_s']:.2f} s, decompress {res['cli_decompress_s']:.2f} s",
    ]
    (RESULTS / "mnist_codec.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
