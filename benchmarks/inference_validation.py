"""Every approximate query of arcodec.explore (queries, inpainting) against the exact answer,
on a model small enough to enumerate: a Gated PixelCNN on 4x4 binary digits (2^16 images).

    python benchmarks/inference_validation.py      # about a minute on one CPU core

Trains the model with arcodec's training loop (runs/inference/tiny4), lists the probability
of all 65,536 images, and compares each query's answer on the first test images with the
exact one (total-variation distance, mean and maximum over the images). Writes
benchmarks/results/inference_validation.json and .md, and copies the table into
docs/inference.md (README.md gets it from benchmarks/readme.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from pathlib import Path

import torch

from arcodec.explore.enumeration import validate_tiny
from arcodec.explore.likelihood import log_joint
from arcodec.explore.model import as_model
from arcodec import __version__
from arcodec.training.data import load_dataset
from arcodec.training.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SETTINGS = {"hidden": 16, "layers": 3, "head": 32, "first_kernel": 3}
STEPS = 300


def table(records: list[dict]) -> str:
    lines = ["| query | method | setting | TV error, mean | TV error, max | noise floor of n samples "
             "| ESS / acceptance |", "|---|---|---|---|---|---|---|"]
    for r in records:
        floor = f"{r['floor_mean']:.4f}" if "floor_mean" in r else "—"
        extra = (f"ESS {r['ess_mean']:.1f}" if "ess_mean" in r else
                 f"acceptance {r['acceptance_mean']:.2f}" if "acceptance_mean" in r else "—")
        lines.append(f"| {r['query']} | {r['method']} | {r['setting'] or '—'} | {r['tv_mean']:.2e} | "
                     f"{r['tv_max']:.2e} | {floor} | {extra} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4, help="conditioning images (the first test images)")
    ap.add_argument("--samples", type=int, default=1000, help="samples n for the half-image queries f, g")
    ap.add_argument("--runs", default="runs/inference/tiny4")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cfg = TrainConfig(arch="gated-pixelcnn", data="digits-4x4-binary", steps=STEPS, batch=64, val_every=100,
                      warmup=20, lr=3e-3, threads=args.threads)
    run = train(cfg, SETTINGS, ROOT / args.runs, progress=False)
    m = as_model(str(run / "best.pt"))
    images = load_dataset("digits-4x4-binary", "test")[: args.images].long()
    test = load_dataset("digits-4x4-binary", "test").long()
    test_bpd = float(-log_joint(m, test).mean() / (16 * math.log(2)))
    records = validate_tiny(m, images, n=args.samples)
    seconds = time.perf_counter() - t0
    cmd = "python benchmarks/inference_validation.py"
    md = (f"Exact enumeration against every approximation (`{cmd}`, {seconds:.0f} s on {args.threads} CPU thread): "
          f"a Gated PixelCNN ({', '.join(f'{k}={v}' for k, v in SETTINGS.items())}, {STEPS} steps, test NLL "
          f"{test_bpd:.3f} bits/dim) on 4x4 binary digits, all 2^16 images listed; middle pixel (2, 2); "
          f"{args.images} test images as evidence; total-variation distance to the exact answer. For the "
          f"half-image queries f, g the error is that of the empirical distribution of n = {args.samples} "
          f"samples, next to the same measure for n exact draws (the noise floor).\n\n" + table(records) + "\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "inference_validation.json").write_text(json.dumps(
        {"arcodec_version": __version__, "torch": torch.__version__, "threads": args.threads, "seconds": seconds,
         "settings": SETTINGS, "steps": STEPS, "test_bpd": test_bpd, "command": cmd, "records": records},
        indent=2) + "\n")
    (RESULTS / "inference_validation.md").write_text(md)
    doc = ROOT / "docs" / "inference.md"  # its results block, like README's (benchmarks/readme.py)
    spec = importlib.util.spec_from_file_location("readme", ROOT / "benchmarks" / "readme.py")
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    if doc.is_file():
        doc.write_text(readme.splice(doc.read_text(), RESULTS))
    print(md)


if __name__ == "__main__":
    main()
