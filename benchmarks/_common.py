"""What the benchmark scripts share: the data sets they measure, which shipped model applies
to which, the machine's description, and writing results (JSON, CSV, Markdown).

Data sets (each a list of (H, W, C) uint8 images with a sentence saying exactly what it is):

* ``mnist``: the first N of the 10,000 MNIST test images (28x28 gray);
* ``colour-mnist``: the first N colour MNIST test images (28x28 RGB, 2 bits per channel);
* ``photos``: the centre crop (``crop`` x ``crop``) of every photo of a folder, by default
  the 24 Kodak photos in ``../shared/data/kodak``; ``crop=0`` keeps the whole photos;
* any other registered data set a model card names (its test split).

A model applies to a data set when the data's values span exactly the model's levels (an
8-bit model codes 8-bit data; coding 2-bit colour with an 8-bit model is valid but
meaningless) and the channels fit (a one-channel model codes colour plane by plane).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    from arcodec.training.data import DEFAULT_ROOT

    return Path(DEFAULT_ROOT)


def default_photos() -> Path:
    return data_root() / "kodak"


def missing(what: str, err: Exception | str) -> SystemExit:
    """The one clear message for data that is not where the benchmarks look."""
    return SystemExit(f"error: {what} is missing ({err}); the benchmarks read ../shared/data beside the "
                      f"checkout (or $ARCODEC_DATA): see ../shared/README.md")


def load_set(name: str, limit: int = 0, photos: Path | None = None, crop: int = 64
             ) -> tuple[list[np.ndarray], str]:
    """(images (H, W, C) uint8, a sentence saying exactly which images) of a data set."""
    from arcodec.training.data import image_files
    from arcodec.evaluation.evaluate import evaluation_images
    from arcodec.imageio import read_image

    if name == "photos":
        folder = Path(photos or default_photos())
        try:
            files = image_files(folder)[: limit or None]
        except FileNotFoundError as e:
            raise missing(f"the photo folder {folder}", e) from None
        out = []
        for p in files:
            a = read_image(p.read_bytes(), str(p))
            if crop:
                h, w = a.shape[:2]
                if h < crop or w < crop:
                    raise SystemExit(f"error: {p} is {h}x{w}, smaller than the crop {crop}")
                y, x = (h - crop) // 2, (w - crop) // 2
                a = np.ascontiguousarray(a[y: y + crop, x: x + crop])
            out.append(a)
        shape = "x".join(map(str, out[0].shape))
        what = (f"the centre {crop}x{crop} crop of each of the {len(out)} photos in `{_shown(folder)}` ({shape})"
                if crop else f"the {len(out)} whole photos in `{_shown(folder)}`")
        return out, what
    try:
        images, _ = evaluation_images(name, "test", limit)
    except FileNotFoundError as e:
        raise missing(f"data set {name!r}", e) from None
    shape = "x".join(map(str, images[0].shape))
    return images, f"the first {len(images)} {name} test images ({shape})"


def _shown(folder: Path) -> str:
    """A folder as a path relative to the checkout's parent when it lies there (no user paths)."""
    try:
        return str(Path("..") / folder.resolve().relative_to(ROOT.parent))
    except ValueError:
        return str(folder)


def set_levels(name: str) -> int:
    from arcodec.training.data import dataset_levels

    return 256 if name == "photos" else dataset_levels(name)


def native_data(card: dict) -> str | None:
    """The data set a card says its model was made for (its evaluation's, else its training's)."""
    return card.get("data") or card.get("train_config", {}).get("data")


def coder_refusal(name: str) -> str | None:
    """Why shipped model ``name`` cannot code images at all (e.g. a continuous flow), or None."""
    from arcodec.codec.api import resolve
    from arcodec.errors import ArcodecError

    try:
        resolve(name)
    except ArcodecError as e:
        return str(e)
    return None


def applies(levels: int, channels: int, name: str) -> bool:
    """Whether a model of ``levels`` values and ``channels`` channels codes data set ``name``
    meaningfully."""
    from arcodec.training.data import DATASETS

    if set_levels(name) != levels:
        return False
    if channels == 1:
        return True
    if name == "photos" or name.startswith("folder:"):  # colour photos (crops)
        return channels == 3
    if name in DATASETS:
        return (3 if name in ("colour-mnist", "cifar10") else 1) == channels
    return False


def plan(sets: list[str]) -> list[tuple[dict, str]]:
    """(model card, data set) pairs to benchmark: every shipped model that can code on every
    data set in ``sets`` it applies to, plus the data set its card names. A model that
    cannot code at all is left out with a printed note; a superseded one, and one chosen by
    name only (no applies rule: the smaller digit models, which benchmarks/frontier.py
    measures), silently."""
    from arcodec.zoo import cards, load_model

    out = []
    for card in cards():
        if card.get("superseded_by") or "applies" not in card:  # never picked by auto
            continue
        why = coder_refusal(card["name"])
        if why:
            print(f"note: {card['name']} is not benchmarked: {why}", file=sys.stderr)
            continue
        m = load_model(card["name"])
        own = native_data(card)
        names = list(sets) + ([own] if own and own not in sets else [])
        out += [(card, s) for s in names if applies(m.levels, m.channels, s)]
    return out


def machine(threads: int | None = None) -> dict:
    """What the numbers were measured on."""
    import torch

    import arcodec

    return {"cpu": _cpu_name(), "cpus": os.cpu_count(), "torch_threads": threads or torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "arcodec": arcodec.__version__,
            "device": "cpu", "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_avg_1min": round(os.getloadavg()[0], 2)}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def command() -> str:
    """The command line that ran this script, as a user would type it."""
    return " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def md_table(header: list[str], rows: list[list]) -> list[str]:
    fmt = [" | ".join(str(c) for c in r) for r in [header, ["---"] * len(header), *rows]]
    return [f"| {line} |" for line in fmt]


def write(name: str, result: dict, markdown: list[str], rows: list[dict] | None = None) -> None:
    """benchmarks/results/NAME.json (+ NAME.csv of ``rows``) and NAME.md; prints the table."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if rows:
        write_rows(RESULTS / f"{name}.csv", rows)
    (RESULTS / f"{name}.md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))


def write_rows(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    path.write_text(buf.getvalue())


def bpd(total_bytes: float, dims: int) -> float:
    return 8.0 * total_bytes / dims


def counting_torch_ops():
    """A context that counts the torch operations dispatched inside it (its ``ops``): the
    decoders' per-pixel overhead, which the benchmarks of the engines report."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            return func(*args, **(kwargs or {}))
    return Count()


def file_safe(name: str) -> str:
    """A data set's name as part of a file name: a folder set is named by its path."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")

