"""Fuzzing the decoder: mutated copies of a handful of valid .arc files, each decoded in a
worker process with a timeout, and what became of every one.

    python benchmarks/fuzz.py                # 10,000 mutated files (a few minutes on one core)
    python benchmarks/fuzz.py --limit 300    # a short run

The seeds (``fuzz/seeds.py``) are tiny files of every kind: stored (raw and deflated),
model-coded digit (mnist-gated, also a two-channel image), 2-bit colour
(colour-mnist-made, also through a level map), the integer flow (mnist-idf) and archives
(model-coded and stored). Each mutated file is a seed with 1 to 3 random edits (bit flip,
byte change, insertion, deletion, truncation; ``fuzz.seeds.mutate``), decoded with
``arcodec.codec.api.decode_file`` and the model the file names. Outcomes:

* refused: an ``ArcodecError`` (counted by message kind, numbers and names blanked out);
* accepted: decoded to exactly the seed's pixels (the edit changed nothing it reads);
* traceback: any other exception, or the worker died (a bug);
* hang: no answer within ``--timeout`` seconds (default 10; the worker is killed and a new
  one started);
* wrong output: accepted, with pixels that differ from the seed's (a bug: the CRC32 over
  the file and the pixels should have failed).

Workers run with an address-space limit (``--memory-mb``), so a huge allocation from a tiny
file shows as a MemoryError (a traceback) instead of taking the machine; the peak is the
workers' largest resident set, and the largest growth one file caused. Writes
benchmarks/results/fuzz.{json,md}; every finding's file is in the JSON as hex.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from _common import ROOT, command, machine, md_table, write

sys.path.insert(0, str(ROOT / "fuzz"))
from seeds import mutate, random_ops, seed_files  # noqa: E402

BUGS = ("traceback", "hang", "wrong output")


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _serve(conn, memory_mb: int) -> None:
    """Worker: decode the files it is sent, answer (outcome, detail, seconds, rss before, rss after)."""
    import resource
    import traceback

    if memory_mb:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    import torch

    torch.set_num_threads(1)
    from arcodec.codec.api import decode_file
    from arcodec.errors import ArcodecError

    seeds = seed_files()
    for data, _ in seeds.values():  # load every model before the clock starts
        decode_file(data)
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        kind, data = msg
        expected = seeds[kind][1]
        before = _maxrss_mb()
        t = time.perf_counter()
        try:
            _, images = decode_file(data)
            same = len(images) == len(expected) and all(np.array_equal(a, b) for a, b in zip(images, expected))
            outcome, detail = ("accepted", "") if same else ("wrong output", "decoded pixels differ from the seed's")
        except ArcodecError as e:
            outcome, detail = "refused", f"{e.__class__.__name__}: {e}"
        except BaseException as e:  # noqa: BLE001  (anything else is the finding)
            outcome, detail = "traceback", "".join(traceback.format_exception(e, limit=-8))
        conn.send((outcome, detail, time.perf_counter() - t, before, _maxrss_mb()))


class Worker:
    """One decoding process (spawned: no forked torch threads), restarted after a hang or a death."""

    def __init__(self, memory_mb: int):
        self.memory_mb = memory_mb
        self.proc = None
        self.starts = 0

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, self.memory_mb), daemon=True)
        self.proc.start()
        child.close()
        try:
            ready = self.conn.poll(600) and self.conn.recv() == "ready"
        except EOFError:
            ready = False
        if not ready:
            raise SystemExit(f"error: the fuzz worker did not start (exit code {self.proc.exitcode})")
        self.starts += 1

    def decode(self, kind: str, data: bytes, timeout: float) -> tuple:
        if self.proc is None:
            self._start()
        try:
            self.conn.send((kind, data))
            if self.conn.poll(timeout):
                return self.conn.recv()
        except (EOFError, OSError):  # the worker died
            self.proc.join(10)
        hung, code = self.proc.is_alive(), self.proc.exitcode
        self.stop()
        if hung:
            return "hang", f"no answer within {timeout:g} s", timeout, 0.0, 0.0
        return "traceback", f"the worker died (exit code {code})", 0.0, 0.0, 0.0

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(10)
        self.stop()


def message_kind(detail: str) -> str:
    """A refusal's message with its numbers, names and quoted values blanked out."""
    s = re.sub(r"(?<=[\s(])'[^']*'", "'…'", detail)
    s = re.sub(r"\bfingerprint [0-9a-f]+ != [0-9a-f]+", "fingerprint … != …", s)
    s = re.sub(r"\b\d+x\d+(x\d+)?\b", "HxW", s)
    s = re.sub(r"(?<![\w-])\d+", "N", s)  # numbers, not the 32 of CRC32 or the 8 of UTF-8
    s = re.sub(r"corrupt payload \((?!more symbols|the stored|stored|N stored)[^)]*\)?.*", "corrupt payload (…)", s)
    return s


