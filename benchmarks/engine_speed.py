"""The Gated PixelCNN's integer engine (engine 1) against the float64 fixed point (engine 0),
in one run: decode and encode images/s of the shipped ``mnist-gated`` at batch 1 and in a
large batch, the PyTorch operations dispatched per decoded pixel, and what the hardware
allows: the model's multiply-adds a digit against this machine's rates of matrix products of
an encoder row's size (float32, float64, int8), run as the engine runs them (one a thread).

    python benchmarks/engine_speed.py                 # quick: 4 images at batch 1, 64 batched
    python benchmarks/engine_speed.py --batch1 20 --batch 512

Both engines code the same MNIST test digits (or, without ../shared, generated rings) through
their coders (``arcodec.codec.coders``); every decoded image is compared with its original.
Operations per pixel are counted with a TorchDispatchMode over one whole row of the batch-1
decoder (begin_row and its steps), divided by the row's width: engine 0's stepper, engine 1's
PyTorch step (as without numba) and engine 1's compiled steps (numba kernels and numpy's
matrix products: no torch operation).
Timings on a shared machine are noisy: compare the engines within one run.

Writes benchmarks/results/engine_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import command, counting_torch_ops, machine, md_table, write


def digits(n: int) -> torch.Tensor:
    try:
        from arcodec.training.data import load_dataset

        return load_dataset("mnist", "test")[:n].long()
    except Exception:  # no ../shared: rings of several radii
        yy, xx = np.mgrid[:28, :28]
        rings = [np.clip(1 - abs(np.hypot(yy - 13.5, xx - 13.5) - 4 - k % 8) / 3, 0, 1) * 255 for k in range(n)]
        return torch.from_numpy(np.round(np.stack(rings))[:, None]).long()


def ops_per_pixel(stepper, x: torch.Tensor, r: int = 14) -> float:
    with counting_torch_ops() as count:
        stepper.begin_row(x, r)
        for c in range(x.shape[3]):
            stepper.step(x, r, c)
    return count.ops / x.shape[3]


def macs_per_pixel(eng) -> int:
    """Multiply-adds of one pixel through the engine: every layer's matrix products (the
    vertical and horizontal stacks, the gate's output) and the head."""
    layers = [q for layer in eng.layers for q in (layer.vertical, layer.horizontal, layer.out)] + list(eng.head)
    return sum(w.shape[0] * w.shape[1] for q in layers for w in (q.parts if hasattr(q, "parts") else [q.wt]))


