"""Flows on MNIST: the coupling flow's test NLL and pictures; the integer flow's NLL next to
its real file sizes, and its encode/decode speed next to the shipped Gated PixelCNN's.

    python benchmarks/flows.py --figures --runs runs/flows    # NLL on the whole test set, files on 1,000

Prints a table and writes benchmarks/results/flows.json and .md; with ``--figures`` also
the pictures under docs/figures/flows/ (training curves from ``--runs`` when given).
Every number is measured here; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from arcodec.codec.api import decode_many, encode_many
from arcodec.training.data import load_mnist, load_mnist_labels
from arcodec.evaluation.evaluate import evaluate_codec, summarize
from arcodec.models.layers import set_exact
from arcodec.training.train import evaluate_nll
from arcodec.zoo import load_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "figures" / "flows"


def speed(model, images: list, batch: int) -> dict:
    """Encode and decode images/s with ``batch`` files coded together (one file per image);
    the round trips are checked."""
    enc_s = dec_s = 0.0
    ok = 0
    for i in range(0, len(images), batch):
        chunk = images[i: i + batch]
        t = time.perf_counter()
        encs = encode_many(chunk, model=model, max_tiles=batch)
        enc_s += time.perf_counter() - t
        t = time.perf_counter()
        outs = decode_many([e.data for e in encs], model=model, max_tiles=batch)
        dec_s += time.perf_counter() - t
        ok += sum(np.array_equal(o[0][:, :, 0], a) for (_, o), a in zip(outs, chunk))
    return {"images": len(images), "batch": batch, "encode_img_s": len(images) / enc_s,
            "decode_img_s": len(images) / dec_s, "roundtrips_ok": ok}


def escapes(model, images: list) -> list[dict]:
    """Per latent group (scale) of the integer flow: how many latents fall outside the coder's
    window of 2 WINDOW + 1 values around the prior's mode and are coded by the escape path."""
    from arcodec.codec import flow as flow_coding

    counts: dict[int, list[int]] = {}

    def seen(group: int, escaped: int, latents: int) -> None:
        c = counts.setdefault(group, [0, 0])
        c[0] += escaped
        c[1] += latents

    x = torch.from_numpy(np.stack(images)[:, None])
    flow_coding.encode_streams(model.net, x, [len(x)], on_escape=seen)
    return [{"group": g, "escaped": e, "latents": n, "rate": e / n, "window": 2 * flow_coding.WINDOW + 1}
            for g, (e, n) in sorted(counts.items())]


def different_digit_pairs(labels: torch.Tensor, count: int) -> list[tuple[int, int]]:
    """The first ``count`` pairs (i, j) of test images with labels 2k and 2k + 1 (0/1, 2/3, ...)."""
    pairs = []
    for k in range(count):
        a = int(torch.nonzero(labels == (2 * k) % 10)[0])
        b = int(torch.nonzero(labels == (2 * k + 1) % 10)[0])
        pairs.append((a, b))
    return pairs


