"""What the wavefront coder's offsets give (engine 1: one log-scale offset a channel; engine 2:
a logit and a log-scale offset a mixture component; engine 3: those of each region of 64
rows and 256 columns; engine 4: engine 2's for the photo, corrected region by region; engine 5: engine 4 with
each region's corrections coded from the region above's), on photos the models never trained on and Kodak never saw: the
held-out photos of ``../shared/data/photos``.

    python benchmarks/scale_offsets.py                  # photo-rgb, the 10 held-out photos
    python benchmarks/scale_offsets.py --model photo-gray --limit 4
    python benchmarks/scale_offsets.py --codecs "JPEG XL lossless e7" "WebP lossless"  # WebP: ~1 min a photo

Beside them, classical codecs on the same photos (JPEG XL e7 by default,
``benchmarks/classical.py``'s settings): how the model fares on photos like the ones it
learnt from, to set beside Kodak (``benchmarks/photos.py``), which is unlike them.

Each held-out photo (the validation and test splits of ``arcodec.training.data``'s folder
split: 5 + 5 of the 49) is coded whole, as one stream, six times with the same weights:
engine 0 (no offsets), engine 1 (``arcodec.codec.wavefront.choose_scale_offsets``), engine 2
(``choose_mixture_offsets``), engine 3 (``_region_jobs``), engine 4 and engine 5, what the encoder
writes (all three). All are real payloads (the offsets' bytes included); every engine-4 payload
is decoded and compared with the photo.
Writes benchmarks/results/scale_offsets.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import command, machine, md_table, missing, write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="photo-rgb")
    p.add_argument("--limit", type=int, default=0, help="the first N held-out photos (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--codecs", nargs="*", default=["JPEG XL lossless e7"],
                   help="classical codecs (benchmarks/classical.py names) to code the same photos")
    args = p.parse_args()

    from arcodec.codec import wavefront
    from arcodec.imageio import read_image
    from arcodec.training.data import DEFAULT_ROOT, _split, image_files, to_luma
    from arcodec.zoo import load_model
    from classical import available

    try:
        codecs, _ = available(args.codecs)
    except ValueError as e:
        p.error(str(e))

    torch.set_num_threads(args.threads)
    m = load_model(args.model)
    net = m.net
    try:
        files = image_files(f"{DEFAULT_ROOT}/photos")
    except FileNotFoundError as e:
        raise missing("the photo folder", e) from None
    split = _split(len(files), (0.8, 0.1))
    held = sorted(split["val"].tolist() + split["test"].tolist())[: args.limit or None]
    engines = (0, 1, 2, 3, 4, 5)
    new, old = engines[-1], engines[-2]
    rows, records, sums = [], [], np.zeros(1 + len(engines) + len(codecs))
    for i in held:
        img = read_image(files[i].read_bytes(), str(files[i]))
        if net.config.channels == 1 and img.shape[2] != 1:
            img = to_luma(img)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].long()
        n = x.numel()
        payloads, seconds = [], []
        for engine in engines:
            t = time.perf_counter()
            payloads.append(wavefront.encode_streams(net, x, [1], adapt=engine)[0][0])
            seconds.append(time.perf_counter() - t)
        back = wavefront.decode_streams(net, [payloads[-1]], [1], x.shape[1], x.shape[2], x.shape[3], adapt=new)
        ok = bool(np.array_equal(back, x.numpy()))
        bpsp = [8 * len(p) / n for p in payloads]
        rec = {"photo": files[i].name, "subpixels": n, **{f"engine{e}_bpsp": b for e, b in enumerate(bpsp)},
               **{f"encode{e}_s": t for e, t in enumerate(seconds)}, "roundtrip": ok}
        classical = []
        for c in codecs:
            data = bytes(c.encode(img))
            if not np.array_equal(c.decode(data, img.shape), img):
                raise SystemExit(f"{c.name} did not round-trip {files[i].name}")
            classical.append(8 * len(data))
        rec["classical_bpsp"] = {c.name: b / n for c, b in zip(codecs, classical)}
        records.append(rec)
        sums += [n, *(8 * len(p) for p in payloads), *classical]
        rows.append([rec["photo"], f"{img.shape[1]}x{img.shape[0]}", *(f"{b:.4f}" for b in bpsp),
                     f"{100 * (bpsp[-1] / bpsp[-2] - 1):+.2f} %", f"{100 * (bpsp[-1] / bpsp[0] - 1):+.2f} %",
                     f"{seconds[-2]:.1f} / {seconds[-1]:.1f}", "ok" if ok else "FAILED",
                     *(f"{b / n:.4f}" for b in classical)])
        print(" | ".join(rows[-1]), flush=True)
    pooled = sums[1: 1 + len(engines)] / sums[0]
    trips = f"{sum(r['roundtrip'] for r in records)}/{len(records)}"
    pooled_classical = {c.name: b / sums[0] for c, b in zip(codecs, sums[1 + len(engines):])}
    rows.append(["**pooled**", "", *(f"**{v:.4f}**" for v in pooled), f"**{100 * (pooled[-1] / pooled[-2] - 1):+.2f} %**",
                 f"**{100 * (pooled[-1] / pooled[0] - 1):+.2f} %**", "", trips,
                 *(f"**{v:.4f}**" for v in pooled_classical.values())])
    res = {"command": command(), "machine": machine(args.threads), "model": m.name, "photos": records,
           **{f"pooled_engine{e}_bpsp": v for e, v in enumerate(pooled)},
           "pooled_classical_bpsp": pooled_classical,
           "classical_settings": {c.name: c.settings for c in codecs}}
    md = [f"`{command()}`: model `{m.name}`, the {len(records)} held-out photos of `../shared/data/photos` "
          "(validation and test splits, never trained on), each whole as one stream; bits per sub-pixel of the "
          "real payloads, the same weights" + ("; the classical codecs' columns: their whole files" if codecs else ""), ""]
    md += md_table(["photo", "size", "engine 0 (no offsets)", "engine 1 (scale offsets)", "engine 2 (mixture offsets)",
                    "engine 3 (each region's)", "engine 4 (the photo's, corrected by region)",
                    "engine 5 (corrections coded from the region above's)", f"engine {new} against {old}", f"engine {new} against 0",
                    f"encode s (engine {old} / {new})", f"round trip (engine {new})", *(c.name for c in codecs)], rows)
    for name, v in pooled_classical.items():
        md += ["", f"{m.name} (engine {new}) against {name} on these photos: {100 * (pooled[-1] / v - 1):+.2f} % "
                   f"({pooled[-1]:.4f} against {v:.4f} bits/sub-pixel)."]
    write("scale_offsets", res, md)


if __name__ == "__main__":
    main()
