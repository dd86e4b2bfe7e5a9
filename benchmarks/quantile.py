"""Quantile regression against maximum likelihood on colour MNIST: samples side by side, and
each model scored on the quantile loss (the only score both have: the quantile model has no
likelihood).

    python benchmarks/quantile.py                  # 16 samples each, 500 test images scored
    python benchmarks/quantile.py --samples 4 --eval 50

Models (runs/course/, trained at 1 torch thread, batch 32, the same steps; commands in the JSON):
``quantile-pixelcnn`` (the quantile loss, 2 taus per sub-pixel and step) and the direct
colour ``pixelcnn-made`` of benchmarks/gray_colour.py (maximum likelihood), with the same
PixelCNN widths. The maximum-likelihood model's quantile at tau is the smallest level whose
cumulative probability reaches tau; both are scored with the mean pinball loss over 16
midpoint taus (values in [-1, 1]: level k is 2k/3 - 1), teacher-forced on test images.

Sample statistics against the test images: distinct colours per image (a colour-MNIST
digit has a background, a stroke and the stroke's edge colour) and the total-variation
distance between the level histograms. Figure: docs/figures/course/quantile_vs_ml_samples.png.
Writes benchmarks/results/quantile.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from arcodec.training.data import load_dataset
from arcodec.explore.figures import grid_image
from arcodec.explore.sampling import sample
from arcodec.registry import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "figures" / "course"
COMMANDS = {
    "quantile": "arcodec train --model quantile-pixelcnn --data colour-mnist --out runs/course/colour-quantile "
                "--set hidden=32 --set blocks=4 --set features=32 --set head_hidden=48 --set taus=2 --set batch=32 "
                "--set lr=2e-3 --set warmup=30 --set steps=250 --set val_every=250 --set val_limit=1000 "
                "--set threads=1",
    "ml": "arcodec train --model pixelcnn-made --data colour-mnist --out runs/course/colour-direct --set channels=3 "
          "--set hidden=32 --set blocks=4 --set features=32 --set made_hidden=64 --set batch=32 --set lr=2e-3 "
          "--set warmup=30 --set steps=250 --set val_every=250 --set val_limit=1000 --set threads=1",
}
TAUS = 16


def pinball(y: torch.Tensor, q: torch.Tensor, tau: torch.Tensor) -> float:
    """Mean quantile loss of quantiles q (B, T, C, H, W) at tau for values y (B, C, H, W)."""
    u = y.unsqueeze(1) - q
    return float((u * (tau - (u < 0).float())).mean())


@torch.no_grad()
def quantile_losses(qmodel, ml, x: torch.Tensor, batch: int = 100) -> dict:
    """Mean pinball loss at TAUS midpoint taus of both models, teacher-forced on x."""
    K = ml.config.levels
    levels = torch.arange(K, dtype=torch.float32) * (2.0 / (K - 1)) - 1.0
    totals = {"quantile": 0.0, "ml": 0.0}
    for i in range(0, len(x), batch):
        xs = x[i: i + batch].long()
        tau = qmodel.midpoint_taus(xs, TAUS)
        y = qmodel.embed(xs)
        totals["quantile"] += pinball(y, qmodel(xs, tau), tau) * len(xs)
        cdf = torch.softmax(ml(xs).float(), dim=1).cumsum(dim=1)  # (B, K, C, H, W)
        # the ML model's tau-quantile: the first level whose CDF reaches tau
        idx = (cdf.unsqueeze(1) < tau.unsqueeze(2)).sum(dim=2).clamp(max=K - 1)  # (B, T, C, H, W)
        totals["ml"] += pinball(y, levels[idx], tau) * len(xs)
    return {k: v / len(x) for k, v in totals.items()}


def stats(x: torch.Tensor, reference: torch.Tensor, levels: int) -> dict:
    """Distinct colours per image and the TV distance of the level histogram to ``reference``'s."""
    def hist(a):
        h = torch.bincount(a.long().flatten(), minlength=levels).double()
        return h / h.sum()

    colours = [len(torch.unique(img.reshape(3, -1).t(), dim=0)) for img in x]
    return {"distinct_colours": float(np.mean(colours)),
            "level_tv": float(0.5 * (hist(x) - hist(reference)).abs().sum())}


