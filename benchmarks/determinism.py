"""Determinism: decode every file with another batch size and thread count than it was
encoded with, in another process, and count the round trips that fail.

    python benchmarks/determinism.py           # quick (`make bench`)
    python benchmarks/determinism.py --full    # `make bench-full`

For every shipped model and data set it applies to (as ``benchmarks/compression.py``), the
images are split in two halves (even and odd indices), one .arc file per image:

* half A is encoded with 1 torch thread and batches of up to ``MAX_BATCH`` tiles, then
  decoded in another process with 2 threads and batches of ``SMALL`` tiles;
* half B is encoded with 2 threads and batches of ``SMALL`` tiles, then decoded in a third
  process with 1 thread and batches of ``MAX_BATCH`` tiles.

A round trip fails when decoding raises (the CRC32 check, a corrupt stream) or the pixels
differ from the original. The goal is 0 failures: encoder and decoder must compute
bit-identical probabilities whatever the batch or the threads. Writes
benchmarks/results/determinism.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import command, machine, md_table, plan, write

HERE = Path(__file__).resolve()
SMALL = 5  # tiles per batch of the "small" configuration: odd, unlike any power of two
# quick: small, yet each half still spans several batches of SMALL tiles (the costly part:
# batches that small decode nearly one image at a time)
QUICK = {"mnist": 40, "colour-mnist": 12, "photos": 4, "crop": 32}
FULL = {"mnist": 10000, "colour-mnist": 300, "photos": 24, "crop": 128}


def worker(spec: dict) -> dict:
    """Encode one half into spec['dir'] and/or decode the other half from it."""
    import numpy as np

    from arcodec.codec.coders import set_threads

    set_threads(spec["threads"])  # the coder's threads, and torch's for the models that load it
    from _common import load_set
    from arcodec.codec.api import MAX_BATCH, decode_many, encode_many
    from arcodec.errors import ArcodecError
    from arcodec.zoo import load_model

    m = load_model(spec["model"])
    images = load_set(spec["data"], spec["n"], crop=spec["crop"])[0]
    tiles = MAX_BATCH if spec["batch"] == "large" else SMALL
    folder = Path(spec["dir"])
    out = {}
    if spec.get("encode"):
        idx = _half(spec["encode"], len(images))
        try:
            encoded = encode_many([images[i] for i in idx], model=m, max_tiles=tiles)
        except ArcodecError as e:  # the model cannot code these images (e.g. a flow's fixed shape)
            return {"refused": str(e)}
        for i, e in zip(idx, encoded):
            (folder / f"{i:05d}.arc").write_bytes(e.data)
        out["encoded"] = len(idx)
    if spec.get("decode"):
        idx = _half(spec["decode"], len(images))
        datas = [(folder / f"{i:05d}.arc").read_bytes() for i in idx]
        try:
            decoded = [imgs[0] for _, imgs in decode_many(datas, model=m, max_tiles=tiles)]
            errors = [None] * len(idx)
        except ArcodecError:  # find which files fail
            decoded, errors = [], []
            for d in datas:
                try:
                    decoded.append(decode_many([d], model=m, max_tiles=tiles)[0][1][0])
                    errors.append(None)
                except ArcodecError as e:
                    decoded.append(None)
                    errors.append(f"{e.__class__.__name__}: {e}")
        failures = []
        for i, b, err in zip(idx, decoded, errors):
            if err or not np.array_equal(b, images[i]):
                failures.append({"index": i, "error": err or "decoded pixels differ from the original"})
        out.update(decoded=len(idx), failures=failures)
    return out


def _half(which: str, n: int) -> list[int]:
    return list(range(0 if which == "A" else 1, n, 2))


def run(spec: dict) -> dict:
    p = subprocess.run([sys.executable, str(HERE), "--worker", json.dumps(spec)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(spec["threads"])})
    if p.returncode:
        raise SystemExit(f"error: a determinism worker failed ({spec}):\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def check(model: str, data: str, n: int, crop: int) -> list[dict]:
    """The two cross checks of one model on one data set."""
    base = {"model": model, "data": data, "n": n, "crop": crop}
    with tempfile.TemporaryDirectory() as d:
        base["dir"] = d
        first = run({**base, "threads": 1, "batch": "large", "encode": "A"})
        if "refused" in first:
            return [{"model": model, "data": data, "files": 0, "encoded": "refused", "decoded": first["refused"],
                     "failures": 0, "failed": []}]
        a = run({**base, "threads": 2, "batch": "small", "encode": "B", "decode": "A"})
        b = run({**base, "threads": 1, "batch": "large", "decode": "B"})
    enc_a, enc_b = "1 thread, batches of up to MAX_BATCH tiles", f"2 threads, batches of {SMALL} tiles"
    return [{"model": model, "data": data, "files": a["decoded"], "encoded": enc_a, "decoded": enc_b,
             "failures": len(a["failures"]), "failed": a["failures"][:10]},
            {"model": model, "data": data, "files": b["decoded"], "encoded": enc_b, "decoded": enc_a,
             "failures": len(b["failures"]), "failed": b["failures"][:10]}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help=f"the full run: {FULL}")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # one process's share, as JSON (internal)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    from _common import load_set

    from arcodec.codec.api import MAX_BATCH

    preset = FULL if args.full else QUICK
    rows, what = [], {}
    for card, data in plan(["mnist", "colour-mnist", "photos"]):
        n = preset.get(data, QUICK["colour-mnist"])
        what[data] = load_set(data, n, crop=preset["crop"])[1]
        rows += check(card["name"], data, n, preset["crop"])
        print(f"{card['name']} on {data}: {sum(r['failures'] for r in rows if r['model'] == card['name'])} "
              "failures so far", flush=True)
    total = sum(r["files"] for r in rows)
    failed = sum(r["failures"] for r in rows)
    res = {"command": command(), "machine": machine(), "max_batch_tiles": MAX_BATCH, "small_batch_tiles": SMALL,
           "images": what, "files": total, "failures": failed, "checks": rows}
    md = [f"Produced by `{res['command']}`: every file decoded in another process, with another torch thread count "
          f"and another batch size (MAX_BATCH = {MAX_BATCH} tiles) than it was encoded with. "
          f"**{failed} of {total} round trips fail.**", "",
          *md_table(["model", "data", "files", "encoded with", "decoded with", "failed round trips"],
                    [[f"`{r['model']}`", what[r["data"]], r["files"], r["encoded"], r["decoded"], r["failures"]]
                     for r in rows])]
    for r in rows:
        for f in r["failed"]:
            md.append(f"- `{r['model']}` {r['data']} image {f['index']}: {f['error']}")
    write("determinism", res, md)


if __name__ == "__main__":
    main()