def fuzz(limit: int, timeout: float = 10.0, seed: int = 0, memory_mb: int = 6144,
         progress: bool = True) -> dict:
    """Decode ``limit`` mutated files; returns the counts, the refusal kinds and the findings."""
    seeds = seed_files()
    kinds = list(seeds)
    rng = np.random.default_rng(seed)
    outcomes: Counter = Counter()
    refusals: Counter = Counter()
    per_seed: dict[str, Counter] = {k: Counter() for k in kinds}
    findings, seconds, slowest = [], [], []
    peak, growth = 0.0, (0.0, None)
    worker = Worker(memory_mb)
    t0 = time.perf_counter()
    try:
        for i in range(limit):
            kind = kinds[i % len(kinds)]
            original = seeds[kind][0]
            data = original
            while data == original:  # an edit that changes nothing is not a test
                ops = random_ops(rng)
                data = mutate(original, ops)
            outcome, detail, sec, before, after = worker.decode(kind, data, timeout)
            outcomes[outcome] += 1
            per_seed[kind][outcome] += 1
            seconds.append(sec)
            peak = max(peak, after)
            if after - before > growth[0]:
                growth = (after - before, {"seed": kind, "ops": ops, "file": data.hex()})
            slowest = sorted(slowest + [(sec, kind, ops, data.hex())], reverse=True)[:5]
            if outcome == "refused":
                refusals[message_kind(detail)] += 1
            elif outcome in BUGS:
                findings.append({"outcome": outcome, "seed": kind, "ops": ops, "file": data.hex(), "detail": detail})
            if progress and (i + 1) % 100 == 0:
                bugs = sum(outcomes[b] for b in BUGS)
                print(f"{i + 1}/{limit} files, {bugs} findings, {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        worker.close()
    return {"files": limit, "timeout_s": timeout, "rng_seed": seed, "memory_limit_mb": memory_mb,
            "seeds": {k: {"bytes": len(v[0]), "images": ["x".join(map(str, a.shape)) for a in v[1]]}
                      for k, v in seeds.items()},
            "outcomes": {k: outcomes.get(k, 0) for k in ("refused", "accepted", *BUGS)},
            "refusals": dict(refusals.most_common()),
            "per_seed": {k: dict(v) for k, v in per_seed.items()},
            "seconds_per_file": {"median": statistics.median(seconds), "max": max(seconds),
                                 "total": round(time.perf_counter() - t0, 1)},
            "slowest": [{"seconds": round(s, 3), "seed": k, "ops": o, "file": f} for s, k, o, f in slowest],
            "peak_rss_mb": round(peak, 1), "largest_growth_mb": round(growth[0], 1), "largest_growth_by": growth[1],
            "worker_starts": worker.starts, "findings": findings}


def report(res: dict) -> list[str]:
    o = res["outcomes"]
    bugs = sum(o[b] for b in BUGS)
    md = [f"Produced by `{res['command']}`: {res['files']:,} mutated copies of {len(res['seeds'])} tiny valid files "
          f"(1 to 3 random edits each), each decoded by `decode_file` in a worker process (timeout "
          f"{res['timeout_s']:g} s, address space limited to {res['memory_limit_mb']} MB). "
          f"**{bugs} findings** (tracebacks, hangs, wrong outputs).", "",
          *md_table(["outcome", "files"], [[k, o[k]] for k in ("refused", "accepted", *BUGS)]), "",
          f"Seconds per file: median {res['seconds_per_file']['median']:.3f}, max "
          f"{res['seconds_per_file']['max']:.2f} (total {res['seconds_per_file']['total']:.0f} s). Peak worker "
          f"memory {res['peak_rss_mb']:.0f} MB resident; the most one file added: {res['largest_growth_mb']:.0f} MB.",
          "", "Refusals by message kind:", "",
          *md_table(["message", "files"], [[f"`{k}`", n] for k, n in res["refusals"].items()]), "",
          *md_table(["seed", "bytes", "refused", "accepted", *BUGS],
                    [[k, res["seeds"][k]["bytes"], *(v.get(c, 0) for c in ("refused", "accepted", *BUGS))]
                     for k, v in res["per_seed"].items()])]
    for f in res["findings"][:20]:
        md.append(f"- {f['outcome']} ({f['seed']}, edits {f['ops']}): {f['detail'].strip().splitlines()[-1]}")
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=10_000, help="mutated files to decode (default 10,000)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds before a decode counts as a hang")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the mutations")
    ap.add_argument("--memory-mb", type=int, default=6144, help="address-space limit of the worker (0: none)")
    args = ap.parse_args()
    res = {"command": command(), "machine": machine(1)}
    res.update(fuzz(args.limit, args.timeout, args.seed, args.memory_mb))
    write("fuzz", res, report(res))
    if any(res["outcomes"][b] for b in BUGS):
        sys.exit(1)


if __name__ == "__main__":
    main()
