"""The PixelCNN family at an equal training budget: NLL next to real file sizes, and speed.

    python benchmarks/pixelcnn_family.py                   # 8-bit MNIST and colour MNIST
    python benchmarks/pixelcnn_family.py --steps 50 --eval 20   # a quick look

Every model trains with ``arcodec.training.train.train`` for the same number of steps of the same
batch (the budget), then is evaluated on the first ``--eval`` test images: test NLL
(exact arithmetic, the codec's), achieved bits/dim of real .arc files (header included,
round trip checked) and encode/decode images/s, all from ``arcodec.evaluation.evaluate``. The
non-causal ablation trains too: its training NLL is reported next to the codec's refusal.
Writes benchmarks/results/pixelcnn_family.{json,md}; runs go to runs/family/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from arcodec.errors import ModelError
from arcodec.evaluation.evaluate import evaluate_codec, evaluation_images, summarize
from arcodec.explore.plots import read_log
from arcodec.training.train import TrainConfig, train
from arcodec.zoo import load_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# (label, architecture, data, model settings): widths chosen for similar sizes
MODELS = [
    ("PixelCNN", "pixelcnn", "mnist", {"hidden": 32, "blocks": 6, "head": 64}),
    ("stack PixelCNN (no gates)", "stack-pixelcnn", "mnist", {"hidden": 32, "layers": 8}),
    ("Gated PixelCNN", "gated-pixelcnn", "mnist", {"hidden": 32, "layers": 8, "head": 64}),
    ("PixelCNN-MADE", "pixelcnn-made", "mnist",
     {"channels": 1, "hidden": 32, "blocks": 6, "features": 32, "made_hidden": 64}),
    ("Gated PixelCNN, NOT causal (ablation)", "gated-pixelcnn", "mnist",
     {"hidden": 32, "layers": 8, "head": 64, "causal": "false"}),
    ("PixelCNN (colour masks)", "pixelcnn", "colour-mnist", {"channels": 3, "hidden": 48, "blocks": 6, "head": 48}),
    ("PixelCNN-MADE", "pixelcnn-made", "colour-mnist",
     {"channels": 3, "hidden": 48, "blocks": 6, "features": 48, "made_hidden": 96}),
]


def slug(label: str, data: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in f"{label}-{data}".lower()).strip("-")


def run(label, arch, data, settings, args) -> dict:
    out = Path(args.runs) / slug(label, data)
    cfg = TrainConfig(arch=arch, data=data, steps=args.steps, batch=args.batch, lr=args.lr,
                      warmup=min(100, args.steps // 10), val_every=args.steps, val_limit=args.val_limit,
                      threads=args.threads)
    t = time.perf_counter()
    train(cfg, settings, out, progress=False)
    seconds = time.perf_counter() - t
    log = read_log(out)
    rec = {"model": label, "arch": arch, "data": data, "settings": settings, "train_seconds": seconds,
           "train_img_s": args.steps * args.batch / seconds,
           "train_bpd_last100": sum(r["train_bpd"] for r in log[-100:]) / len(log[-100:]),
           "val_bpd": log[-1].get("val_bpd")}
    try:
        m = load_model(str(out / "best.pt"))
    except ModelError as e:
        rec["codec"] = f"refused: {e}"
        return rec
    rec["parameters"] = sum(p.numel() for p in m.net.parameters())
    images, names = evaluation_images(data, "test", args.eval)
    s = summarize(evaluate_codec(m, images, names))
    rec.update({"test_images": s["images"], "test_nll_bpd": s["nll_bpd"], "file_bpd": s["file_bpd"],
                "overhead_pct": s["overhead_pct"], "encode_img_s": s["encode_img_s"],
                "decode_img_s": s["decode_img_s"], "roundtrips": f"{s['roundtrips_ok']}/{s['images']}",
                "codec": "ok"})
    return rec


def table(records: list[dict], args) -> str:
    lines = [
        f"Equal budget: {args.steps} steps of {args.batch} images (lr {args.lr}, AdamW, "
        f"{args.threads or torch.get_num_threads()} torch threads, CPU); test numbers on the first {args.eval} "
        f"test images (`python benchmarks/pixelcnn_family.py --steps {args.steps} --eval {args.eval}`).",
        "",
        "| data | model | params | train bpd (last 100 steps) | val bpd | test NLL bpd | file bpd | "
        "overhead | decode img/s | train img/s | codec |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        fmt = lambda k, f="{:.4f}": f.format(r[k]) if r.get(k) is not None else "—"  # noqa: E731
        lines.append(
            f"| {r['data']} | {r['model']} | {fmt('parameters', '{:,}')} | {fmt('train_bpd_last100')} | "
            f"{fmt('val_bpd')} | {fmt('test_nll_bpd')} | {fmt('file_bpd')} | {fmt('overhead_pct', '{:.1f} %')} | "
            f"{fmt('decode_img_s', '{:.2f}')} | {fmt('train_img_s', '{:.1f}')} | "
            f"{'round trips ' + r['roundtrips'] if r['codec'] == 'ok' else r['codec']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval", type=int, default=100, help="test images to code and decode per model")
    ap.add_argument("--val-limit", type=int, default=1000, help="validation images (0: all)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--runs", default="runs/family")
    ap.add_argument("--only", default="", help="comma-separated architectures to run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(filter(None, args.only.split(",")))
    records = []
    for label, arch, data, settings in MODELS:
        if only and arch not in only:
            continue
        print(f"{label} on {data} ...", flush=True)
        records.append(run(label, arch, data, settings, args))
        print(json.dumps(records[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    meta = {"torch": torch.__version__, "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "steps": args.steps, "batch": args.batch, "lr": args.lr, "eval_images": args.eval}
    (RESULTS / "pixelcnn_family.json").write_text(json.dumps({"meta": meta, "records": records}, indent=2) + "\n")
    md = table(records, args)
    (RESULTS / "pixelcnn_family.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
