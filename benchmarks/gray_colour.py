"""Grayscale first, then colour given grayscale: the two-part code of colour MNIST against a
direct colour model trained with the same budget.

    python benchmarks/gray_colour.py                  # first 1000 colour-MNIST test images
    python benchmarks/gray_colour.py --eval 200 --decode 3

gray = r + g + b (0..9; arcodec/models/conditioned.py). Three models, each trained with
``arcodec train`` at 1 torch thread, batch 32 (commands in the JSON):

* the gray model: ``pixelcnn-made`` with 1 channel of 10 levels, on ``colour-mnist-gray``;
* colour given gray: ``gray-pixelcnn-made`` on ``colour-mnist``;
* the direct colour model: ``pixelcnn-made`` with 3 channels and the same PixelCNN and MADE
  widths, trained for the steps of colour-given-gray (250: the same budget per model) and
  for the steps of both parts together (550: the same total budget); the shipped
  ``colour-mnist-made`` (trained far longer) is measured too, for reference.

Bits are real coded bits: the gray images and the direct models' colour images go through
``arcodec.codec.api.encode_images`` as one archive each (the .arc container, header included);
colour given gray goes through ``arcodec.codec.autoregressive.encode_streams`` with the gray
images bound to the model (``conditioned.bind_gray``), 256 images a stream: the range
coder's bytes, without a container, since .arc files have no two-part format yet. The first
``--decode`` images are decoded both ways and compared.

Also draws colour samples given the gray of test images: docs/figures/course/gray_conditioned_samples.png.
Writes benchmarks/results/gray_colour.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from arcodec.codec.api import decode_file, encode_images
from arcodec.codec.autoregressive import decode_streams, encode_streams
from arcodec.training.data import load_dataset
from arcodec.models.conditioned import bind_gray, to_gray
from arcodec.models.layers import set_exact
from arcodec.explore.figures import grid_image
from arcodec.explore.sampling import sample
from arcodec.registry import load_checkpoint
from arcodec.zoo import load_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "figures" / "course"
WIDTHS = {"hidden": 32, "blocks": 4, "features": 32, "made_hidden": 64}
TRAIN = {"batch": 32, "lr": 2e-3, "warmup": 30, "threads": 1, "val_limit": 1000}
RUNS = {  # name: (architecture, data, settings, steps) as runs/course/queue2.sh trains them
    "gray-levels10": ("pixelcnn-made", "colour-mnist-gray", {**WIDTHS, "channels": 1}, 300),
    "colour-given-gray": ("gray-pixelcnn-made", "colour-mnist", WIDTHS, 250),
    "colour-direct": ("pixelcnn-made", "colour-mnist", {**WIDTHS, "channels": 3}, 250),
    "colour-direct-550": ("pixelcnn-made", "colour-mnist", {**WIDTHS, "channels": 3}, 550),
}


def command(name: str) -> str:
    arch, data, settings, steps = RUNS[name]
    sets = {**settings, **TRAIN, "steps": steps, "val_every": steps}
    return f"arcodec train --model {arch} --data {data} --out runs/course/{name} " + " ".join(
        f"--set {k}={v}" for k, v in sets.items())


def images(x: torch.Tensor) -> list[np.ndarray]:
    return list(np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy()))


def archive(model, x: torch.Tensor, decode: int) -> dict:
    """One .arc archive of x (N, C, H, W): real bytes, NLL bits, and a decoded subset's check."""
    imgs = images(x)
    enc = encode_images(imgs, model=model, archive=True)
    small = encode_images(imgs[:decode], model=model, archive=True)
    _, out = decode_file(small.data, model=model)
    ok = sum(np.array_equal(a, b) for a, b in zip(imgs[:decode], out))
    return {"bytes": len(enc.data), "nll_bits": enc.nll_bits, "roundtrips": f"{ok}/{decode}"}


def colour_given_gray(net, x: torch.Tensor, decode: int, chunk: int = 256) -> dict:
    """Range-coder streams of x given its gray, ``chunk`` images a stream."""
    gray = to_gray(x.long())
    total_bytes, total_bits = 0, 0.0
    for i in range(0, len(x), chunk):
        xs = x[i: i + chunk].long()
        (payload, bits), = encode_streams(bind_gray(net, gray[i: i + chunk]), xs, [len(xs)])
        total_bytes += len(payload)
        total_bits += bits
    xs = x[:decode].long()
    (payload, _), = encode_streams(bind_gray(net, gray[:decode]), xs, [len(xs)])
    out = decode_streams(bind_gray(net, gray[:decode]), [payload], [len(xs)], 3, x.shape[2], x.shape[3])
    ok = int((out == xs).flatten(1).all(1).sum())
    return {"bytes": total_bytes, "nll_bits": total_bits, "roundtrips": f"{ok}/{decode}"}


