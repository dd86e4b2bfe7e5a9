"""Training throughput (images/s) of a zoo model's architecture and settings, here.

    python benchmarks/train_throughput.py                      # the shipped mnist-gated config
    python benchmarks/train_throughput.py --steps 50 --threads 2

Trains a fresh model with the zoo card's config and training settings for a few steps on
MNIST (scikit-learn's digits upscaled to 28x28 when MNIST is absent) and times the steps
after the first few. Writes benchmarks/results/train_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from arcodec.models.heads import nll_bits
from arcodec.registry import build_model, make_config
from arcodec.training.train import TrainConfig, make_optimizer
from arcodec.zoo import ZOO_DIR

RESULTS = Path(__file__).resolve().parent / "results"


def images(n: int) -> tuple[torch.Tensor, str]:
    try:
        from arcodec.training.data import load_mnist

        return load_mnist("train")[:n], "mnist"
    except FileNotFoundError:
        from arcodec.training.data import load_digits

        x = load_digits("train").float()
        x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear").round().to(torch.uint8)
        return x.repeat(n // len(x) + 1, 1, 1, 1)[:n], "digits (upscaled)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist-gated", help="zoo model whose config is trained")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup-steps", type=int, default=3, help="steps not timed")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the card's setting)")
    args = ap.parse_args()
    card = json.loads((ZOO_DIR / f"{args.model}.json").read_text())
    tcfg = TrainConfig(**card["train_config"])
    torch.set_num_threads(args.threads or tcfg.threads or torch.get_num_threads())
    torch.manual_seed(0)
    model = build_model(card["arch"], make_config(card["arch"], card["config"]))
    opt = make_optimizer(model, tcfg)
    x_all, data = images(tcfg.batch * (args.steps + args.warmup_steps))
    model.train()
    t0 = None
    for step in range(args.warmup_steps + args.steps):
        if step == args.warmup_steps:
            t0 = time.perf_counter()
        x = x_all[step * tcfg.batch: (step + 1) * tcfg.batch]
        loss = nll_bits(model(x), x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    res = {
        "model": args.model, "arch": card["arch"], "config": card["config"], "batch": tcfg.batch,
        "data": data, "steps_timed": args.steps, "seconds": seconds,
        "img_s": args.steps * tcfg.batch / seconds, "s_per_step": seconds / args.steps,
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps(res, indent=2) + "\n")
    md = (f"Training throughput of `{args.model}`'s architecture ({card['arch']}, batch {tcfg.batch}, "
          f"{data}): **{res['img_s']:.1f} images/s** ({res['s_per_step']:.2f} s per step, {args.steps} steps "
          f"timed, {res['torch_threads']} torch threads, {res['cpus']} CPUs, CPU only; "
          f"`python benchmarks/train_throughput.py --steps {args.steps}`)\n")
    (RESULTS / "train_throughput.md").write_text(md)
    print(md, end="")


if __name__ == "__main__":
    main()