def figures(test: torch.Tensor, labels: torch.Tensor, runs: Path | None) -> list[str]:
    from arcodec.explore import flowviz
    from arcodec.explore.plots import plot_curves

    coupling = load_model("mnist-coupling").net
    out = [
        flowviz.flow_sample_grid(coupling, FIGURES / "coupling_samples.png", n=100, seed=0),
        flowviz.flow_sample_grid(coupling, FIGURES / "coupling_samples_t07.png", n=100, seed=0, temperature=0.7),
        flowviz.flow_layers_figure(coupling, FIGURES / "coupling_layers.png", n=10, seed=0),
        flowviz.interpolation_figure(coupling, [(test[i], test[j]) for i, j in different_digit_pairs(labels, 3)],
                                     FIGURES / "coupling_interpolations.png", points=10),
    ]
    if runs is not None:
        for name in ("mnist-coupling", "mnist-idf"):
            if (runs / name / "log.jsonl").is_file():
                out.append(plot_curves(runs / name, FIGURES / f"{name}_curves.png"))
    return [str(p.relative_to(ROOT)) for p in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nll-limit", type=int, default=10000, help="test images for the models' NLL")
    ap.add_argument("--limit", type=int, default=1000, help="test images coded to files (integer flow, batch 512)")
    ap.add_argument("--speed-one", type=int, default=50, help="test images timed one at a time (integer flow)")
    ap.add_argument("--gated", type=int, default=100, help="test images timed at batch 512 (mnist-gated)")
    ap.add_argument("--gated-one", type=int, default=3, help="test images timed one at a time (mnist-gated)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--figures", action="store_true", help="also draw docs/figures/flows/*.png")
    ap.add_argument("--runs", type=Path, default=None, help="folder with the training runs (for the curves)")
    ap.add_argument("--escapes-only", action="store_true",
                    help="only measure the integer flow's escape rates on --limit images, keeping the other results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    command = " ".join(["python benchmarks/flows.py", *sys.argv[1:]])

    if args.escapes_only:
        if not (RESULTS / "flows.json").exists():
            raise SystemExit("error: --escapes-only adds to benchmarks/results/flows.json: run the full script first")
        res = json.loads((RESULTS / "flows.json").read_text())
        images = list(np.ascontiguousarray(load_mnist("test")[: args.limit, 0].numpy()))
        res["escapes"] = {"command": command, "images": len(images), "groups": escapes(load_model("mnist-idf"), images)}
        return write(res)

    test = load_mnist("test")
    x = test[: args.nll_limit]
    images = list(np.ascontiguousarray(test[: args.limit, 0].numpy()))
    res: dict = {"command": command, "torch_threads": args.threads,
                 "cpus": os.cpu_count(), "torch": torch.__version__, "machine": platform.machine(), "test_images": len(x)}

    coupling = load_model("mnist-coupling")
    res["coupling"] = {"test_nll_bpd": evaluate_nll(coupling.net, x), "card": coupling.card.get("command")}

    idf = load_model("mnist-idf")
    set_exact(idf.net, False)
    idf_float = evaluate_nll(idf.net, x)
    set_exact(idf.net, True)
    s = summarize(evaluate_codec(idf, images, batch=512))
    res["idf"] = {"test_nll_bpd_float": idf_float, "nll_images": len(x), "codec_nll_bpd": s["nll_bpd"],
                  "file_bpd": s["file_bpd"], "overhead_pct": s["overhead_pct"], "roundtrips_ok": s["roundtrips_ok"],
                  "images": s["images"], "card": idf.card.get("command")}

    gated = load_model("mnist-gated")
    res["speed"] = {
        "idf_batch": {"images": s["images"], "batch": 512, "encode_img_s": s["encode_img_s"],
                      "decode_img_s": s["decode_img_s"], "roundtrips_ok": s["roundtrips_ok"]},
        "idf_one": speed(idf, images[: args.speed_one], 1),
        "gated_batch": speed(gated, images[: args.gated], 512),
        "gated_one": speed(gated, images[: args.gated_one], 1),
    }
    res["escapes"] = {"command": command, "images": len(images), "groups": escapes(idf, images)}
    if args.figures:
        res["figures"] = figures(test, load_mnist_labels("test"), args.runs)
    write(res)


def _group_name(group: int, groups: int) -> str:
    """The IDF yields its latent groups last scale first (the order they are coded in)."""
    return "the last scale's latents" if group == 0 else f"those factored out at scale {groups - group}"


def write(res: dict) -> None:
    """flows.json, and flows.md with the tables."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "flows.json").write_text(json.dumps(res, indent=2) + "\n")
    threads, x_count, s, idf_float = res["torch_threads"], res["test_images"], res["idf"], res["idf"]["test_nll_bpd_float"]
    sp = res["speed"]

    def ratio(batch: str, key: str) -> float:
        return sp[f"idf_{batch}"][key] / sp[f"gated_{batch}"][key]

    lines = [
        f"Flows on the MNIST test set (`{res['command']}`, {threads} torch thread(s), "
        f"{res['cpus']} CPUs shared with other work, CPU only).",
        "",
        "| model | test NLL bits/dim | coded test images | their NLL under the coder's tables | achieved bits/dim "
        "(one .arc file per image, header and CRC included) | round trips |",
        "|---|---|---|---|---|---|",
        f"| `mnist-coupling` (coupling flow; dequantization bound) | {res['coupling']['test_nll_bpd']:.4f} "
        f"({x_count} images) | — | — | — (continuous: the codec refuses it) | — |",
        f"| `mnist-idf` (integer discrete flow) | {idf_float:.4f} ({x_count} images, float) | {s['images']} "
        f"| {s['codec_nll_bpd']:.4f} | {s['file_bpd']:.4f} ({s['overhead_pct']:.1f} % over the tables' NLL) "
        f"| {s['roundtrips_ok']}/{s['images']} |",
        "",
        "| model | batch | images timed | encode img/s | decode img/s | round trips |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in (("idf_batch", "mnist-idf"), ("gated_batch", "mnist-gated"), ("idf_one", "mnist-idf"),
                      ("gated_one", "mnist-gated")):
        r = sp[key]
        lines.append(f"| `{name}` | {r['batch']} | {r['images']} | {r['encode_img_s']:.2f} | {r['decode_img_s']:.2f} "
                     f"| {r['roundtrips_ok']}/{r['images']} |")
    lines += [
        "",
        f"- integer flow / Gated PixelCNN, same run: batch 512 encode {ratio('batch', 'encode_img_s'):.1f}x, "
        f"decode {ratio('batch', 'decode_img_s'):.1f}x; one image at a time "
        f"encode {ratio('one', 'encode_img_s'):.1f}x, "
        f"decode {ratio('one', 'decode_img_s'):.1f}x",
    ]
    if "escapes" in res:
        e = res["escapes"]
        lines += ["", f"Escapes of the integer flow's coder on {e['images']} test images (`{e['command']}`): latents "
                  f"outside the window of {e['groups'][0]['window']} values around their prior's mode, coded by the "
                  "escape path: " + "; ".join(f"{_group_name(g['group'], len(e['groups']))}: {g['escaped']:,} of "
                                              f"{g['latents']:,} ({100 * g['rate']:.1f} %)" for g in e["groups"])]
    (RESULTS / "flows.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