def samples_figure(net, x: torch.Tensor, n: int, path: Path) -> Path:
    """Columns: the gray image, the true colour image, three samples of colour given gray."""
    from PIL import Image

    gray = to_gray(x[:n].long())
    set_exact(net, False)
    try:
        draws = [sample(bind_gray(net, gray), n, (x.shape[2], x.shape[3]), seed=s) for s in range(3)]
    finally:
        set_exact(net, True)
    top = 3 * (net.config.levels - 1)
    shown = [torch.round(gray.double() * 255 / top).long().expand(-1, 3, -1, -1)]  # all 10 gray levels visible
    shown += [torch.round(c.double() * 255 / (net.config.levels - 1)).long() for c in (x[:n].long(), *draws)]
    rows = torch.stack(shown, dim=1).reshape(-1, 3, x.shape[2], x.shape[3])
    grid = grid_image(rows, 256, rows=n)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(grid)
    img.resize((img.width * 3, img.height * 3), Image.NEAREST).save(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval", type=int, default=1000, help="colour-MNIST test images to code")
    ap.add_argument("--decode", type=int, default=5, help="images decoded to check round trips")
    ap.add_argument("--samples", type=int, default=8, help="rows of the sample figure (0: none)")
    ap.add_argument("--runs", default="runs/course")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = Path(args.runs)
    x = load_dataset("colour-mnist", "test")[: args.eval]
    dims = x[0].numel()
    parts = {
        "gray": archive(load_model(str(runs / "gray-levels10" / "best.pt")), to_gray(x.long()).to(torch.uint8),
                        args.decode),
    }
    cond, _ = load_checkpoint(runs / "colour-given-gray" / "best.pt")
    cond = set_exact(cond.eval(), True)
    parts["colour given gray"] = colour_given_gray(cond, x, args.decode)
    parts["direct, 250 steps"] = archive(load_model(str(runs / "colour-direct" / "best.pt")), x, args.decode)
    parts["direct, 550 steps"] = archive(load_model(str(runs / "colour-direct-550" / "best.pt")), x, args.decode)
    parts["direct (shipped colour-mnist-made)"] = archive(load_model("colour-mnist-made"), x, args.decode)
    for p in parts.values():
        p["nll_bpd"] = p["nll_bits"] / (len(x) * dims)
        p["file_bpd"] = 8 * p["bytes"] / (len(x) * dims)
    two = {k: parts["gray"][k] + parts["colour given gray"][k] for k in ("bytes", "nll_bits")}
    two.update(nll_bpd=two["nll_bits"] / (len(x) * dims), file_bpd=8 * two["bytes"] / (len(x) * dims))
    figure = None
    if args.samples:
        figure = str(samples_figure(cond, x, args.samples, FIGURES / "gray_conditioned_samples.png").relative_to(ROOT))
    record = {"images": len(x), "parts": parts, "two_part": two, "commands": {k: command(k) for k in RUNS},
              "figure": figure}
    meta = {"torch": torch.__version__, "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gray_colour.json").write_text(json.dumps({"meta": meta, **record}, indent=2) + "\n")
    md = table(record, args)
    (RESULTS / "gray_colour.md").write_text(md)
    print(md)


def table(rec: dict, args) -> str:
    n = rec["images"]
    p = rec["parts"]
    per = lambda bits: bits / n  # noqa: E731  (bits per image)
    lines = [
        f"Colour MNIST, first {n:,} test images (28x28x3, 4 levels; "
        f"`python benchmarks/gray_colour.py --eval {args.eval} --decode {args.decode}`). Gray = r + g + b (0..9). "
        "Bits per image: model NLL (exact arithmetic) and real coded bits; the gray and direct rows are .arc "
        "archives (container included), the colour-given-gray row is range-coder streams (256 images each; .arc "
        "has no two-part format yet). All trained models share the PixelCNN-MADE widths and batch "
        f"{TRAIN['batch']}: gray {RUNS['gray-levels10'][3]} steps, colour given gray "
        f"{RUNS['colour-given-gray'][3]} steps; the direct colour model {RUNS['colour-direct'][3]} steps (the "
        f"same per model) and {RUNS['colour-direct-550'][3]} steps (the same in total).",
        "",
        "| code | NLL bits/image | coded bits/image | bits/dim (coded) | decoded round trips |",
        "|---|---|---|---|---|",
    ]
    for name in ("gray", "colour given gray"):
        r = p[name]
        lines.append(f"| {name} | {per(r['nll_bits']):.1f} | {per(8 * r['bytes']):.1f} | {r['file_bpd']:.4f} | "
                     f"{r['roundtrips']} |")
    t = rec["two_part"]
    lines.append(f"| **gray, then colour given gray** | **{per(t['nll_bits']):.1f}** | **{per(8 * t['bytes']):.1f}** | "
                 f"**{t['file_bpd']:.4f}** | |")
    for name in ("direct, 250 steps", "direct, 550 steps", "direct (shipped colour-mnist-made)"):
        r = p[name]
        lines.append(f"| colour {name} | {per(r['nll_bits']):.1f} | {per(8 * r['bytes']):.1f} | {r['file_bpd']:.4f} | "
                     f"{r['roundtrips']} |")
    if rec["figure"]:
        lines += ["", f"Samples of colour given gray: `{rec['figure']}` (a row per test image: its gray, its "
                  "colours, three samples of colour given that gray)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
