"""The wavefront decoder's threads: one photo decoded on one thread, on two threads whose
matrix products run on one BLAS thread where no line is split (the decoder before
DECODE_BLAS), and on two threads as shipped (lines split from DECODE_SHARE pixels a thread;
a photo none of whose lines is split gives both threads to the matrix products), in one
process, one after the other; the encoder's one and two threads beside.

    python benchmarks/photo_threads.py                       # kodim04, kodim01 and a held-out photo
    python benchmarks/photo_threads.py --photos a.png b.png

Every decode is compared with the photo. Timings on a shared machine are noisy: compare the
rows of one photo, measured together (the load average is printed).

Writes benchmarks/results/photo_threads.{json,md}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import command, data_root, machine, md_table, missing, write


LABELS = ["1 thread", "2 threads, matrix products on one (before)", "2 threads, as shipped"]


def default_photos() -> list[Path]:
    root = data_root()
    return [root / "kodak" / "kodim04.png", root / "kodak" / "kodim01.png", root / "photos" / "006.png"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", nargs="+", type=Path, default=None)
    ap.add_argument("--model", default="photo-rgb")
    args = ap.parse_args()
    from arcodec.codec import coders, wavefront
    from arcodec.codec.api import decode_file, encode_images
    from arcodec.imageio import read_image
    from arcodec.zoo import load_model

    mach = machine(2)  # the load average before this script's own work
    m = load_model(args.model)
    photos = args.photos or default_photos()
    rows = []
    for path in photos:
        try:
            a = read_image(path.read_bytes(), str(path))
        except OSError as e:
            raise missing(f"photo {path}", e) from None
        decode_file(encode_images([a[:64, :64]], model=m).data, model=m)  # kernels loaded
        row = {"photo": path.name, "size": f"{a.shape[1]}x{a.shape[0]}"}
        for label, threads, blas in ((LABELS[0], 1, True), (LABELS[1], 2, False), (LABELS[2], 2, True)):
            coders.set_threads(threads)
            shipped, wavefront.DECODE_BLAS = wavefront.DECODE_BLAS, blas
            try:
                t = time.perf_counter()
                data = encode_images([a], model=m).data
                t1 = time.perf_counter()
                _, (b,) = decode_file(data, model=m)
                t2 = time.perf_counter()
            finally:
                wavefront.DECODE_BLAS = shipped
            if not np.array_equal(a, b):
                raise SystemExit(f"error: {path.name} did not decode to its pixels ({label})")
            row[f"encode_s {label}"] = t1 - t
            row[f"decode_s {label}"] = t2 - t1
        rows.append(row)
        print(row, flush=True)
    labels = LABELS
    table = md_table(["photo", "size", *[f"decode s: {k}" for k in labels], "encode s: 1 thread",
                      "encode s: 2 threads"],
                     [[r["photo"], r["size"], *[f"{r[f'decode_s {k}']:.2f}" for k in labels],
                       f"{r['encode_s 1 thread']:.2f}", f"{r[f'encode_s {labels[2]}']:.2f}"] for r in rows])
    result = {"machine": mach, "command": command(), "model": m.name, "decode_share": wavefront.DECODE_SHARE,
              "rows": rows}
    about = (f"Produced by `{command()}`: `{m.name}`, each photo coded in one process three times, one after "
             f"the other (lines shared among the decoder's threads from DECODE_SHARE = {wavefront.DECODE_SHARE} "
             f"pixels a thread; the matrix products of a photo none of whose lines is shared on one BLAS thread, as "
             f"before, and on both, as shipped); load average {result['machine']['load_avg_1min']} at the "
             f"start; every decode compared with the photo.")
    write("photo_threads", result, [about, "", *table])


if __name__ == "__main__":
    main()
