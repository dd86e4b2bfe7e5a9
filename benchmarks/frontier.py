"""The NLL/speed frontier of the Gated PixelCNN digit models: for each size, its bits/dim on
the MNIST test digits (the float model's NLL and the integer engine's real payloads) against
its decode and encode images/s on the integer engine (engine 1), at batch 1 and in a batch.

    python benchmarks/frontier.py                  # 1,000 test digits for the bits, 128 timed
    python benchmarks/frontier.py --full           # all 10,000 test digits for the bits
    python benchmarks/frontier.py --models mnist-gated my-model.arcm

Every model runs the same digits through the same coder (``arcodec.codec.coders``), in one
process, one after the other; every decoded digit is compared with its original. The bits
come from the encoder's payloads of ``--batch`` digits each (one archive-like stream, no
container header); the float NLL from the model's own forward pass (``nll_bits``).
Timings on a shared machine are noisy: compare the models within one run.

Writes benchmarks/results/frontier.{json,md} and frontier.png.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import RESULTS, command, machine, md_table, missing, write

MODELS = ["mnist-gated-small", "mnist-gated-medium", "mnist-gated"]


def test_digits(n: int) -> torch.Tensor:
    from arcodec.training.data import load_dataset

    try:
        return load_dataset("mnist", "test")[:n].long()
    except Exception as e:  # noqa: BLE001 (any loader failure is the same missing data)
        raise missing("the MNIST test set", e)


@torch.no_grad()
def float_nll(net, x: torch.Tensor, batch: int = 500) -> float:
    from arcodec.models.heads import nll_bits

    total = sum(float(nll_bits(net(x[i: i + batch]), x[i: i + batch]).sum()) for i in range(0, len(x), batch))
    return total / x.numel()


def timed(coder, net, x: torch.Tensor, batch: int) -> dict:
    """Encode then decode ``x`` in calls of ``batch`` digits: images/s of each, and whether
    every digit came back."""
    t = time.perf_counter()
    payloads = [coder.encode(net, x[i: i + batch], [len(x[i: i + batch])])[0][0] for i in range(0, len(x), batch)]
    t1 = time.perf_counter()
    out = [coder.decode(net, [p], [len(x[i: i + batch])], 1, 28, 28) for p, i in zip(payloads, range(0, len(x), batch))]
    t2 = time.perf_counter()
    ok = bool(np.array_equal(np.concatenate([np.asarray(o) for o in out]), x.numpy()))
    return {"encode_img_s": len(x) / (t1 - t), "decode_img_s": len(x) / (t2 - t1), "roundtrip_ok": ok}


def payload_bpd(coder, net, x: torch.Tensor, batch: int) -> float:
    nbytes = sum(len(coder.encode(net, x[i: i + batch], [len(x[i: i + batch])])[0][0]) for i in range(0, len(x), batch))
    return 8 * nbytes / x.numel()


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, label, marker in (("batch_decode_img_s", "decode, batch of digits", "o"),
                               ("batch1_decode_img_s", "decode, one digit at a time", "s")):
        xs = [r[key] for r in rows]
        ys = [r["engine_bpd"] for r in rows]
        ax.plot(xs, ys, marker=marker, label=label)
        for r, x_, y_ in zip(rows, xs, ys):
            ax.annotate(f"{r['layers']}x{r['hidden']}", (x_, y_), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    speeds = [r[k] for r in rows for k in ("batch_decode_img_s", "batch1_decode_img_s")]
    lo, hi = min(speeds) / 1.5, max(speeds) * 1.6  # every point inside, with room for its label
    ax.set_xticks([t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if lo <= t <= hi])
    ax.set_xlim(lo, hi)
    ax.set_xlabel("decode images/s (2 CPU threads, integer engine)")
    ax.set_ylabel("bits/dim on MNIST test digits (engine payloads)")
    ax.set_title("Gated PixelCNN: size against decode speed")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(y=0.08)
    ax.legend(loc="center", bbox_to_anchor=(0.5, 0.45))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS, help="zoo names or model files (.arcm)")
    ap.add_argument("--images", type=int, default=1000, help="test digits for the bits/dim")
    ap.add_argument("--full", action="store_true", help="all 10,000 test digits for the bits/dim")
    ap.add_argument("--batch", type=int, default=128, help="digits coded together (timed on one such batch)")
    ap.add_argument("--batch1", type=int, default=5, help="digits decoded one at a time (timed)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from arcodec.codec import coders
    from arcodec.zoo import load_model

    mach = machine(args.threads)  # the load average before this script's own work
    x = test_digits(10000 if args.full else args.images)
    rows = []
    for name in args.models:
        m = load_model(name)
        net = m.net
        coders.coder_for(net, m.name)  # registers every coder
        coder = coders.CODERS["autoregressive", 1]
        # warm-up: compiles the kernels (numba's disk cache is rebuilt after a change to their
        # module), those of one digit and those of a batch (KERNEL_SPLIT tiles or more)
        timed(coder, net, x[:1], 1)
        timed(coder, net, x[: args.batch], args.batch)
        cfg = m.config
        row = {"model": m.name, "layers": cfg.layers, "hidden": cfg.hidden, "head": cfg.head,
               "params": sum(p.numel() for p in net.parameters()), "float_nll_bpd": float_nll(net, x),
               "engine_bpd": payload_bpd(coder, net, x, args.batch)}
        one = timed(coder, net, x[: args.batch1], 1)
        many = timed(coder, net, x[: args.batch], args.batch)
        row.update(batch1_decode_img_s=one["decode_img_s"], batch1_encode_img_s=one["encode_img_s"],
                   batch_decode_img_s=many["decode_img_s"], batch_encode_img_s=many["encode_img_s"],
                   roundtrip_ok=one["roundtrip_ok"] and many["roundtrip_ok"])
        rows.append(row)
        print(row, flush=True)
    RESULTS.mkdir(exist_ok=True)
    plot(rows, RESULTS / "frontier.png")
    result = {"machine": mach, "command": command(), "images": len(x), "batch": args.batch,
              "batch1_images": args.batch1, "rows": rows}
    table = md_table(["model", "layers x channels (head)", "parameters", "float NLL bits/dim",
                      "engine payload bits/dim", "batch-1 decode img/s", f"batch-{args.batch} decode img/s",
                      f"batch-{args.batch} encode img/s", "round trips"],
                     [[r["model"], f"{r['layers']} x {r['hidden']} ({r['head']})", f"{r['params']:,}",
                       f"{r['float_nll_bpd']:.4f}", f"{r['engine_bpd']:.4f}", f"{r['batch1_decode_img_s']:.1f}",
                       f"{r['batch_decode_img_s']:.1f}", f"{r['batch_encode_img_s']:.1f}",
                       "ok" if r["roundtrip_ok"] else "FAILED"] for r in rows])
    about = (f"Produced by `{command()}`: bits/dim on the first {len(x):,} MNIST test digits, speeds on "
             f"{args.batch1} digits one at a time and {args.batch} in one call, {args.threads} threads, load "
             f"average {result['machine']['load_avg_1min']} at the start; every decoded digit compared with its "
             f"original. Plot: `benchmarks/results/frontier.png`.")
    write("frontier", result, [about, "", *table])


if __name__ == "__main__":
    main()
