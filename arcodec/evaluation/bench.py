"""``arcodec bench``: will arcodec make *my* images smaller?

A sample of the images of a folder, each compressed on its own (one file per image, as
``arcodec compress`` writes them) by: arcodec auto (what ``compress`` writes: the smallest of
every applicable shipped model and the stored pixels), every shipped model that applies to
the image, and the classical lossless formats PNG (Pillow), WebP lossless and JPEG XL
lossless (imagecodecs; a codec missing from this build is skipped with a note). Every file
is decoded and compared with the image it came from.

Per method: bits per sub-pixel pooled over the images it coded (file bytes, headers
included, over H x W x C of those images), its size against arcodec auto's on the same
images, encode and decode seconds per image (each image alone, after a warm-up), and the
round trips. :func:`run_bench` returns all of it as plain data (JSON-ready);
:func:`write_results` writes ``bench.md``, ``bench.json`` and ``bench.png``.
"""

from __future__ import annotations

import io
import json
import os
import platform
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from arcodec.errors import ArcodecError

AUTO = "arcodec auto"
DEFAULT_LIMIT = 20
OUTPUTS = ("bench.md", "bench.json", "bench.png")
WARMUP_SIDE = 8  # the warm-up crop: lazy set-up (model loading, first calls) stays out of the timings

Report = Callable[[float], None]  # called with the sub-pixels just coded


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "arcodec" or "classical"
    settings: str  # the exact call, recorded in the results
    encode: Callable[[np.ndarray, Report], bytes]  # (H, W, C) uint8 -> file bytes
    decode: Callable[[bytes, tuple, Report], np.ndarray]  # (bytes, shape) -> (H, W, C) uint8


# ---------------------------------------------------------------- the methods

def _arcodec_encode(model: str | None) -> Callable[[np.ndarray, Report], bytes]:
    def encode(a: np.ndarray, report: Report) -> bytes:
        from arcodec.codec.api import encode_images

        return encode_images([a], model=model, progress=report).data
    return encode


def _arcodec_decode(data: bytes, shape: tuple, report: Report) -> np.ndarray:
    from arcodec.codec.api import decode_file

    return decode_file(data, progress=report)[1][0]  # the model named in the header, as `decompress`


def arcodec_methods(models: list[str]) -> list[Method]:
    """arcodec auto, then one method per shipped model name."""
    auto = Method(AUTO, "arcodec", "encode_images([image]) (model auto: every applicable shipped model, directly "
                  "or through a level map, and the stored pixels; the smallest file wins: what "
                  "arcodec compress writes)", _arcodec_encode(None), _arcodec_decode)
    return [auto] + [Method(f"arcodec {n}", "arcodec", f"encode_images([image], model={n!r})", _arcodec_encode(n),
                            _arcodec_decode) for n in models]


def _plain(a: np.ndarray) -> np.ndarray:
    """(H, W, 1) -> (H, W): the array a gray image is handed to the codecs as."""
    return a[:, :, 0] if a.shape[2] == 1 else a


def _colour(a: np.ndarray) -> np.ndarray:
    """Gray -> RGB, gray+alpha -> RGBA (gray repeated): WebP stores colour only."""
    if a.shape[2] in (1, 2):
        a = np.concatenate([a[:, :, :1]] * 3 + [a[:, :, 1:]], axis=2)
    return np.ascontiguousarray(a)


def _restore(b, shape: tuple) -> np.ndarray:
    """A decoded array back in the channels of the original: formats give gray back as RGB
    (WebP) and drop an alpha channel that is all 255 (WebP). Anything else is returned as it
    is, and the comparison fails."""
    b = np.asarray(b)
    b = b[:, :, None] if b.ndim == 2 else b
    c = shape[2]
    if b.ndim != 3 or b.shape[2] == c or b.shape[2] not in (3, 4):
        return b
    rgb = b[:, :, :3]
    if c in (1, 2):
        if not (rgb == rgb[:, :, :1]).all():
            return b
        rgb = rgb[:, :, :1]
    if c in (2, 4):
        alpha = b[:, :, 3:] if b.shape[2] == 4 else np.full(b.shape[:2] + (1,), 255, np.uint8)
        return np.concatenate([rgb, alpha], axis=2)
    return rgb if b.shape[2] == 3 or (b[:, :, 3] == 255).all() else b


