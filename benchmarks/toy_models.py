"""The course's warm-up models on the toy data sets: test NLL next to real coded sizes.

    python benchmarks/toy_models.py        # trains in runs/toys/; about a minute on one free CPU core

Trains ``histogram`` (toy1d, SGD from theta = 0), ``ar-mlp-2d`` and ``made-2d`` (toy2d) with
arcodec's training loop, samples from them, plots, codes each test set as one image with
arcodec's coder and decodes it. Prints a table and writes benchmarks/results/toy_models.json,
toy_models.md and toy_<model>.png. Every number is measured here; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from arcodec import __version__
from toys import run_all

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def table(records: list[dict]) -> str:
    head = ("| model | data | test samples | test NLL bits/sample | test NLL bits/dim | true entropy bits/dim "
            "| codec NLL bits | file bits | file bits/dim | overhead | round trip | train s | plot |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        lines.append(
            f"| {r['model']} | {r['data']} | {r['test_samples']} | {r['test_nll_bits_per_sample']:.4f} "
            f"| {r['test_nll_bpd']:.4f} | {r['true_entropy_bpd']:.4f} | {r['codec_nll_bits']:.0f} "
            f"| {r['file_bits']} | {r['file_bpd']:.4f} | {r['overhead_pct']:.2f}% "
            f"| {'exact' if r['round_trip_exact'] else 'FAILED'} | {r['train_seconds']:.1f} "
            f"| `{Path(r['plot']).name}` |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/toys", help="where the training runs go")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (0: torch's default; these models are too small to gain from more)")
    ap.add_argument("--samples-2d", type=int, default=100_000, help="model samples in the 2-D histograms")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    records = run_all(args.runs, results, args.threads, args.samples_2d)
    for r in records:  # paths relative to the checkout, so the saved results do not name this machine
        r["plot"] = os.path.relpath(r["plot"], ROOT)
    md = table(records)
    print(md)
    meta = {"arcodec_version": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "threads": torch.get_num_threads(),
            "command": "python benchmarks/toy_models.py" + (f" --threads {args.threads}" if args.threads != 1 else "")}
    (results / "toy_models.json").write_text(json.dumps({"meta": meta, "records": records}, indent=2) + "\n")
    notes = [
        f"Produced by `{meta['command']}` (arcodec {__version__}, torch {meta['torch']}, "
        f"torch threads: {meta['threads']}).",
        "",
        "Test NLL is the float model's (`arcodec.training.train.evaluate_nll`, i.e. `nll_bits`); codec NLL is the "
        "code length of the same values in the codec's exact arithmetic; file bits are the whole .arc file "
        "(header, stream lengths, CRC32 included) holding the test set as one image: (N, 1) for toy1d, "
        "(N, 2) for toy2d. Round trip: decoded with `arcodec.decompress` and compared.",
        "",
        md,
        "",
        "Training commands (equivalent CLI):",
        "",
        *[f"    {r['command']}" for r in records],
        "",
    ]
    (results / "toy_models.md").write_text("\n".join(notes))
    print(f"wrote {results / 'toy_models.json'}, {results / 'toy_models.md'} and the PNGs")


if __name__ == "__main__":
    main()
