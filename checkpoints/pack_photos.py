"""Pack ../shared/data/photos small enough to travel to a GPU machine with the checkout.

    python checkpoints/pack_photos.py OUT [--megabytes 50]

The GPU machine takes 64 MiB of working tree in all, and the 49 photos are 84 MB of PNG.
This writes a folder OUT with the same 49 file names, so that ``folder:OUT`` splits them
exactly as ``folder:../shared/data/photos`` does (arcodec/training/data.py):

* the 5 validation photos unchanged (the validation crops are the same ones, so the
  validation NLL of a run on OUT compares with a run on the photos);
* each of the 39 training photos cut to its centred rectangle of the same aspect ratio and a
  fraction of its area, the fraction chosen so that the training photos take ``--megabytes``
  of PNG (the fraction is printed; the training crops are then cut from these);
* the 5 test photos as 64x64 corners (no run reads the test split; the names hold the order).

Kodak is not read. The run's model card records the fraction.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from arcodec.training.data import _split, image_files  # noqa: E402

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def centred(img: np.ndarray, fraction: float) -> np.ndarray:
    h, w = img.shape[:2]
    s = fraction ** 0.5
    ch, cw = max(64, round(h * s)), max(64, round(w * s))
    y, x = (h - ch) // 2, (w - cw) // 2
    return img[y: y + ch, x: x + cw]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--megabytes", type=float, default=50.0, help="PNG size of the cut training photos")
    ap.add_argument("--source", default=str(SOURCE))
    a = ap.parse_args()
    files = image_files(a.source)
    split = _split(len(files), (0.8, 0.1))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in split["val"]:
        (out / files[i].name).write_bytes(files[i].read_bytes())
    for i in split["test"]:
        (out / files[i].name).write_bytes(png(np.asarray(Image.open(files[i]).convert("RGB"))[:64, :64]))
    train = [np.asarray(Image.open(files[i]).convert("RGB")) for i in sorted(split["train"])]
    full = sum(len(png(t)) for t in train)
    fraction = min(1.0, a.megabytes * 1e6 / full)
    for _ in range(3):  # PNG size is close to proportional to the area: correct the guess twice
        size = sum(len(png(centred(t, fraction))) for t in train)
        fraction = min(1.0, fraction * a.megabytes * 1e6 / size)
    size = 0
    for i, t in zip(sorted(split["train"]), train):
        data = png(centred(t, fraction))
        (out / files[i].name).write_bytes(data)
        size += len(data)
    pixels = sum(t.shape[0] * t.shape[1] for t in train)
    print(f"training photos: {len(train)}, {full / 1e6:.1f} MB of PNG whole; cut to {fraction:.3f} of their area "
          f"({fraction * pixels / 1e6:.1f} of {pixels / 1e6:.1f} megapixels), {size / 1e6:.1f} MB; "
          f"validation photos {len(split['val'])} whole")


if __name__ == "__main__":
    main()
