"""Figures of the runs of benchmarks/pixelcnn_family.py: receptive fields and samples.

    python benchmarks/pixelcnn_family.py            # first: trains the runs
    python benchmarks/pixelcnn_family_figures.py    # then: draws them

For every run: |d log p(x_(14,14)) / d x| (maximum over channels) at random initialisation
and after training, and a grid of 16 samples (ancestral sampling, seed 0). Writes PNGs
under benchmarks/results/family/ and benchmarks/results/pixelcnn_family_figures.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from arcodec.explore.figures import receptive_field_png, save_grid
from arcodec.registry import build_model, load_checkpoint, make_config
from arcodec.explore.sampling import sample

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pixelcnn_family import slug  # noqa: E402  (the run directories' names)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    records = json.loads((RESULTS / "pixelcnn_family.json").read_text())["records"]
    out = RESULTS / "family"
    out.mkdir(parents=True, exist_ok=True)
    runs = ROOT / "runs" / "family"
    lines = ["Figures of the `benchmarks/pixelcnn_family.py` runs "
             "(`python benchmarks/pixelcnn_family_figures.py`): receptive field of pixel (14, 14) at "
             "initialisation and after training (log10 |d log p / d x|, white: no dependence, red: the "
             "pixel), and 16 samples (seed 0).", "",
             "| data | model | receptive field, init | receptive field, trained | samples | sampling s |",
             "|---|---|---|---|---|---|"]
    for r in records:
        run = runs / slug(r["model"], r["data"])
        net, ckpt = load_checkpoint(run / "last.pt")
        name = run.name
        torch.manual_seed(0)
        fresh = build_model(r["arch"], make_config(r["arch"], net.config.__dict__))
        rf0 = receptive_field_png(fresh, out / f"{name}-rf-init.png")
        rf1 = receptive_field_png(net, out / f"{name}-rf-trained.png")
        t = time.perf_counter()
        x = sample(net, args.samples, (28, 28), seed=0)
        seconds = time.perf_counter() - t
        grid = save_grid(x, net.config.levels, out / f"{name}-samples.png", rows=4)
        rel = lambda p: p.relative_to(RESULTS).as_posix()  # noqa: E731
        lines.append(f"| {r['data']} | {r['model']} | ![]({rel(rf0)}) | ![]({rel(rf1)}) | ![]({rel(grid)}) "
                     f"| {seconds:.1f} |")
        print(lines[-1], flush=True)
    (RESULTS / "pixelcnn_family_figures.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
