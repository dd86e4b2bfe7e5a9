"""Compression: every shipped model on every data set it applies to, next to real file
sizes and the classical codecs.

    python benchmarks/compression.py            # quick (`make bench`): 500 MNIST, 100 colour MNIST, Kodak crops
    python benchmarks/compression.py --full     # `make bench-full`: all 10,000 MNIST test images
    python benchmarks/compression.py --models mnist-idf   # add or redo one model, keep the others

For each (model, data set) pair (``_common.plan``: the model's card names the data set, or
the data's values span the model's levels): the model's NLL in bits/dim (exact arithmetic,
the codec's own code length), the achieved bits/dim of real .arc files (one file per
image, header, stream lengths and CRC32 included; and one archive of the whole set, names
included), the overhead over the NLL, encode and decode images/s (files batched across
images, at most ``MAX_BATCH`` tiles together, on ``--threads`` torch threads), and round
trips verified by decoding every file and comparing pixels. Beside them, the classical
codecs of ``benchmarks/classical.py`` on the same images.

Writes benchmarks/results/compression.{json,csv,md} (the CSV: one row per codec and data
set) and the per-image records of every learned codec under
benchmarks/results/compression/MODEL--DATA.csv (``arcodec.evaluation.evaluate.write_csv``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from _common import RESULTS, command, file_safe, load_set, machine, md_table, plan, write
from classical import available, measure, streams
from arcodec.codec import container
from arcodec.codec.api import MAX_BATCH, decode_file, encode_images
from arcodec.errors import ArcodecError
from arcodec.evaluation.evaluate import evaluate_codec, summarize, write_csv
from arcodec.zoo import load_model

QUICK = {"mnist": 500, "colour-mnist": 100, "photos": 24, "crop": 64}
FULL = {"mnist": 10000, "colour-mnist": 300, "photos": 24, "crop": 128}


def learned(name: str, images: list[np.ndarray], set_name: str) -> dict:
    """One model on one set: files (per-image records) and one archive."""
    m = load_model(name)
    n = len(images)
    try:
        records = evaluate_codec(m, images, [f"{i:05d}" for i in range(n)], batch=MAX_BATCH)
    except ArcodecError as e:  # the model cannot code these images (e.g. a flow's fixed shape): say so
        return {"model": name, "sha256": m.sha256, "images": n, "refused": str(e)}
    (RESULTS / "compression").mkdir(parents=True, exist_ok=True)
    write_csv(records, RESULTS / "compression" / f"{name}--{file_safe(set_name)}.csv")
    files = summarize(records)
    ok = files.pop("roundtrips_ok")
    names = [f"{i:05d}.png" for i in range(n)]
    t = time.perf_counter()
    arc = encode_images(images, names, model=m)
    t1 = time.perf_counter()
    _, out = decode_file(arc.data, model=m)
    t2 = time.perf_counter()
    dims = sum(a.size for a in images)
    return {
        "model": name, "sha256": m.sha256, "images": n,
        "nll_bpd": files["nll_bpd"],
        "files": {**files, "roundtrips": f"{ok}/{n}", "header_crc_bytes": header_bytes(m, images[0])},
        "archive": {"bytes": len(arc.data), "bpd": 8 * len(arc.data) / dims,
                    "overhead_pct": 100 * (8 * len(arc.data) - arc.nll_bits) / arc.nll_bits,
                    "overhead_bytes_per_image": (len(arc.data) - arc.nll_bits / 8) / n,
                    "names_bytes_per_image": float(np.mean([len(s) + 1 for s in names])),
                    "encode_img_s": n / (t1 - t), "decode_img_s": n / (t2 - t1),
                    "roundtrips": f"{sum(np.array_equal(o, a) for o, a in zip(out, images))}/{n}"},
    }


def header_bytes(m, image: np.ndarray) -> int:
    """Bytes of header and CRC32 of a single-image file of ``image``'s shape (no payload)."""
    h, w, c = image.shape
    header = container.Header(m.model_id, m.fingerprint, (container.Entry(h, w, c, ""),), False, m.bit_depth,
                              container.DEFAULT_TILE)
    return len(container.write(header, b"", [image]))


def rows_of(set_name: str, entry: dict) -> list[dict]:
    """Flat rows (CSV, tables, plots): the learned codecs first, then the classical ones."""
    rows = []
    for r in entry["models"]:
        if "refused" in r:
            continue
        f, a = r["files"], r["archive"]
        rows += [
            {"data": set_name, "codec": f"{r['model']} NLL", "kind": "nll", "bpd": r["nll_bpd"]},
            {"data": set_name, "codec": f"{r['model']}, one file per image", "kind": "learned", "bpd": f["file_bpd"],
             "overhead_pct": f["overhead_pct"], "encode_img_s": f["encode_img_s"], "decode_img_s": f["decode_img_s"],
             "roundtrips": f["roundtrips"]},
            {"data": set_name, "codec": f"{r['model']}, one archive", "kind": "learned-archive", "bpd": a["bpd"],
             "overhead_pct": a["overhead_pct"], "encode_img_s": a["encode_img_s"], "decode_img_s": a["decode_img_s"],
             "roundtrips": a["roundtrips"]},
        ]
    for c in entry["classical"]:
        rows.append({"data": set_name, "codec": c["codec"], "kind": c["kind"], "bpd": c["bpd"], "overhead_pct": None,
                     "encode_img_s": c["encode_img_s"], "decode_img_s": c["decode_img_s"],
                     "roundtrips": c["roundtrips"], "settings": c["settings"]})
    return rows


