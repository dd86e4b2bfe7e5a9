"""Evaluation: NLL bits/dim next to the real size of real files."""

from __future__ import annotations

import time

import torch

from arcodec.models.heads import nll_bits
from arcodec.models.layers import float_copy
from arcodec.training.data import load_dataset
from arcodec.training.train import evaluate_nll


def test_nll(name: str, data: str, data_root: str | None = None) -> dict:
    """Test NLL of a zoo model in float and in exact (codec) arithmetic, for its card. The
    float NLL comes from a float copy: the zoo's cached exact model is never switched."""
    from arcodec.zoo import load_model

    from arcodec.codec.api import coder_of

    m = load_model(name)
    x = load_dataset(data, "test", data_root)
    t = time.perf_counter()
    network = coder_of(m).network  # an integer engine, for the models that code with one
    exact = evaluate_nll(m.net, x) if network is None else engine_nll(network(m.net), x)
    flt = evaluate_nll(float_copy(m.net), x)
    return {"data": data, "test_images": len(x), "test_nll_bpd": round(exact, 5),
            "test_nll_bpd_float": round(flt, 5), "eval_seconds": round(time.perf_counter() - t, 1)}


@torch.no_grad()
def engine_nll(network, data: torch.Tensor, batch: int = 256) -> float:
    """Mean NLL in bits/dim on ``data`` (N, C, H, W) of the logits an integer engine codes with."""
    total = sum(float(nll_bits(network(data[i: i + batch].long()), data[i: i + batch].long()).sum())
                for i in range(0, len(data), batch))
    return total / data.numel()


RECORD_FIELDS = ("index", "name", "height", "width", "channels", "nll_bpd", "file_bpd", "file_bytes",
                 "overhead_pct", "encode_s", "decode_s", "roundtrip_ok")


def evaluation_images(data: str, split: str = "test", limit: int = 0, data_root: str | None = None
                      ) -> tuple[list, list[str]]:
    """(images (H, W, C) uint8, names) from a data set's split or every image of a folder."""
    from pathlib import Path

    import numpy as np

    from arcodec.training.data import image_files
    from arcodec.imageio import read_image

    if Path(data).is_dir():
        files = image_files(data)[: limit or None]
        return [read_image(p.read_bytes(), str(p)) for p in files], [str(p.relative_to(data)) for p in files]
    x = load_dataset(data, split, data_root)[: limit or None]
    images = list(np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy()))
    return images, [f"{data}/{split}/{i}" for i in range(len(images))]


def evaluate_codec(model, images: list, names: list[str] | None = None, batch: int | None = None,
                   progress=None) -> list[dict]:
    """Per-image records: NLL bits/dim next to the real file's bits/dim (header and CRC
    included), overhead, encode/decode seconds and whether the round trip was exact.

    Each image becomes its own .arc file; files are coded ``batch`` tiles at a time
    (default: :data:`arcodec.codec.api.MAX_BATCH`), and the seconds of a batch are shared out
    equally among its images (``batch=1`` times every image alone)."""
    import numpy as np

    from arcodec.codec.api import MAX_BATCH, decode_many, encode_many, resolve
    from arcodec.errors import ArcodecError

    m = resolve(model)
    batch = batch or MAX_BATCH
    names = names or [str(i) for i in range(len(images))]
    records = []
    for start in range(0, len(images), batch):
        chunk = images[start: start + batch]
        t = time.perf_counter()
        encs = encode_many(chunk, model=m, max_tiles=batch)
        enc_s = (time.perf_counter() - t) / len(chunk)
        t = time.perf_counter()
        try:
            outs = [imgs[0] for _, imgs in decode_many([e.data for e in encs], model=m, max_tiles=batch)]
        except ArcodecError:  # find which file fails
            outs = []
            for e in encs:
                try:
                    outs.append(decode_many([e.data], model=m)[0][1][0])
                except ArcodecError:
                    outs.append(None)
        dec_s = (time.perf_counter() - t) / len(chunk)
        for i, (a, e, out) in enumerate(zip(chunk, encs, outs)):
            a = a if a.ndim == 3 else a[:, :, None]
            bits = 8 * len(e.data)
            records.append({
                "index": start + i, "name": names[start + i],
                "height": a.shape[0], "width": a.shape[1], "channels": a.shape[2],
                "nll_bpd": e.nll_bits / e.subpixels, "file_bpd": bits / e.subpixels, "file_bytes": len(e.data),
                "overhead_pct": 100.0 * (bits - e.nll_bits) / max(e.nll_bits, 1e-9),
                "encode_s": enc_s, "decode_s": dec_s,
                "roundtrip_ok": out is not None and np.array_equal(out, a),
            })
        if progress is not None:
            progress(len(chunk))
    return records


def summarize(records: list[dict]) -> dict:
    """Totals over records: bits/dim weighted by sub-pixels (the set's bits over its dims)."""
    dims = sum(r["height"] * r["width"] * r["channels"] for r in records)
    nll_bits = sum(r["nll_bpd"] * r["height"] * r["width"] * r["channels"] for r in records)
    file_bits = sum(8 * r["file_bytes"] for r in records)
    enc = sum(r["encode_s"] for r in records)
    dec = sum(r["decode_s"] for r in records)
    return {
        "images": len(records),
        "nll_bpd": nll_bits / dims,
        "file_bpd": file_bits / dims,
        "overhead_pct": 100.0 * (file_bits - nll_bits) / max(nll_bits, 1e-9),
        "overhead_bytes_per_file": (file_bits - nll_bits) / 8 / len(records),
        "encode_img_s": len(records) / max(enc, 1e-9),
        "decode_img_s": len(records) / max(dec, 1e-9),
        "roundtrips_ok": sum(bool(r["roundtrip_ok"]) for r in records),
    }


def write_csv(records: list[dict], path) -> None:
    import csv
    import io

    from arcodec.imageio import write_atomic

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RECORD_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_atomic(path, buf.getvalue().encode(), force=True)
