"""Many small files in one command: files per second and peak memory of ``arcodec compress``
and ``arcodec decompress`` as the number of files grows.

    python benchmarks/many_files.py                  # 1,000 and 10,000 files (CPU heavy)
    python benchmarks/many_files.py --n 100 1000     # other counts

For each count N: the first N MNIST test images (repeated past 10,000) are written as
28x28 PNGs into a temporary folder; ``arcodec compress -k -j 1 -m MODEL DIR/*.png`` codes
them, one .arc file beside each, and ``arcodec decompress -k -j 1 DIR/*.arc -o OUT/`` writes
them back (both run as a user would, each in its own process, every file named on the
command line). The peak is that process's largest resident set (``ru_maxrss`` from
``os.wait4``); files/s is N over the command's wall time, start-up (torch, the model)
included. Every decoded PNG is compared with its original. The point: memory must not grow
with N (the command reads its images in groups of about ``GROUP_SUBPIXELS`` sub-pixels and
keeps one short record per file). Writes benchmarks/results/many_files.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import ROOT, bpd, command, load_set, machine, md_table, write


def run_measured(args: list[str]) -> tuple[float, float]:
    """Run ``arcodec ARGS`` in a child process: (wall seconds, peak resident MiB); exits with
    the command's error when it fails."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([sys.executable, "-m", "arcodec.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t
        if p.returncode != 0:
            err.seek(0)
            raise SystemExit(f"arcodec {args[0]} failed ({p.returncode}): {err.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # kilobytes on Linux


def measure(images: list[np.ndarray], n: int, model: str) -> dict:
    """Compress and decompress ``n`` PNG files (images cycled); one row of the table."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="arcodec-many-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        src.mkdir()
        out.mkdir()
        pngs = []
        for i in range(n):
            p = src / f"d{i:06d}.png"
            Image.fromarray(images[i % len(images)][:, :, 0]).save(p)
            pngs.append(str(p))
        enc_s, enc_mib = run_measured(["compress", "-k", "-j", "1", "-m", model, *pngs])
        arcs = [p + ".arc" for p in pngs]
        arc_bytes = sum(os.path.getsize(a) for a in arcs)
        dec_s, dec_mib = run_measured(["decompress", "-k", "-j", "1", *arcs, "-o", str(out)])
        wrong = sum(not np.array_equal(np.asarray(Image.open(out / Path(p).name)), images[i % len(images)][:, :, 0])
                    for i, p in enumerate(pngs))
    row = {"files": n, "compress_s": round(enc_s, 2), "compress_files_per_s": round(n / enc_s, 1),
           "compress_peak_mib": round(enc_mib, 1), "decompress_s": round(dec_s, 2),
           "decompress_files_per_s": round(n / dec_s, 1), "decompress_peak_mib": round(dec_mib, 1),
           "bpd": round(bpd(arc_bytes, n * images[0].size), 4), "wrong_round_trips": wrong}
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 10000], help="numbers of files [1000 10000]")
    ap.add_argument("--model", default="mnist-gated", help="the model compress uses [mnist-gated]")
    args = ap.parse_args()
    from arcodec.codec.files import GROUP_SUBPIXELS

    images, what = load_set("mnist", min(max(args.n), 10000))
    rows = [measure(images, n, args.model) for n in args.n]
    res = {"command": command(), "machine": machine(), "model": args.model, "images": what,
           "group_subpixels": GROUP_SUBPIXELS, "rows": rows}
    md = [f"Produced by `{res['command']}` on {res['machine']['cpus']} cores ({res['machine']['cpu']}, "
          f"1-minute load {res['machine']['load_avg_1min']}): N PNG files of {what} (cycled past 10,000), "
          f"`arcodec compress -k -j 1 -m {args.model} DIR/*.png`, then `arcodec decompress -k -j 1 DIR/*.arc "
          "-o OUT/`, each in its own process. Peak: the process's largest resident set (`ru_maxrss`); files/s "
          "include start-up (importing torch, loading the model).", "",
          *md_table(["files", "compress s", "files/s", "peak MiB", "decompress s", "files/s", "peak MiB", "bits/dim",
                     "wrong round trips"],
                    [[f"{r['files']:,}", r["compress_s"], r["compress_files_per_s"], r["compress_peak_mib"],
                      r["decompress_s"], r["decompress_files_per_s"], r["decompress_peak_mib"], r["bpd"],
                      r["wrong_round_trips"]] for r in rows])]
    write("many_files", res, md)


if __name__ == "__main__":
    main()
