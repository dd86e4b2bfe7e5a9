"""``make run``: compress the bundled samples with the shipped model, decompress them,
verify they are identical, and print a size table."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def run(model: str | None = None, echo=print) -> list[dict]:
    from arcodec.codec.api import decode_file, encode_images, resolve
    from arcodec.imageio import read_image

    m = resolve(model)
    files = sorted(SAMPLES.glob("*.png"))
    images = [read_image(p.read_bytes(), p.name) for p in files]
    rows = []
    echo(f"model {m.name} (id {m.model_id}, sha256 {m.sha256[:12]}..., verified)\n")
    head = f"{'image':<22}{'shape':>10}{'PNG B':>8}{'.arc B':>8}{'arc bpd':>9}{'NLL bpd':>9}{'enc s':>7}{'dec s':>7}  round trip"
    echo(head)
    echo("-" * len(head))
    for p, a in zip(files, images):
        enc = encode_images([a], model=m)
        t = time.perf_counter()
        _, (out,) = decode_file(enc.data, model=m)
        dec_s = time.perf_counter() - t
        ok = bool(np.array_equal(out, a))
        row = {"image": p.name, "shape": "x".join(map(str, a.shape[:2])), "png_bytes": p.stat().st_size,
               "arc_bytes": len(enc.data), "arc_bpd": 8 * len(enc.data) / a.size,
               "nll_bpd": enc.nll_bits / a.size, "enc_s": enc.seconds, "dec_s": dec_s, "ok": ok}
        rows.append(row)
        echo(f"{row['image']:<22}{row['shape']:>10}{row['png_bytes']:>8}{row['arc_bytes']:>8}"
             f"{row['arc_bpd']:>9.3f}{row['nll_bpd']:>9.3f}{row['enc_s']:>7.2f}{dec_s:>7.2f}  "
             f"{'identical' if ok else 'MISMATCH'}")
    enc = encode_images(images, [p.name for p in files], model=m)
    t = time.perf_counter()
    _, outs = decode_file(enc.data, model=m)
    dec_s = time.perf_counter() - t
    ok = all(np.array_equal(o, a) for o, a in zip(outs, images))
    n = sum(a.size for a in images)
    png = sum(p.stat().st_size for p in files)
    echo("-" * len(head))
    echo(f"{'archive of all':<22}{len(images):>10}{png:>8}{len(enc.data):>8}{8 * len(enc.data) / n:>9.3f}"
         f"{enc.nll_bits / n:>9.3f}{enc.seconds:>7.2f}{dec_s:>7.2f}  {'identical' if ok else 'MISMATCH'}")
    rows.append({"image": "archive", "arc_bytes": len(enc.data), "ok": ok})
    if not all(r["ok"] for r in rows):
        raise SystemExit("round trip FAILED")
    echo(f"\nall {len(images)} images restored bit for bit; PNG total {png} B, "
         f"arcodec {sum(r['arc_bytes'] for r in rows[:-1])} B one file each, {len(enc.data)} B as one archive")
    return rows