def _pil_png(a: np.ndarray, report: Report) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_plain(a)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _pil_decode(data: bytes, shape: tuple, report: Report) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return _restore(np.asarray(im), shape)


def _webp(a: np.ndarray, report: Report) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.webp_encode(_colour(a), lossless=True, method=6, level=100, numthreads=1))


def _webp_decode(data: bytes, shape: tuple, report: Report) -> np.ndarray:
    import imagecodecs

    return _restore(imagecodecs.webp_decode(data), shape)


def _jxl(a: np.ndarray, report: Report) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.jpegxl_encode(_plain(a), lossless=True, effort=7, numthreads=1))


def _jxl_decode(data: bytes, shape: tuple, report: Report) -> np.ndarray:
    import imagecodecs

    return _restore(imagecodecs.jpegxl_decode(data, numthreads=1), shape)


def classical_methods(note: Callable[[str], None] = lambda s: None) -> tuple[list[Method], dict[str, str]]:
    """The classical codecs that work here (each tried on a small gray, gray+alpha, RGB and
    RGBA image), and the reason for each that does not (also passed to ``note``)."""
    out = [Method("PNG (Pillow)", "classical", "PIL.Image.save(format='PNG', optimize=True)", _pil_png, _pil_decode)]
    missing: dict[str, str] = {}
    ic_methods = [
        Method("WebP lossless", "classical", "imagecodecs.webp_encode(lossless=True, method=6, level=100, "
               "numthreads=1); gray stored as RGB", _webp, _webp_decode),
        Method("JPEG XL lossless e7", "classical", "imagecodecs.jpegxl_encode(lossless=True, effort=7, "
               "numthreads=1)", _jxl, _jxl_decode),
    ]
    try:
        import imagecodecs  # noqa: F401

        out += ic_methods
    except ImportError:
        for m in ic_methods:
            missing[m.name] = "imagecodecs is not installed (pip install imagecodecs)"
    rng = np.random.default_rng(0)
    probes = [rng.integers(0, 256, (16, 16, c), dtype=np.uint8) for c in (1, 2, 3, 4)]
    ok = []
    for m in out:
        try:
            for a in probes:
                if not np.array_equal(m.decode(m.encode(a, _ignore), a.shape, _ignore), a):
                    raise RuntimeError("its round trip is not exact")
            ok.append(m)
        except Exception as e:  # missing from this build, or not lossless here: say so, go on
            missing[m.name] = f"{e.__class__.__name__}: {e}"
    for name, why in missing.items():
        note(f"{name} is skipped: {why}")
    return ok, missing


def _ignore(n: float) -> None:
    pass


# ---------------------------------------------------------------- the images

