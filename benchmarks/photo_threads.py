"""The wavefront decoder's threads: one photo decoded on one thread, on two threads that split
every line of 128 pixels or more (64 pixels a thread at least: the decoder before
DECODE_SHARE), and on two threads as shipped (lines split from DECODE_SHARE pixels a thread),
in one process, one after the other; the encoder's one and two threads beside.

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
        for label, threads, share in (("1 thread", 1, wavefront.DECODE_SHARE),
                                      ("2 threads, lines split from 64 pixels a thread (before)", 2, 64),
                                      ("2 threads, lines split from DECODE_SHARE pixels a thread", 2, wavefront.DECODE_SHARE)):
            coders.set_threads(threads)
            shipped, wavefront.DECODE_SHARE = wavefront.DECODE_SHARE, share
            try:
                t = time.perf_counter()
                data = encode_images([a], model=m).data
                t1 = time.perf_counter()
                _, (b,) = decode_file(data, model=m)
                t2 = time.perf_counter()
            finally:
                wavefront.DECODE_SHARE = shipped
            if not np.array_equal(a, b):
                raise SystemExit(f"error: {path.name} did not decode to its pixels ({label})")
            row[f"encode_s {label}"] = t1 - t
            row[f"decode_s {label}"] = t2 - t1
        rows.append(row)
        print(row, flush=True)
    labels = ["1 thread", "2 threads, lines split from 64 pixels a thread (before)", "2 threads, lines split from DECODE_SHARE pixels a thread"]
    table = md_table(["photo", "size", *[f"decode s: {k}" for k in labels], "encode s: 1 thread",
                      "encode s: 2 threads"],
                     [[r["photo"], r["size"], *[f"{r[f'decode_s {k}']:.2f}" for k in labels],
                       f"{r['encode_s 1 thread']:.2f}", f"{r[f'encode_s {labels[2]}']:.2f}"] for r in rows])
    result = {"machine": mach, "command": command(), "model": m.name, "decode_share": wavefront.DECODE_SHARE,
              "rows": rows}
    about = (f"Produced by `{command()}`: `{m.name}`, each photo coded in one process three times, one after "
             f"the other (the decoder's lines shared from 64 pixels a thread, as before, and from DECODE_SHARE = "
             f"{wavefront.DECODE_SHARE}, as shipped); load average {result['machine']['load_avg_1min']} at the "
             f"start; every decode compared with the photo.")
    write("photo_threads", result, [about, "", *table])


if __name__ == "__main__":
    main()