def figure(panels: list[torch.Tensor], path: Path, levels: int) -> Path:
    from PIL import Image

    grids = [grid_image(p, levels) for p in panels]
    h = max(g.shape[0] for g in grids)
    gap = np.full((h, 12, 3), 255, dtype=np.uint8)
    row = [np.pad(g, ((0, h - g.shape[0]), (0, 0), (0, 0)), constant_values=255) for g in grids]
    out = np.concatenate([x for g in row for x in (g, gap)][:-1], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(out)
    img.resize((img.width * 3, img.height * 3), Image.NEAREST).save(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--eval", type=int, default=500, help="test images for the quantile loss")
    ap.add_argument("--runs", default="runs/course")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = Path(args.runs)
    qmodel, _ = load_checkpoint(runs / "colour-quantile" / "best.pt")
    ml, _ = load_checkpoint(runs / "colour-direct" / "best.pt")
    qmodel.eval()
    ml.eval()
    test = load_dataset("colour-mnist", "test")
    K = ml.config.levels
    losses = quantile_losses(qmodel, ml, test[: args.eval])
    drawn = {"quantile": qmodel.sample(args.samples, 28, 28, seed=0),
             "ml": sample(ml, args.samples, (28, 28), seed=0)}
    reference = test[: max(args.samples, 500)]
    rows = {"test images": stats(test[: args.samples], reference, K),
            "maximum likelihood (pixelcnn-made)": stats(drawn["ml"], reference, K),
            "quantile regression (quantile-pixelcnn)": stats(drawn["quantile"], reference, K)}
    fig = figure([test[: args.samples].long(), drawn["ml"], drawn["quantile"]],
                 FIGURES / "quantile_vs_ml_samples.png", K)
    rec = {"samples": args.samples, "eval_images": args.eval, "taus": TAUS, "pinball": losses, "sample_stats": rows,
           "parameters": {"quantile": sum(p.numel() for p in qmodel.parameters()),
                          "ml": sum(p.numel() for p in ml.parameters())},
           "commands": COMMANDS, "figure": str(fig.relative_to(ROOT))}
    meta = {"torch": torch.__version__, "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quantile.json").write_text(json.dumps({"meta": meta, **rec}, indent=2) + "\n")
    md = table(rec, args)
    (RESULTS / "quantile.md").write_text(md)
    print(md)


def table(rec: dict, args) -> str:
    p = rec["pinball"]
    lines = [
        f"Colour MNIST, quantile regression against maximum likelihood at an equal budget "
        f"(`python benchmarks/quantile.py --samples {args.samples} --eval {args.eval}`). Pinball loss: mean over "
        f"{rec['taus']} midpoint taus, teacher-forced on the first {rec['eval_images']} test images (lower is better; "
        f"the quantile model optimises it, the other model maximises the likelihood). Sample statistics over "
        f"{rec['samples']} samples each; level TV: total-variation distance of the 4-level histogram to that of "
        "500 test images. Figure (test images, maximum likelihood, quantile regression): "
        f"`{rec['figure']}`.",
        "",
        "| model | params | pinball loss | distinct colours / image | level TV |",
        "|---|---|---|---|---|",
    ]
    s = rec["sample_stats"]
    lines.append(f"| test images | — | — | {s['test images']['distinct_colours']:.2f} | "
                 f"{s['test images']['level_tv']:.3f} |")
    for key, name in (("ml", "maximum likelihood (pixelcnn-made)"),
                      ("quantile", "quantile regression (quantile-pixelcnn)")):
        lines.append(f"| {name} | {rec['parameters'][key]:,} | {p[key]:.4f} | {s[name]['distinct_colours']:.2f} | "
                     f"{s[name]['level_tv']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