def sample(files: list, limit: int) -> list:
    """An evenly spaced sample of ``limit`` of the (sorted) files: the middle of each of
    ``limit`` equal stretches; all of them when limit is 0 or at least their number."""
    n = len(files)
    if not limit or limit >= n:
        return list(files)
    return [files[(2 * k + 1) * n // (2 * limit)] for k in range(limit)]


def _find(folder: Path, exclude: Path | None) -> list[Path]:
    from arcodec.training.data import image_files

    if not folder.exists():
        raise ArcodecError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ArcodecError(f"{folder} is not a folder")
    try:
        files = image_files(folder)
    except FileNotFoundError:
        files = []
    if exclude is not None:  # earlier results (bench.png) inside the folder are not the user's images
        ex = exclude.resolve()
        files = [p for p in files if not p.resolve().is_relative_to(ex)]
    if not files:
        raise ArcodecError(f"{folder}: no image files in it or below it")
    return files


def _read(path: Path, name: str) -> np.ndarray:
    from arcodec.codec import container
    from arcodec.imageio import read_image

    a = read_image(path.read_bytes(), name)
    h, w, c = a.shape
    if max(h, w) > container.MAX_SIDE or a.size > container.MAX_SUBPIXELS:
        raise ArcodecError(f"{name}: {h}x{w}x{c} is larger than an .arc file holds")
    return a


def _crop(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[:WARMUP_SIDE, :WARMUP_SIDE])


class _Share:
    """One step's progress: at most ``size`` sub-pixels whatever the codec reports, and the
    rest when the step ends (so the bar always reaches its total)."""

    def __init__(self, update: Report | None, size: int):
        self.update, self.size, self.done = update, size, 0.0

    def __call__(self, n: float) -> None:
        n = min(float(n), self.size - self.done)
        if n > 0 and self.update is not None:
            self.done += n
            self.update(n)

    def close(self) -> None:
        self(self.size - self.done)


def _measure(m: Method, a: np.ndarray, decoded: dict, update: Report | None) -> tuple[dict, bytes | None]:
    """Encode, decode and compare one image: ({bytes, encode_s, decode_s, ok, error}, the
    file (None when encoding failed)). ``decoded``: files already decoded, and how long it
    took; a file identical byte for byte to one of them is not decoded again."""
    rec = {"bytes": None, "encode_s": None, "decode_s": None, "ok": False, "error": None}
    share = _Share(update, a.size)
    try:
        t = time.perf_counter()
        data = bytes(m.encode(a, share))
        rec["encode_s"] = time.perf_counter() - t
        rec["bytes"] = len(data)
    except Exception as e:  # a failure is a result: reported, never hidden
        rec["error"] = f"encode failed: {e.__class__.__name__}: {e}"
        share.close()
        _Share(update, a.size).close()
        return rec, None
    share.close()
    share = _Share(update, a.size)
    key = (m.kind, data)  # a file identical to one already decoded decodes to the same pixels
    if key not in decoded:
        try:
            t = time.perf_counter()
            out = m.decode(data, a.shape, share)
            decoded[key] = (out, time.perf_counter() - t)
        except Exception as e:
            decoded[key] = (e, None)
    share.close()
    out, rec["decode_s"] = decoded[key]
    if isinstance(out, Exception):
        rec["error"] = f"decode failed: {out.__class__.__name__}: {out}"
    elif not np.array_equal(out, a):
        rec["error"] = (f"decoded pixels differ from the original (shape {tuple(np.shape(out))}"
                        f"{'' if np.shape(out) != a.shape else f', {int((out != a).sum())} sub-pixels differ'})")
    else:
        rec["ok"] = True
    return rec, data


def _auto_choice(data: bytes | None) -> str:
    """What arcodec auto wrote: a model's name (with a level map or not), or "stored"."""
    from arcodec.codec import container
    from arcodec.zoo import cards

    if data is None:
        return "failed"
    header = container.read(data)[0]
    if header.method != container.METHOD_MODEL:
        return "stored"
    name = next((c["name"] for c in cards() if c["id"] == header.model_id), f"model id {header.model_id}")
    return f"{name} (level map)" if header.levels else name


def run_bench(folder: str | Path, limit: int = DEFAULT_LIMIT, progress=None,
              note: Callable[[str], None] | None = None, exclude: str | Path | None = None) -> dict:
    """Measure every method on a sample of the folder's images; the results as plain data.

    ``limit``: that many files, evenly spaced over the sorted list (0: all of them).
    ``progress(total)``: a context manager with ``update(n)`` (a tqdm bar) over all the work,
    in sub-pixels encoded and decoded. ``note(text)``: each skipped file and missing codec,
    before the measuring starts (also kept in the results). ``exclude``: a folder whose files are not
    measured (the results' own folder). Unreadable files are skipped; no readable image at
    all is an :class:`ArcodecError`."""
    import torch

    from arcodec import __version__
    from arcodec.zoo import applicable, cards, load_model

    notes: list[str] = []

    def say(text: str) -> None:
        notes.append(text)
        if note is not None:
            note(text)

    folder = Path(folder)
    files = _find(folder, Path(exclude) if exclude is not None else None)
    picked = sample(files, limit)
    # first pass: which files read, their shapes and models (the pixels are read again one
    # image at a time, so a large sample never sits in memory at once)
    readable, skipped = [], []
    for p in picked:
        name = p.relative_to(folder).as_posix()
        try:
            a = _read(p, name)
        except Exception as e:  # a user's file: any failure to read it skips it
            why = str(e) if isinstance(e, ArcodecError) else f"{name}: not readable ({e.__class__.__name__}: {e})"
            skipped.append({"file": name, "reason": why})
            continue
        readable.append({"path": p, "file": name, "shape": a.shape, "models": applicable([a]),
                         "warmup": _crop(a) if not readable else None})
    if not readable:
        raise ArcodecError(f"{folder}: none of the {len(picked)} image file(s) sampled is readable "
                           f"(first: {skipped[0]['reason']})")
    for skip in skipped:
        say(f"skipped {skip['reason']}")

    rank = {c["name"]: (c.get("rank", 99), c["id"]) for c in cards()}
    models = sorted({n for r in readable for n in r["models"]}, key=lambda n: rank[n])
    classical, missing = classical_methods(say)
    methods = arcodec_methods(models) + classical
    for c in cards():  # load (and verify) every model auto may use before anything is timed
        if c.get("applies"):
            load_model(c["name"])
    crop = readable[0]["warmup"]
    crop_models = applicable([crop])
    for m in methods:
        if m.name == AUTO or m.kind == "classical" or m.name[len("arcodec "):] in crop_models:
            _measure(m, crop, {}, None)

    def applies(m: Method, r: dict) -> bool:
        return m.kind == "classical" or m.name == AUTO or m.name[len("arcodec "):] in r["models"]

    total = sum(2 * int(np.prod(r["shape"])) for r in readable for m in methods if applies(m, r))
    per_image = []
    with (progress(total) if progress is not None else nullcontext()) as bar:
        update = bar.update if bar is not None else None
        for r in readable:
            a = _read(r["path"], r["file"])
            if a.shape != r["shape"]:
                raise ArcodecError(f"{r['file']} changed while the benchmark ran")
            decoded: dict = {}
            recs, datas = {}, {}
            for m in methods[1:] + methods[:1]:  # the models first: auto's file is often one of theirs
                if applies(m, r):
                    recs[m.name], datas[m.name] = _measure(m, a, decoded, update)
            per_image.append({"file": r["file"], "shape": list(a.shape), "subpixels": int(a.size),
                              "auto_choice": _auto_choice(datas[AUTO]),
                              "results": {m.name: recs[m.name] for m in methods if m.name in recs}})
    rows = [_summarise(m, per_image) for m in methods]
    choices: dict[str, int] = {}
    for im in per_image:
        choices[im["auto_choice"]] = choices.get(im["auto_choice"], 0) + 1
    failures = [{"method": row["method"], **f} for row in rows for f in row["failures"]]
    return {
        "arcodec_version": __version__,
        "folder": str(folder),
        "files_found": len(files),
        "limit": limit,
        "sampled": len(picked),
        "images": len(per_image),
        "subpixels": sum(im["subpixels"] for im in per_image),
        "skipped": skipped,
        "unavailable": missing,
        "methods": rows,
        "auto_choices": choices,
        "roundtrip_failures": failures,
        "notes": notes,
        "per_image": per_image,
        "machine": {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
    }


def _mean(values: list) -> float | None:
    return float(np.mean(values)) if values else None


def _summarise(m: Method, per_image: list[dict]) -> dict:
    """One method's row: pooled bits per sub-pixel over the images it coded, its size against
    auto's on the same images, mean seconds per image, round trips and their failures."""
    got = [(im, im["results"][m.name]) for im in per_image if m.name in im["results"]]
    coded = [(im, r) for im, r in got if r["bytes"] is not None]
    subpixels = sum(im["subpixels"] for im, _ in coded)
    size = sum(r["bytes"] for _, r in coded)
    both = [(im, r) for im, r in coded if im["results"][AUTO]["bytes"] is not None]
    auto_size = sum(im["results"][AUTO]["bytes"] for im, _ in both)
    return {
        "method": m.name,
        "kind": m.kind,
        "settings": m.settings,
        "images": len(got),  # the images it applies to
        "images_coded": len(coded),  # ... and encoded without an error
        "subpixels": subpixels,
        "bytes": size,
        "bpd": 8 * size / subpixels if subpixels else None,
        # its bytes over auto's on the same images, minus 1: +0.25 means a quarter larger than auto
        "vs_auto": sum(r["bytes"] for _, r in both) / auto_size - 1 if auto_size else None,
        "encode_s": _mean([r["encode_s"] for _, r in coded]),
        "decode_s": _mean([r["decode_s"] for _, r in coded if r["decode_s"] is not None]),
        "roundtrips_ok": sum(r["ok"] for _, r in got),
        "roundtrips": len(got),
        "failures": [{"file": im["file"], "error": r["error"]} for im, r in got if not r["ok"]],
    }


# ---------------------------------------------------------------- reporting

HEAD = ("method", "images", "bits/sub-px", "vs auto", "encode s/img", "decode s/img", "round trips")


def _seconds(s: float | None) -> str:
    return "-" if s is None else f"{s:.0f}" if s >= 100 else f"{s:.3g}"


def table_rows(res: dict) -> list[tuple[str, ...]]:
    """The table's cells, one tuple per method (columns as ``HEAD``)."""
    out = []
    for r in res["methods"]:
        ok = r["roundtrips_ok"] == r["roundtrips"]
        out.append((r["method"], f"{r['images']}/{res['images']}", "-" if r["bpd"] is None else f"{r['bpd']:.4f}",
                    "-" if r["method"] == AUTO or r["vs_auto"] is None else f"{100 * r['vs_auto']:+.1f}%",
                    _seconds(r["encode_s"]), _seconds(r["decode_s"]),
                    f"{r['roundtrips_ok']}/{r['roundtrips']} {'ok' if ok else 'FAILED'}"))
    return out


def text_table(res: dict) -> list[str]:
    rows = [HEAD] + table_rows(res)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    return ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def verdict(res: dict) -> list[str]:
    """The answer in sentences: auto's size, against the best classical codec on the same
    images, what auto chose, and any failed round trip."""
    rows = {r["method"]: r for r in res["methods"]}
    auto = rows[AUTO]
    lines = []
    if auto["bpd"] is not None:
        lines.append(f"arcodec auto: {auto['bpd']:.4f} bits per sub-pixel over {auto['images_coded']} image(s) "
                     f"({auto['subpixels']} sub-pixels, headers included).")
    classical = [r for r in res["methods"] if r["kind"] == "classical" and r["vs_auto"] is not None]
    if classical:
        best = min(classical, key=lambda r: r["vs_auto"])
        rel = 1 / (1 + best["vs_auto"]) - 1  # auto's bytes over the best classical codec's, minus 1
        both = best["images_coded"]
        same = "" if both == auto["images_coded"] else f" on the {both} images both coded"
        if rel < 0:
            lines.append(f"Smaller: arcodec auto's files are {-rel:.1%} smaller than {best['method']}'s "
                         f"(the best classical codec here){same}.")
        else:
            lines.append(f"Not smaller: arcodec auto's files are {rel:.1%} larger than {best['method']}'s "
                         f"(the best classical codec here){same}.")
    chosen = ", ".join(f"{'the stored pixels' if k == 'stored' else k} for {n}"
                       for k, n in sorted(res["auto_choices"].items(), key=lambda kv: -kv[1]))
    lines.append(f"arcodec auto chose: {chosen}.")
    if set(res["auto_choices"]) == {"stored"}:
        lines.append("No shipped model applies to these images or makes them smaller than their stored "
                     "pixels (see `arcodec models`).")
    if res["roundtrip_failures"]:
        lines.append(f"ROUND TRIP FAILED {len(res['roundtrip_failures'])} time(s): "
                     + "; ".join(f"{f['method']} on {f['file']}: {f['error']}" for f in res["roundtrip_failures"]))
    return lines


def markdown(res: dict) -> str:
    n = res["images"]
    lines = [f"# arcodec bench: {n} image(s) from `{res['folder']}`", ""]
    if res["roundtrip_failures"]:
        lines += [f"**ROUND TRIP FAILURES: {len(res['roundtrip_failures'])}** (listed below)", ""]
    lines += verdict(res) + [""]
    lines += [f"Each image in its own file (as `arcodec compress` writes them), encoded and decoded alone and "
              f"decoded files compared with the originals; bits per sub-pixel pooled over the images a method "
              f"coded (file bytes, headers included, over H x W x C); \"vs auto\" is a method's bytes against "
              f"arcodec auto's on the same images. Sampled {res['sampled']} of the {res['files_found']} image "
              f"files (limit {res['limit'] or 'none'}); arcodec {res['arcodec_version']}; "
              f"{res['machine']['cpu']}, {res['machine']['cpus']} CPUs, torch threads "
              f"{res['machine']['torch_threads']}.", ""]
    cells = [HEAD + ("settings",)] + [row + (f"`{r['settings']}`",) for row, r in zip(table_rows(res), res["methods"])]
    lines += ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in
                                                                    range(len(cells[0]) - 1)) + "|---|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells[1:]]
    if res["roundtrip_failures"]:
        lines += ["", "## Round trip failures", ""]
        lines += [f"- {f['method']} on `{f['file']}`: {f['error']}" for f in res["roundtrip_failures"]]
    lines += ["", "## Images", ""]
    for im in res["per_image"]:
        lines.append(f"- `{im['file']}` ({'x'.join(map(str, im['shape']))}): auto chose {im['auto_choice']}, "
                     f"{im['results'][AUTO]['bytes']} bytes")
    if res["skipped"]:
        lines += ["", "Skipped (not readable): " + "; ".join(s["reason"] for s in res["skipped"])]
    if res["unavailable"]:
        lines += ["", "Not measured: " + "; ".join(f"{k} ({v})" for k, v in res["unavailable"].items())]
    return "\n".join(lines) + "\n"


def chart_png(res: dict) -> bytes:
    """A horizontal bar per method, bits per sub-pixel, the smallest on top."""
    from arcodec.explore.plots import pyplot

    plt = pyplot()
    rows = sorted((r for r in res["methods"] if r["bpd"] is not None), key=lambda r: -r["bpd"])
    n = res["images"]
    fig, ax = plt.subplots(figsize=(7.5, 1.4 + 0.42 * len(rows)), dpi=120)
    for i, r in enumerate(rows):
        failed = r["roundtrips_ok"] != r["roundtrips"]
        colour = "tab:red" if failed else "tab:blue" if r["kind"] == "arcodec" else "tab:gray"
        ax.barh(i, r["bpd"], color=colour, hatch="//" if failed else None, alpha=0.9 if r["method"] == AUTO else 0.6)
        vs = "" if r["method"] == AUTO or r["vs_auto"] is None else f"  ({100 * r['vs_auto']:+.1f}% vs auto)"
        ax.text(r["bpd"], i, f" {r['bpd']:.3f}{vs}", va="center", fontsize=8)
    labels = [r["method"] + (f" ({r['images_coded']}/{n} images)" if r["images_coded"] != n else "")
              + (" ROUND TRIP FAILED" if r["roundtrips_ok"] != r["roundtrips"] else "") for r in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.axvline(8, ls="--", lw=0.8, color="k")
    ax.text(8, len(rows) - 0.45, " 8 = the raw pixels", fontsize=7, va="bottom")
    ax.set_xlim(0, 1.35 * max([8.0] + [r["bpd"] for r in rows]))
    ax.set_ylim(-0.6, len(rows) - 0.1)
    ax.set_xlabel("bits per sub-pixel (files with their headers; lower is better)\n"
                  "vs auto: a method's bytes against arcodec auto's on the same images", fontsize=8)
    ax.set_title(f"arcodec bench: {n} image(s) from {Path(res['folder']).name or res['folder']}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def output_paths(out: str | Path, force: bool = False) -> list[Path]:
    """The result files in ``out``; refuses (before any work) to overwrite them without force."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArcodecError(f"{out} is not a folder")
    paths = [out / name for name in OUTPUTS]
    for p in paths:
        if p.exists() and not force:
            raise ArcodecError(f"{p} already exists (use -f to overwrite)")
    return paths


def write_results(res: dict, out: str | Path, force: bool = False) -> list[Path]:
    """Write ``bench.md``, ``bench.json`` and ``bench.png`` into ``out`` (atomically, none
    overwritten without ``force``); returns their paths."""
    from arcodec.imageio import write_atomic

    paths = output_paths(out, force)
    datas = [markdown(res).encode(), (json.dumps(res, indent=2) + "\n").encode(), chart_png(res)]
    for p, data in zip(paths, datas):
        write_atomic(p, data, force)
    return paths