def markdown(res: dict) -> list[str]:
    mach = res["machine"]
    lines = [f"Produced by `{res['command']}` ({mach['cpu']}, {mach['torch_threads']} torch thread(s), "
             f"arcodec {mach['arcodec']}, torch {mach['torch']}; load average {mach['load_avg_1min']} at the start: "
             "the machine was shared, so speeds are wall-clock under load). Bits/dim count every byte of the files "
             "(headers, CRC, archive names); the learned codecs code files batched across images "
             f"(at most {res['max_batch_tiles']} tiles at a time), the classical ones one image at a time; "
             "every file is decoded and compared. Codec settings: `benchmarks/results/classical.md` and "
             "`compression.json`.", ""]
    for set_name, entry in res["sets"].items():
        lines += [f"**{set_name}**: {entry['images']}.", ""]
        rows = rows_of(set_name, entry)
        lines += md_table(["codec", "bits/dim", "overhead vs NLL", "encode img/s", "decode img/s", "round trips"], [
            [f"**{r['codec']}**" if r["kind"].startswith("learned") or r["kind"] == "nll" else r["codec"],
             f"{r['bpd']:.4f}", "" if r.get("overhead_pct") is None else f"{r['overhead_pct']:.1f} %",
             _speed(r.get("encode_img_s")), _speed(r.get("decode_img_s")), r.get("roundtrips", "")] for r in rows])
        for r in entry["models"]:
            by = f" (measured by `{r['command']}`)" if r.get("command", res["command"]) != res["command"] else ""
            if "refused" in r:
                lines += ["", f"- `{r['model']}` refuses these images{by}: {r['refused']}"]
                continue
            f, a = r["files"], r["archive"]
            lines += ["", f"- `{r['model']}`{by}: {f['overhead_bytes_per_file']:.1f} bytes per file over the NLL, of which "
                      f"{f['header_crc_bytes']} bytes header + CRC; the archive: {a['overhead_bytes_per_image']:.2f} "
                      f"bytes per image, its names ({a['names_bytes_per_image']:.0f} bytes each) included."]
        lines.append("")
    if res["unavailable"]:
        lines.append("Not measured (missing from this imagecodecs build): " + ", ".join(res["unavailable"]))
    return lines


def _speed(v) -> str:
    return "" if v is None else (f"{v:.3g}" if v < 1000 else f"{v:,.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help=f"the full run: {FULL}")
    ap.add_argument("--mnist", type=int, help=f"first N MNIST test images (quick {QUICK['mnist']})")
    ap.add_argument("--colour", type=int, help=f"first N colour MNIST test images (quick {QUICK['colour-mnist']})")
    ap.add_argument("--photos", default=None, help="folder of photos (default ../shared/data/kodak)")
    ap.add_argument("--crop", type=int, help=f"centre crop of each photo (quick {QUICK['crop']})")
    ap.add_argument("--models", nargs="+", help="measure only these shipped models, keeping the others' results "
                    "in compression.json (same images required)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--render", action="store_true", help="only rewrite compression.md from compression.json")
    args = ap.parse_args()
    if args.render:
        res = json.loads((RESULTS / "compression.json").read_text())
        (RESULTS / "compression.md").write_text("\n".join(markdown(res)) + "\n")
        return
    torch.set_num_threads(args.threads)
    preset = FULL if args.full else QUICK
    limits = {"mnist": args.mnist or preset["mnist"], "colour-mnist": args.colour or preset["colour-mnist"],
              "photos": preset["photos"]}
    crop = args.crop or preset["crop"]
    pairs = plan(list(limits))
    # --models: measure only those and keep the other models' results of the same images
    prev = json.loads((RESULTS / "compression.json").read_text()) if args.models else None
    codecs, missing = available()
    res = {"command": command(), "machine": machine(args.threads), "max_batch_tiles": MAX_BATCH, "sets": {},
           "unavailable": missing}
    if prev:
        res = {**prev, "sets": {}}
    order = [c["name"] for c, _ in pairs]
    for set_name in dict.fromkeys(s for _, s in pairs):
        images, what = load_set(set_name, limits.get(set_name, 0), args.photos, crop)
        print(f"{set_name}: {what}", flush=True)
        old = (prev or {}).get("sets", {}).get(set_name)
        if old and old["images"] != what:
            raise SystemExit(f"error: compression.json measured {old['images']} for {set_name}, not {what}: "
                             "rerun without --models")
        entry = {"images": what, "count": len(images), "dims": int(sum(a.size for a in images)), "models": []}
        kept = {r["model"]: r for r in (old or {}).get("models", []) if r["model"] not in (args.models or [])}
        for card, s in pairs:
            if s != set_name:
                continue
            if args.models and card["name"] not in args.models:
                if card["name"] in kept:
                    entry["models"].append(kept[card["name"]])
                continue
            t = time.perf_counter()
            entry["models"].append({**learned(card["name"], images, set_name), "command": command()})
            print(f"  {card['name']}: {time.perf_counter() - t:.0f} s", flush=True)
        entry["models"].sort(key=lambda r: order.index(r["model"]))
        entry["classical"] = old["classical"] if old else measure(images, codecs) + streams(images, codecs)
        res["sets"][set_name] = entry
    rows = [r for s, e in res["sets"].items() for r in rows_of(s, e)]
    write("compression", res, markdown(res), rows)


if __name__ == "__main__":
    main()
