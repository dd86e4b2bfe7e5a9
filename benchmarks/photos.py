"""Whole photographs as real .arc files, beside the classical codecs (issue: photographs).

    python benchmarks/photos.py                 # `make bench`: the first 4 Kodak photos
    python benchmarks/photos.py --full          # `make bench-full`: all 24
    python benchmarks/photos.py --model runs/photo-rgb/best.pt --gray-model runs/photo-gray/best.pt
    python benchmarks/photos.py --full --only gray --gray-classical-from benchmarks/results/classical_gray.json
    python benchmarks/photos.py --limit 2 --no-gray --no-write   # a trial: arcodec only, printed

For every photo of ``../shared/data/kodak`` (768x512 RGB), and for the same photo turned to
gray (``arcodec.training.data.to_luma``: round(0.299 R + 0.587 G + 0.114 B)), one fresh process
compresses it with arcodec (``--model``, default: what ``arcodec compress`` picks) into the
bytes of a real .arc file (header and CRC included), decompresses them and compares the
pixels; its encode and decode seconds and its peak resident memory (``ru_maxrss`` of that
process: Python, the model and the coding; torch only for a model that needs it) are recorded, at ``--threads`` threads.
The model's NLL (the exact tables' code length) is recorded beside the file's size. The
classical codecs of ``benchmarks/classical.py`` code the same images.

Pooled bits/sub-pixel = 8 x (all files' bytes) / (all photos' sub-pixels). Writes
benchmarks/results/photos.{json,csv,md} and photos_tradeoff.png (bits/sub-pixel against
decode seconds per photo, log scale).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from _common import RESULTS, _shown, bpd, command, default_photos, machine, md_table, missing, write

HERE = Path(__file__).resolve()


def worker(spec: dict) -> dict:
    """Compress and decompress one photo in this process; times and sizes as JSON."""
    from arcodec.codec.api import decode_file, encode_images
    from arcodec.codec.coders import set_threads
    from arcodec.imageio import read_image, to_luma
    from arcodec.zoo import load_model

    set_threads(spec["threads"])  # the photo models code without torch: it is not imported
    a = read_image(Path(spec["image"]).read_bytes(), spec["image"])
    if spec["gray"]:
        a = to_luma(a)
    model = load_model(spec["model"]) if spec["model"] != "auto" else None
    t = time.perf_counter()
    enc = encode_images([a], model=model)
    t1 = time.perf_counter()
    _, (b,) = decode_file(enc.data, model=model)
    t2 = time.perf_counter()
    from arcodec.codec import container

    header = container.read(enc.data)[0]
    return {"bytes": len(enc.data), "nll_bits": enc.nll_bits, "subpixels": int(a.size),
            "encode_s": t1 - t, "decode_s": t2 - t1, "roundtrip": bool(np.array_equal(b, a)),
            "method": header.model_id}


def run_arcodec(files: list[Path], gray: bool, model: str, threads: int) -> list[dict]:
    from speed import measured

    rows = []
    for i, f in enumerate(files):
        spec = {"image": str(f), "gray": gray, "model": model, "threads": threads}
        wall, rss, out = measured([sys.executable, str(HERE), "--worker", json.dumps(spec)], threads)
        r = {"photo": f.name, **json.loads(out.strip().splitlines()[-1]), "peak_rss_mib": rss}
        rows.append(r)
        print(f"  {'gray' if gray else 'rgb '} {f.name}: {bpd(r['bytes'], r['subpixels']):.4f} bits/sub-pixel "
              f"(NLL {r['nll_bits'] / r['subpixels']:.4f}), encode {r['encode_s']:.1f} s, "
              f"decode {r['decode_s']:.1f} s, {rss:.0f} MiB, round trip {'ok' if r['roundtrip'] else 'FAILED'}  "
              f"[{i + 1}/{len(files)}]", file=sys.stderr, flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    dims = sum(r["subpixels"] for r in rows)
    return {"bpd": bpd(sum(r["bytes"] for r in rows), dims), "nll_bpd": sum(r["nll_bits"] for r in rows) / dims,
            "encode_s_per_photo": float(np.mean([r["encode_s"] for r in rows])),
            "decode_s_per_photo": float(np.mean([r["decode_s"] for r in rows])),
            "max_decode_s": float(max(r["decode_s"] for r in rows)),
            "peak_rss_mib": float(max(r["peak_rss_mib"] for r in rows)),
            "roundtrips": f"{sum(r['roundtrip'] for r in rows)}/{len(rows)}"}


def classical_rows(images: list[np.ndarray]) -> list[dict]:
    from classical import available, measure

    codecs, _ = available()
    keep = {"PNG (Pillow)", "WebP lossless", "JPEG XL lossless e7", "JPEG XL lossless e10", "JPEG-LS",
            "JPEG 2000 lossless", "xz"}
    return measure(images, [c for c in codecs if c.name in keep])


def figure(result: dict, out: Path) -> None:
    from arcodec.explore.plots import pyplot

    plt = pyplot()
    keys = [k for k in ("rgb", "gray") if k in result]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), dpi=120, squeeze=False)
    for ax, key in zip(axes[0], keys):
        part = result[key]
        for r in part["classical"]:
            s = 1.0 / r["decode_img_s"]
            ax.scatter(s, r["bpd"], color="tab:blue")
            ax.annotate(r["codec"], (s, r["bpd"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        a = part["arcodec"]
        ax.scatter(a["decode_s_per_photo"], a["bpd"], color="tab:red", marker="*", s=120)
        ax.annotate(f"arcodec ({part['model']})", (a["decode_s_per_photo"], a["bpd"]), fontsize=8, color="tab:red",
                    xytext=(3, -10), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("decode seconds per photo (log)")
        ax.set_ylabel("bits per sub-pixel (pooled)")
        ax.set_title(f"Kodak {key}, {part['photos']} photos", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="all 24 photos (default: the first 4)")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--photos", type=Path, default=None, help="folder of photos (default ../shared/data/kodak)")
    p.add_argument("--model", default="auto", help="model for the RGB photos (default: arcodec's own choice)")
    p.add_argument("--gray-model", default="auto", help="model for the gray photos")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-gray", action="store_true", help="RGB photos only")
    p.add_argument("--only", choices=["rgb", "gray"], default=None,
                   help="measure this part only; the other comes from the existing results/photos.json "
                        "(which must have coded the same photos), with the command that measured it")
    p.add_argument("--classical-from", type=Path, default=None,
                   help="take the RGB classical rows from this JSON of benchmarks/classical.py (it must have "
                        "measured the same photos) instead of measuring them again")
    p.add_argument("--gray-classical-from", type=Path, default=None,
                   help="the same for the gray classical rows (a JSON of benchmarks/classical.py --gray)")
    p.add_argument("--no-write", action="store_true",
                   help="a trial run: arcodec's rows only (no classical codecs), printed; benchmarks/results "
                        "stays as it is")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    from arcodec.imageio import read_image
    from arcodec.training.data import image_files, to_luma

    folder = args.photos or default_photos()
    try:
        files = image_files(folder)
    except FileNotFoundError as e:
        raise missing(f"the photo folder {folder}", e) from None
    files = files[: args.limit or (None if args.full else 4)]
    result = {"command": command(), "machine": machine(args.threads), "folder": _shown(Path(folder)),
              "photos": [f.name for f in files]}
    if args.only:  # the other part from the earlier run, which must have coded the same photos
        earlier = json.loads((RESULTS / "photos.json").read_text())
        if earlier["photos"] != result["photos"] or earlier["folder"] != result["folder"]:
            raise SystemExit("error: benchmarks/results/photos.json coded other photos; run both parts")
        other = "gray" if args.only == "rgb" else "rgb"
        if other in earlier:
            result[other] = {"command": earlier.get("command"), "machine": earlier.get("machine"),
                             **earlier[other]}
            flag = "--gray-classical-from" if other == "gray" else "--classical-from"
            words = (earlier.get("command") or "").split()
            if "classical_source" not in result[other] and flag in words:  # results written before this field
                source = Path(words[words.index(flag) + 1])
                result[other]["classical_source"] = (f"`{json.loads(source.read_text())['command']}`, "
                                                     f"the same photos, from `{source.name}`")
    for key, gray, model in (("rgb", False, args.model), ("gray", True, args.gray_model)):
        if (gray and args.no_gray) or (args.only and key != args.only):
            continue
        images = [read_image(f.read_bytes(), str(f)) for f in files]
        if gray:
            images = [to_luma(a) for a in images]
        ours = run_arcodec(files, gray, model, args.threads)
        source = args.gray_classical_from if gray else args.classical_from
        classical_source = None
        if args.no_write:
            classical = []
        elif source:
            earlier = json.loads(source.read_text())
            expected = f"the {len(files)} whole photos in `{_shown(Path(folder))}`"
            if gray:
                expected += ", turned to gray (round(0.299 R + 0.587 G + 0.114 B))"
            if earlier["images"] != expected:
                raise SystemExit(f"error: {source} measured {earlier['images']}, not these photos")
            keep = {"PNG (Pillow)", "WebP lossless", "JPEG XL lossless e7", "JPEG XL lossless e10", "JPEG-LS",
                    "JPEG 2000 lossless", "xz"}
            classical = [r for r in earlier["codecs"] if r["codec"] in keep]
            classical_source = f"`{earlier['command']}`, the same photos, from `{source.name}`"
        else:
            classical = classical_rows(images)
        result[key] = {"model": model, "photos": len(files), "arcodec": summary(ours), "per_photo": ours,
                       "classical": classical, "classical_source": classical_source}
    rows = [{"set": key, **r} for key in ("rgb", "gray") if key in result for r in result[key]["per_photo"]]
    md = [f"Whole photos of `{_shown(Path(folder))}` ({len(files)}), one .arc file each (header and CRC "
          f"included), {args.threads} threads; `{command()}`", ""]
    for key in ("rgb", "gray"):
        if key not in result:
            continue
        part = result[key]
        if part.get("command") and part["command"] != result["command"]:
            md += [f"({key.upper()} part measured earlier: `{part['command']}`)", ""]
        if part.get("classical_source"):
            md += [f"(classical rows: {part['classical_source']})", ""]
        s = part["arcodec"]
        table = [[f"**arcodec** ({part['model']})", f"**{s['bpd']:.4f}**", f"{s['nll_bpd']:.4f}",
                  f"{s['encode_s_per_photo']:.1f}", f"{s['decode_s_per_photo']:.1f}", f"{s['peak_rss_mib']:.0f}",
                  s["roundtrips"]]]
        for r in sorted(part["classical"], key=lambda r: r["bpd"]):
            table.append([r["codec"], f"{r['bpd']:.4f}", "", f"{1 / r['encode_img_s']:.2f}",
                          f"{1 / r['decode_img_s']:.3f}", "", r["roundtrips"]])
        md += [f"**{key.upper()}**", ""]
        md += md_table(["codec", "bits/sub-pixel (pooled)", "model NLL", "encode s/photo", "decode s/photo",
                        "peak MiB", "round trips"], table)
        md += [""]
    if args.no_write:
        print("\n".join(md))
        return
    write("photos", result, md, rows)
    figure(result, RESULTS / "photos_tradeoff.png")


if __name__ == "__main__":
    main()
