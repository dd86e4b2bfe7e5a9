"""Fine-tune a shipped model on a small shifted data set: bits/dim before and after.

    python benchmarks/finetune.py                        # 500 tuning images, 30 steps of 16
    python benchmarks/finetune.py --train 5000 --steps 500 --batch 64 --test 1000

The shifted data: MNIST digits inverted (dark strokes on a white background), which the
shipped ``mnist-gated`` never saw. The first N training images of MNIST (``../shared/data``;
else scikit-learn's digits upscaled to 28x28) are written as PNG files to a temporary
``train/`` folder, the first M test images to ``test/``. The script then runs the recipe of
docs/ecosystem.md as a user would, through the CLI:

    arcodec train --init mnist-gated --data folder:DIR/train --set crop=28 --set crops=1 ...
    arcodec export RUN -o inverted.arcm

and measures, on the held-out ``test/`` images, the NLL in bits/dim (the codec's exact
arithmetic) and the real file size (``arcodec.compress``, header included) of the shipped
model and of the fine-tuned ``.arcm``; two images are decoded again with the ``.arcm`` and
compared. Writes benchmarks/results/finetune.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _common import command, data_root, machine, md_table, write

BASE = "mnist-gated"


def digits(split: str, n: int) -> tuple[np.ndarray, str]:
    """(first ``n`` images (n, 28, 28) uint8 of a split, a sentence saying what they are)."""
    if (data_root() / "MNIST" / "raw").exists():
        from arcodec.training.data import load_mnist

        return load_mnist(split)[:n, 0].numpy(), f"MNIST {split} split"
    from arcodec.training.data import load_digits

    small = load_digits(split)[:n].float()
    up = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear")[:, 0].round().byte().numpy()
    return up, f"scikit-learn digits ({split} split) upscaled to 28x28"


def write_folder(images: np.ndarray, folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:05d}.png")


def arcodec_cli(*args: str) -> None:
    """Run ``arcodec ARGS`` as a user would; stop with its message when it fails."""
    r = subprocess.run([sys.executable, "-m", "arcodec", *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"arcodec {' '.join(args)} failed:\n{r.stderr[-2000:]}")


def measure(model: str, images: list[np.ndarray]) -> dict:
    """NLL bits/dim (exact arithmetic) and real file bits/dim (header included) on ``images``."""
    import arcodec
    from arcodec.training.train import evaluate_nll
    from arcodec.zoo import load_model

    m = load_model(model)
    x = torch.from_numpy(np.stack(images))[:, None]
    t = time.perf_counter()
    nll = evaluate_nll(m.net, x)
    file_bits = sum(8 * len(arcodec.compress(img, model)) for img in images)
    return {"nll_bpd": round(nll, 4), "file_bpd": round(file_bits / x.numel(), 4),
            "seconds": round(time.perf_counter() - t, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=500, help="tuning images (80%% train, 10%% validation)")
    ap.add_argument("--test", type=int, default=50, help="held-out test images measured")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    train_x, source = digits("train", args.train)
    test_x, _ = digits("test", args.test)
    train_x, test_x = 255 - train_x, 255 - test_x  # the shift: white background, dark strokes
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_folder(train_x, tmp / "train")
        write_folder(test_x, tmp / "test")
        train_cmd = ["train", "--init", BASE, "--data", f"folder:{tmp / 'train'}", "--set", "crop=28",
                     "--set", "crops=1", "--set", "mode=L", "--set", f"steps={args.steps}",
                     "--set", f"batch={args.batch}", "--set", f"lr={args.lr}", "--set", "warmup=5",
                     "--set", f"val_every={args.steps}", "--set", f"threads={args.threads}", "--out", str(tmp / "run")]
        t = time.perf_counter()
        arcodec_cli(*train_cmd)
        train_s = time.perf_counter() - t
        tuned = tmp / "inverted.arcm"
        arcodec_cli("export", str(tmp / "run"), "-o", str(tuned))
        images = [np.asarray(Image.open(p)) for p in sorted((tmp / "test").glob("*.png"))]
        before, after = measure(BASE, images), measure(str(tuned), images)
        import arcodec

        roundtrip = all((arcodec.decompress(arcodec.compress(img, str(tuned)), str(tuned)) == img).all()
                        for img in images[:2])
        log = [json.loads(ln) for ln in (tmp / "run" / "log.jsonl").read_text().splitlines()]
        size = tuned.stat().st_size

    shown = [a.replace(str(tmp), "DIR") for a in train_cmd]
    result = {"base": BASE, "data": f"{source}, inverted (255 - x)", "tuning_images": args.train,
              "test_images": len(images), "steps": args.steps, "batch": args.batch, "lr": args.lr,
              "train_seconds": round(train_s, 1), "val_bpd": log[-1].get("val_bpd"), "before": before,
              "after": after, "arcm_bytes": size, "roundtrip_ok": bool(roundtrip),
              "train_command": "arcodec " + " ".join(shown), "command": command(), "machine": machine(args.threads)}
    md = [f"# Fine-tuning `{BASE}` on inverted digits", "",
          f"Data: {result['data']}; {args.train} images for tuning (80% train, 10% validation), "
          f"{len(images)} held-out test images measured. {args.steps} steps of batch {args.batch} "
          f"({result['train_seconds']} s). Model file: {size} bytes; round trip with it: "
          f"{'ok' if roundtrip else 'FAILED'}.", "",
          *md_table(["model", "NLL bits/dim", "file bits/dim (header included)"],
                    [[f"`{BASE}` (shipped)", before["nll_bpd"], before["file_bpd"]],
                     ["fine-tuned `inverted.arcm`", after["nll_bpd"], after["file_bpd"]]]), "",
          f"Training: `{result['train_command']}`", "",
          f"Command: `{result['command']}`"]
    write("finetune", result, md)


if __name__ == "__main__":
    main()
