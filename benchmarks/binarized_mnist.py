"""Binarized MNIST with the course's table beside us: FVSBN, NADE, MADE, Row LSTM, PixelCNN and
Gated PixelCNN, test NLL in nats per image and the real size of the test set as one archive.

    python benchmarks/binarized_mnist.py                 # train what is missing, then evaluate
    python benchmarks/binarized_mnist.py --decode 5      # fewer images decoded to check round trips

Data: ``binarized-mnist-sampled`` (arcodec/models/classic.py): every pixel drawn once as 1
with probability intensity / 255, seeded per split: the protocol of the binarized MNIST the
lecture's numbers use (Larochelle and Murray, 2011), not their file. Each model trains with
``arcodec train`` (the commands are in the JSON) at 1 torch thread on a shared 2-core CPU, for
minutes: far smaller models and budgets than the papers'.

For every model: the whole test set (10,000 images) as one .arc archive
(``arcodec.codec.api.encode_images(..., archive=True)``): its model NLL in exact arithmetic (the
codec's size estimate) in nats per image (bits/dim x 784 x ln 2) and its real size; then the
first ``--decode`` test images as another archive, decoded and compared (a decoder steps
through 784 pixels one at a time, so not all 10,000 are decoded).
Writes benchmarks/results/binarized_mnist.{json,md}; runs live in runs/course/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from arcodec.codec.api import decode_file, encode_images
from arcodec.training.data import load_dataset
from arcodec.explore.plots import read_log
from arcodec.training.train import TrainConfig, train
from arcodec.zoo import load_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = "binarized-mnist-sampled"
LECTURE = {"nade": 88.33, "made": 86.64, "pixelcnn": 81.30, "row-lstm": 80.54}  # nats/image; Diagonal BiLSTM 79.20

# (label, architecture, data, model settings, training settings, run directory): the budgets of
# runs/course/queue*.sh. The last row is FVSBN on the thresholded set, to show how much easier it is.
MODELS = [
    ("FVSBN", "fvsbn", DATA, {}, {"steps": 3000, "lr": 3e-3, "warmup": 100}, "bin-fvsbn"),
    ("MADE (1 x 1000 hidden)", "made", DATA, {"hidden": 1000}, {"steps": 6000, "lr": 2e-3, "warmup": 100}, "bin-made"),
    ("NADE (128 hidden)", "nade", DATA, {"hidden": 128}, {"steps": 1000, "lr": 3e-3, "warmup": 50}, "bin-nade"),
    ("Row LSTM (32 state)", "row-lstm", DATA, {"hidden": 32}, {"steps": 500, "lr": 3e-3, "warmup": 50}, "bin-row-lstm"),
    ("PixelCNN", "pixelcnn", DATA, {"hidden": 32, "blocks": 6, "head": 64}, {"steps": 400, "lr": 2e-3, "warmup": 50},
     "bin-pixelcnn"),
    ("Gated PixelCNN", "gated-pixelcnn", DATA, {"hidden": 16, "layers": 6, "head": 32},
     {"steps": 250, "lr": 2e-3, "warmup": 50}, "bin-gated-pixelcnn"),
    ("FVSBN on the *thresholded* set (`binarized-mnist`, pixel >= 128)", "fvsbn", "binarized-mnist", {},
     {"steps": 3000, "lr": 3e-3, "warmup": 100}, "thr-fvsbn"),
]


def command(arch: str, data: str, settings: dict, tr: dict, out: Path) -> str:
    sets = {**settings, **tr, "val_every": tr["steps"], "val_limit": 1000, "threads": 1}
    return (f"arcodec train --model {arch} --data {data} --out {out} "
            + " ".join(f"--set {k}={v}" for k, v in sets.items()))


def train_minutes(out: Path) -> float | None:
    """Wall minutes of the run: config.json is written at its start, last.pt at its end."""
    a, b = out / "config.json", out / "last.pt"
    return (b.stat().st_mtime - a.stat().st_mtime) / 60 if a.exists() and b.exists() else None


def run(label: str, arch: str, data: str, settings: dict, tr: dict, rundir: str, args, test: list) -> dict:
    out = Path(args.runs) / rundir
    if not (out / "best.pt").exists():
        print(f"training {label} ...", flush=True)
        cfg = TrainConfig(arch=arch, data=data, val_every=tr["steps"], val_limit=1000, threads=1, **tr)
        train(cfg, settings, out, progress=False)
    m = load_model(str(out / "best.pt"))
    log = read_log(out)
    dims = 28 * 28
    t = time.perf_counter()
    enc = encode_images(test, model=m, archive=True)
    enc_s = time.perf_counter() - t
    nll_bpd = enc.nll_bits / (len(test) * dims)
    sub = test[: args.decode]
    small = encode_images(sub, model=m, archive=True)
    t = time.perf_counter()
    _, out_imgs = decode_file(small.data, model=m)
    dec_s = time.perf_counter() - t
    ok = sum(np.array_equal(a, b) for a, b in zip(sub, out_imgs))
    return {
        "model": label, "run": rundir, "arch": arch, "data": data, "settings": settings, "train": {**tr, "batch": 64},
        "command": command(arch, data, settings, tr, out),
        "parameters": sum(p.numel() for p in m.net.parameters()),
        "train_minutes_wall": train_minutes(out),
        "val_bpd": log[-1].get("val_bpd"),
        "test_images": len(test),
        "test_nll_bpd": nll_bpd,
        "test_nll_nats": nll_bpd * dims * math.log(2),
        "lecture_nats": LECTURE.get(arch) if data == DATA else None,
        "archive_bytes": len(enc.data),
        "archive_bits_per_image": 8 * len(enc.data) / len(test),
        "encode_seconds": enc_s,
        "decoded": len(sub), "roundtrips_ok": ok, "decode_img_s": len(sub) / max(dec_s, 1e-9),
    }


def table(records: list[dict], args) -> str:
    lines = [
        f"Binarized MNIST (`{DATA}`: one seeded Bernoulli draw per pixel, p = intensity / 255), "
        f"test NLL on all {records[0]['test_images'] if records else 0:,} test images in the codec's exact "
        "arithmetic, next to the lecture's numbers (CS294-158 lecture 2; Larochelle and Murray's binarization; "
        "the papers' models, far larger and trained far longer). Ours: minutes at 1 torch thread on a shared "
        "2-core CPU, batch 64 "
        f"(`python benchmarks/binarized_mnist.py --decode {args.decode}`; each run's command is in "
        "benchmarks/results/binarized_mnist.json).",
        "",
        "| model | params | steps | train min (wall, shared CPU) | test NLL nats/image | lecture nats/image | "
        "test bits/dim | archive of the test set | decoded round trips |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lec = f"{r['lecture_nats']:.2f}" if r["lecture_nats"] else "—"
        mins = f"{r['train_minutes_wall']:.1f}" if r["train_minutes_wall"] else "—"
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['train']['steps']} | {mins} | **{r['test_nll_nats']:.2f}** | "
            f"{lec} | {r['test_nll_bpd']:.4f} | {r['archive_bytes']:,} bytes ({r['archive_bits_per_image']:.1f} "
            f"bits/image) | {r['roundtrips_ok']}/{r['decoded']} |")
    lines += ["", "The lecture's Diagonal BiLSTM (79.20) has no counterpart here."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decode", type=int, default=20, help="test images decoded to check round trips")
    ap.add_argument("--limit", type=int, default=0, help="test images to code (0: all 10,000)")
    ap.add_argument("--runs", default="runs/course")
    ap.add_argument("--only", default="", help="comma-separated run directories (bin-nade, ...) to evaluate")
    ap.add_argument("--keep", action="store_true", help="with --only: keep the other rows of the last results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    only = set(filter(None, args.only.split(",")))
    path = RESULTS / "binarized_mnist.json"
    kept = json.loads(path.read_text())["records"] if args.keep and path.exists() else []
    records = []
    for label, arch, data, settings, tr, rundir in MODELS:
        if only and rundir not in only:
            records += [r for r in kept if r["run"] == rundir]
            continue
        x = load_dataset(data, "test")[: args.limit or None]
        test = list(np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy()))
        records.append(run(label, arch, data, settings, tr, rundir, args, test))
        print(json.dumps(records[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    meta = {"torch": torch.__version__, "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "data": DATA, "decode": args.decode}
    (RESULTS / "binarized_mnist.json").write_text(json.dumps({"meta": meta, "records": records}, indent=2) + "\n")
    md = table(records, args)
    (RESULTS / "binarized_mnist.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
