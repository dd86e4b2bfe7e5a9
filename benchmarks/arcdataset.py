"""Images per second that ArcDataset feeds a DataLoader from one archive of MNIST digits.

    python benchmarks/arcdataset.py               # the 10,000 MNIST test images
    python benchmarks/arcdataset.py --limit 200
    python benchmarks/arcdataset.py --model mnist-gated   # skip auto's trial of the other models

Builds one archive of the first N MNIST test images with the default codec (auto: the
smallest of every applicable shipped model and the stored pixels) or ``--model``, entries
named ``LABEL/00000.png`` so that the labels come from the folders, then times DataLoader
epochs (batch 64) over ``ArcDataset`` with 0 and 2 workers. Epoch 1 includes decoding: each
process decodes the streams (256 digits each) that its batches fall in, so with 2 workers
both decode every stream; epoch 2 reads the cache (the workers are persistent, and the
default cache holds every stream of 10,000 digits). Every image and label is compared with
the original. Writes benchmarks/results/arcdataset.{json,md}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from _common import command, machine, md_table, missing, write


def mnist(limit: int) -> tuple[list[np.ndarray], list[int]]:
    from arcodec.training.data import load_dataset, load_mnist_labels

    try:
        x, y = load_dataset("mnist", "test"), load_mnist_labels("test")
    except FileNotFoundError as e:
        raise missing("data set 'mnist'", e) from None
    x, y = x[:limit], y[:limit]
    return list(x.permute(0, 2, 3, 1).numpy()), y.tolist()


def epochs(path: Path, workers: int, batch: int, images: np.ndarray, labels: list[int]) -> list[float]:
    """Seconds of two epochs, the first from a cold cache; checks every image and label."""
    from arcodec.training import arcdataset

    arcdataset._archive.cache_clear()  # nothing decoded before (forked workers would inherit it)
    loader = DataLoader(arcdataset.ArcDataset(path), batch_size=batch, num_workers=workers,
                        persistent_workers=workers > 0)
    out = []
    for _ in range(2):
        t = time.perf_counter()
        xs, ys = zip(*loader)
        out.append(time.perf_counter() - t)
        if not (np.array_equal(torch.cat(xs).numpy(), images) and torch.cat(ys).tolist() == labels):
            raise SystemExit(f"error: the images or labels read with {workers} workers differ from the originals")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=10000, help="MNIST test images in the archive")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads of this process (0: torch's default)")
    ap.add_argument("--model", default=None, help="model of the archive (default: auto)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from arcodec.codec.api import encode_images

    images, labels = mnist(args.limit)
    names = [f"{y}/{i:05d}.png" for i, y in enumerate(labels)]
    t = time.perf_counter()
    enc = encode_images(images, names=names, model=args.model)
    encode_s = time.perf_counter() - t
    chw = np.stack(images).transpose(0, 3, 1, 2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mnist-test.arc"
        path.write_bytes(enc.data)
        for workers in (0, 2):
            for epoch, s in enumerate(epochs(path, workers, args.batch, chw, labels), 1):
                rows.append({"num_workers": workers, "epoch": epoch, "seconds": s, "images_per_s": len(images) / s})
    n = len(images)
    from arcodec.codec import container
    from arcodec.zoo import cards

    header = container.read(enc.data)[0]
    coded_by = next((c["name"] for c in cards() if c["id"] == header.model_id), "stored")
    result = {"model": coded_by, "stream_checksums": header.stream_crcs, "images": f"the first {n} MNIST test images (28x28 gray)", "n": n, "batch": args.batch,
              "archive_bytes": len(enc.data), "bits_per_dim": 8 * len(enc.data) / enc.subpixels,
              "encode_s": encode_s, "rows": rows, "command": command(), "machine": machine()}
    md = ["# ArcDataset throughput\n",
          f"One archive of {result['images']}, {args.model or 'default codec (auto)'}, coded by {coded_by}: "
          f"{len(enc.data):,} bytes ({result['bits_per_dim']:.3f} bits/dim), encoded in {encode_s:.1f} s. "
          f"DataLoader, batch {args.batch}; epoch 1 decodes, a stream (256 digits) at a time, the streams that "
          "each process's batches fall in (with 2 workers, both decode every stream), each stream verified by its "
          "CRC32; epoch 2 reads the cache (persistent workers). Every image and label checked.\n",
          *md_table(["num_workers", "epoch", "seconds", "images/s"],
                    [[r["num_workers"], r["epoch"], f"{r['seconds']:.3f}", f"{r['images_per_s']:,.0f}"] for r in rows]),
          f"\n`{result['command']}` on {result['machine']['cpu']} ({result['machine']['cpus']} CPUs, "
          f"{result['machine']['torch_threads']} torch threads, load {result['machine']['load_avg_1min']}), CPU only."]
    write("arcdataset", result, md)


if __name__ == "__main__":
    main()
