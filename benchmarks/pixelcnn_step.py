"""The compiled steps of the PixelCNN family against the PyTorch steppers, in one run: decode
images/s of the shipped ``colour-mnist-made`` at batch 1 and in a large batch, the encoder's
images/s beside them, and the PyTorch operations dispatched per decoded sub-pixel.

    python benchmarks/pixelcnn_step.py                 # quick: 4 images at batch 1, 128 batched
    python benchmarks/pixelcnn_step.py --batch1 20 --batch 512

Both decoders read the same payloads (the encoder is the same teacher-forced pass either
way; the compiled steps change no number, so no file changes); every decoded image is
compared with its original, and the coder's tables of the first two images are compared
element for element between the two. Images: colour MNIST's test set (or, without
../shared, scikit-learn's digits coloured the same way and upscaled to 28x28). Timings on a
shared machine are noisy: compare the two within one run.

Writes benchmarks/results/pixelcnn_step.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import command, counting_torch_ops, machine, md_table, write


def images(n: int) -> tuple[torch.Tensor, str]:
    from arcodec.training.data import colourize, load_dataset, load_digits

    try:
        return load_dataset("colour-mnist", "test")[:n].long(), "colour MNIST test images"
    except Exception:  # no ../shared: scikit-learn's digits, upscaled and coloured
        small = torch.cat([load_digits(s) for s in ("test", "val", "train")])[:n].float()
        big = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear").round().byte()
        return colourize(big, seed=3).long(), "scikit-learn digits, upscaled and coloured"


def run(net, x: torch.Tensor, batch: int, compiled: bool, payloads: list[bytes] | None = None) -> dict:
    from arcodec.codec import autoregressive as ar
    from arcodec.codec import pixelcnn_step

    n = len(x)
    chunks = [x[i: i + batch] for i in range(0, n, batch)]
    t = time.perf_counter()
    if payloads is None:
        payloads = [ar.encode_streams(net, xb, [len(xb)])[0][0] for xb in chunks]
    t1 = time.perf_counter()
    pixelcnn_step.ENABLED = compiled
    try:
        out = [ar.decode_streams(net, [p], [len(xb)], 3, 28, 28) for p, xb in zip(payloads, chunks)]
    finally:
        pixelcnn_step.ENABLED = True
    t2 = time.perf_counter()
    return {"payloads": payloads, "encode_img_s": n / (t1 - t) if t1 > t else None, "decode_img_s": n / (t2 - t1),
            "roundtrip_ok": torch.equal(torch.cat([torch.as_tensor(o) for o in out]), x)}


def ops_per_subpixel(stepper, x: torch.Tensor, r: int = 14) -> float:
    """Torch operations of one whole row of the batch-1 decoder (begin_row, every pixel's
    channels: the coder's tables), per decoded sub-pixel."""
    from arcodec.codec import autoregressive as ar

    get = getattr(stepper, "weights", None) or (lambda x, r, c, ch: ar.table(stepper.step(x, r, c)[:, :, ch]))
    with counting_torch_ops() as count:
        stepper.begin_row(x, r)
        for c in range(x.shape[3]):
            for ch in range(x.shape[1]):
                get(x, r, c, ch)
    return count.ops / (x.shape[3] * x.shape[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch1", type=int, default=4, help="images decoded one at a time")
    ap.add_argument("--batch", type=int, default=128, help="images decoded together")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from arcodec.codec import autoregressive as ar
    from arcodec.codec import pixelcnn_step
    from arcodec.zoo import load_model

    info = machine(args.threads)  # the load average before this script's own work
    net = ar.float_model(load_model("colour-mnist-made").net)
    x, source = images(max(args.batch1, args.batch))
    run(net, x[:1], 1, True)  # warm-up: loads the compiled kernels
    # the coder's tables of two images, element for element
    seen = {}
    for compiled in (True, False):
        pixelcnn_step.ENABLED = compiled
        try:
            tables = seen.setdefault(compiled, [])
            p = ar.encode_streams(net, x[:2], [2])[0][0]
            ar.decode_streams(net, [p], [2], 3, 28, 28, on_table=lambda r, c, ch, t, tables=tables: tables.append(t))
        finally:
            pixelcnn_step.ENABLED = True
    tables_equal = bool(np.array_equal(np.concatenate(seen[True]), np.concatenate(seen[False])))
    rows = []
    for label, compiled in (("PyTorch stepper", False), ("compiled steps", True)):
        one = run(net, x[: args.batch1], 1, compiled, rows[0]["one"]["payloads"] if rows else None)
        many = run(net, x[: args.batch], args.batch, compiled, rows[0]["many"]["payloads"] if rows else None)
        rows.append({"decoder": label, "one": one, "many": many})
        print(label, {k: v for k, v in one.items() if k != "payloads"}, {k: v for k, v in many.items() if k != "payloads"},
              flush=True)
    steppers = {"PyTorch stepper": net.incremental(1, 28, 28),
                "compiled steps": pixelcnn_step.CompiledStepper(net, 1, 28, 28)}
    ops = {k: ops_per_subpixel(s, x[:1]) for k, s in steppers.items()}
    encode = {"batch1_encode_img_s": rows[0]["one"]["encode_img_s"], "batch_encode_img_s": rows[0]["many"]["encode_img_s"]}
    payload_bits = 8 * sum(map(len, rows[0]["many"]["payloads"])) / x[: args.batch].numel()
    out = [{"decoder": r["decoder"], "batch1_decode_img_s": r["one"]["decode_img_s"],
            "batch_decode_img_s": r["many"]["decode_img_s"], "ops_per_subpixel": ops[r["decoder"]],
            "roundtrip_ok": r["one"]["roundtrip_ok"] and r["many"]["roundtrip_ok"]} for r in rows]
    result = {"machine": info, "command": command(), "threads": args.threads, "batch": args.batch,
              "batch1_images": args.batch1, "images": source, "rows": out, **encode,
              "payload_bits_per_dim": payload_bits, "tables_equal": tables_equal}
    table = md_table(["decoder", "batch-1 decode img/s", f"batch-{args.batch} decode img/s",
                      "torch operations per decoded sub-pixel", "round trips"],
                     [[r["decoder"], f"{r['batch1_decode_img_s']:.2f}", f"{r['batch_decode_img_s']:.1f}",
                       f"{r['ops_per_subpixel']:.0f}", "ok" if r["roundtrip_ok"] else "FAILED"] for r in out])
    about = (f"Produced by `{command()}`: `colour-mnist-made` on {source}, {args.threads} torch thread(s), load "
             f"average {info['load_avg_1min']} at the start. The encoder (the same for both): "
             f"{encode['batch1_encode_img_s']:.1f} img/s at batch 1, {encode['batch_encode_img_s']:.1f} in a batch of "
             f"{args.batch}; payload {payload_bits:.4f} bits/sub-pixel. The coder's tables of two images equal "
             f"element for element between the two decoders: {'yes' if tables_equal else 'NO'}.")
    write("pixelcnn_step", result, [about, "", *table])


if __name__ == "__main__":
    main()
