"""The Gated PixelCNN decoder's threads: MNIST test digits decoded in batches of several sizes
on one thread, and on two threads that share every row and step of the batch either through
the coder's thread pool (each step handed to a pool thread that sleeps in between) or through
a crew (workers that wait for the next step in compiled code, arcodec.codec.crew), in one
process, one after the other.

    python benchmarks/gated_threads.py                     # batches of 1, 16, 32, 128 and 512 digits
    python benchmarks/gated_threads.py --batches 128 --model mnist-gated-small
    python benchmarks/gated_threads.py --busy 1 --batches 32 128 512   # another process holds a CPU busy

With ``--busy N``, N other processes spin on a CPU each for the whole measurement (a shared
machine): a crew's worker then loses its CPU part of the time, and the batch's chunks it
would have run fall to the caller. Those numbers go to gated_threads_busy.{json,md}.

Every decode is compared with its digits. Timings on a shared machine are noisy: compare the
rows of one batch size, measured together (the load average is printed).

Writes benchmarks/results/gated_threads.{json,md}.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

from _common import command, machine, md_table, write

WAYS = [("1 thread", True, 1), ("2 threads, pool", False, 2), ("2 threads, crew", True, 2)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16, 32, 128, 512])
    ap.add_argument("--model", default="mnist-gated")
    ap.add_argument("--repeat", type=int, default=2, help="decodes of each batch a way (the best is kept)")
    ap.add_argument("--busy", type=int, default=0, help="other processes spinning on a CPU each meanwhile")
    args = ap.parse_args()
    from arcodec.codec import gated
    from arcodec.zoo import load_model

    mach = machine(2)  # the load average before this script's own work
    if gated._SERVE is None:
        raise SystemExit("error: the decoder's compiled kernels and its crew need numba and scipy")
    m = load_model(args.model)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        rows = measure(m, args)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    keys = [label for label, _, _ in WAYS]
    table = md_table(["digits in the batch", *[f"{label} (img/s)" for label in keys]],
                     [[r["batch"], *[f"{r[k]:.1f}" for k in keys]] for r in rows])
    result = {"machine": mach, "command": command(), "model": m.name, "repeat": args.repeat, "busy": args.busy,
              "rows": rows}
    about = (f"Produced by `{command()}`: `{m.name}`, MNIST test digits decoded in one process, each way "
             f"{args.repeat} times (the fastest kept), one way after the other; load average "
             f"{mach['load_avg_1min']} at the start"
             + (f"; {args.busy} other process{'es' if args.busy > 1 else ''} spinning on a CPU meanwhile"
                if args.busy else "") + "; every decode compared with its digits.")
    write("gated_threads_busy" if args.busy else "gated_threads", result, [about, "", *table])


def measure(m, args) -> list[dict]:
    """Digits/s of every way and batch size."""
    from arcodec.codec import coders, gated
    from arcodec.training.data import load_dataset

    digits = load_dataset("mnist", "test")[: max(args.batches)].long()
    rows = []
    for n in args.batches:
        x = digits[:n]
        [(payload, _)] = gated.encode_streams(m.net, x, [n])
        row = {"batch": n}
        for label, crew, threads in WAYS:
            gated.CREW = crew
            coders.set_threads(threads)
            best = float("inf")
            try:
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    y = gated.decode_streams(m.net, [payload], [n], 1, 28, 28)
                    best = min(best, time.perf_counter() - t)
                    if not np.array_equal(np.asarray(y), x.numpy()):
                        raise SystemExit(f"error: {n} digits did not decode to their pixels ({label}, {threads})")
            finally:
                gated.CREW = True
            row[label] = n / best
        rows.append(row)
        print(row, flush=True)
    return rows


if __name__ == "__main__":
    main()