def product_peaks(threads: int, rows: int = 128 * 28, inner: int = 192, cols: int = 64) -> dict:
    """Multiply-adds a second of matrix products the size of a row of the encoder's widest
    layer (rows = tiles x columns), run as the engine's kernels run theirs: ``threads``
    threads at once, each its own products on one BLAS (or torch) thread; numpy float32 (the
    engine's type), float64, and torch's int8 product (``torch._int_mm``). Best of 5 rounds of
    20 products a thread."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a8 = [torch.from_numpy(rng.integers(-127, 128, (rows, inner), dtype=np.int8)) for _ in range(threads)]
    b8 = torch.from_numpy(rng.integers(-127, 128, (inner, cols), dtype=np.int8))
    kinds = {"float32": ([a.numpy().astype(np.float32) for a in a8], b8.numpy().astype(np.float32), np.matmul),
             "float64": ([a.numpy().astype(np.float64) for a in a8], b8.numpy().astype(np.float64), np.matmul),
             "int8": (a8, b8, torch._int_mm)}
    out = {}
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
            for kind, (left, right, mm) in kinds.items():
                def run() -> float:
                    t = time.perf_counter()
                    list(pool.map(lambda a: [mm(a, right) for _ in range(20)], left))
                    return time.perf_counter() - t

                run()  # warm-up
                best = min(run() for _ in range(5))
                out[kind] = threads * 20 * rows * inner * cols / best
    finally:
        torch.set_num_threads(torch_threads)
    return out


def measure(coder, net, x: torch.Tensor, batch: int) -> dict:
    n = len(x)
    t = time.perf_counter()
    payloads = [coder.encode(net, x[i: i + batch], [len(x[i: i + batch])])[0][0] for i in range(0, n, batch)]
    t1 = time.perf_counter()
    out = [coder.decode(net, [p], [len(x[i: i + batch])], 1, 28, 28) for p, i in zip(payloads, range(0, n, batch))]
    t2 = time.perf_counter()
    ok = torch.equal(torch.cat([torch.as_tensor(o) for o in out]), x)  # numpy from the numpy engine (a few tiles)
    return {"encode_img_s": n / (t1 - t), "decode_img_s": n / (t2 - t1), "roundtrip_ok": ok,
            "payload_bits_per_dim": 8 * sum(map(len, payloads)) / x.numel()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch1", type=int, default=4, help="images decoded one at a time")
    ap.add_argument("--batch", type=int, default=64, help="images decoded together")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from arcodec.codec import coders, gated
    from arcodec.codec.autoregressive import make_stepper
    from arcodec.zoo import load_model

    m = load_model("mnist-gated")
    coders.coder_for(m.net, m.name)  # registers every coder
    x = digits(max(args.batch1, args.batch))
    eng = gated.engine(m.net)
    # warm-up: compiles the kernels of one digit and of a batch (numba rebuilds its disk cache
    # after a change to their module)
    measure(coders.CODERS["autoregressive", 1], m.net, x[:1], 1)
    measure(coders.CODERS["autoregressive", 1], m.net, x[: args.batch], args.batch)
    rows = []
    for engine in (0, 1):
        coder = coders.CODERS["autoregressive", engine]
        one = measure(coder, m.net, x[: args.batch1], 1)
        many = measure(coder, m.net, x[: args.batch], args.batch)
        rows.append({"engine": engine, "batch1_decode_img_s": one["decode_img_s"],
                     "batch1_encode_img_s": one["encode_img_s"], "batch_decode_img_s": many["decode_img_s"],
                     "batch_encode_img_s": many["encode_img_s"], "payload_bits_per_dim": many["payload_bits_per_dim"],
                     "roundtrip_ok": one["roundtrip_ok"] and many["roundtrip_ok"]})
        print(rows[-1], flush=True)
    steppers = {"engine 0 stepper": make_stepper(m.net, 1, 1, 28, 28), "engine 1 PyTorch step": None,
                "engine 1 compiled step": eng.incremental(1, 28, 28)}
    plain = eng.incremental(1, 28, 28)
    plain.kernel, plain.fused, plain.fused_steps, plain.row_args = None, False, False, None  # as without numba
    steppers["engine 1 PyTorch step"] = plain
    ops = {k: ops_per_pixel(s, x[:1]) for k, s in steppers.items()}
    print(ops)
    macs = macs_per_pixel(eng) * 28 * 28
    peaks = product_peaks(args.threads)
    print({"macs_per_image": macs, **{k: v / 1e9 for k, v in peaks.items()}})
    result = {"machine": machine(args.threads), "command": command(), "threads": args.threads, "batch": args.batch,
              "batch1_images": args.batch1, "rows": rows, "ops_per_pixel": ops,
              "macs_per_image": macs, "product_macs_per_s": peaks}
    table = md_table(["engine", "batch-1 decode img/s", "batch-1 encode img/s", f"batch-{args.batch} decode img/s",
                      f"batch-{args.batch} encode img/s", "payload bits/dim", "round trips"],
                     [[r["engine"], f"{r['batch1_decode_img_s']:.2f}", f"{r['batch1_encode_img_s']:.1f}",
                       f"{r['batch_decode_img_s']:.1f}", f"{r['batch_encode_img_s']:.1f}",
                       f"{r['payload_bits_per_dim']:.4f}", "ok" if r["roundtrip_ok"] else "FAILED"] for r in rows])
    ops_table = md_table(["decoder", "torch operations per decoded pixel"], [[k, f"{v:.0f}"] for k, v in ops.items()])
    encode = rows[1]["batch_encode_img_s"]
    bound = [f"What the hardware allows: a digit is {macs / 1e6:.0f} M multiply-adds through the engine "
             f"(`macs_per_pixel`); matrix products the size of an encoder row's widest layer, one a thread, run at "
             f"{peaks['float32'] / 1e9:.0f} G multiply-adds/s in float32 (the engine's type), "
             f"{peaks['float64'] / 1e9:.0f} G in float64 and {peaks['int8'] / 1e9:.0f} G in int8 (`torch._int_mm`) "
             f"on {args.threads} thread(s) together. At those rates the products alone would encode at most "
             f"{peaks['float32'] / macs:.0f} digits/s in float32 and {peaks['int8'] / macs:.0f} in int8; engine 1's "
             f"batch encode ({encode:.0f}/s) reaches {encode * macs / peaks['float32']:.0%} of that float32 cap, "
             f"beside its gates, head, tables and coder (and copying, not computing, what the digits' blank "
             f"beginnings give)."]
    about = (f"Produced by `{command()}`: `mnist-gated`, {args.threads} torch thread(s), load average "
             f"{result['machine']['load_avg_1min']} at the start; every decoded image compared with its original.")
    write("engine_speed", result, [about, "", *table, "", *ops_table, "", *bound])


if __name__ == "__main__":
    main()
