"""Speed and peak memory of the shipped models' codec, each measurement in a fresh process.

    python benchmarks/speed.py            # quick (`make bench`)
    python benchmarks/speed.py --full     # `make bench-full`: more images, a whole Kodak photo

Measurements, per shipped model on the data set its card names (and, for a model that
codes 8-bit photos, one large photo):

* batch 1: each image compressed alone (``encode_many([image])``) and each file decoded
  alone (``decode_file``), as a user calling ``compress``/``decompress`` per image does;
* large batch: all images as one call of ``encode_many`` / ``decode_many`` (one file per
  image, at most ``MAX_BATCH`` tiles through the model together);
* large image: the seconds per image of one photo (centre crop or whole), tiled by the codec;
* threads: the large batch again with 2 torch threads (the default gray model only);
* cold CLI: wall time of ``arcodec compress``, ``arcodec info`` and ``arcodec decompress``
  of one image, a fresh process each (Python start, imports, model load included), beside
  a Python that only imports torch: what a call that needs torch pays (``info``, the photo
  models' coding and a digit's decoding import none).

Peak memory is ``ru_maxrss`` of each measurement's own process, read with ``os.wait4`` by a
small trampoline process (see ``_TRAMPOLINE``): the peak resident set of a fresh Python that imports torch, loads the model and the images and
codes them (so it includes the interpreter, torch and the model; the "baseline" row is the
same process doing everything but the coding). Times start after one warm-up image (which
also quantizes the weights once and checks that the model can code the images); the cold
CLI rows show what a single call costs from scratch. Every decoded image is compared with its
original. The device is recorded: the codec runs on the CPU (arcodec has no device option),
and a GPU, if the machine has one, is named in the output but not used.

Writes benchmarks/results/speed.{json,csv,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import command, machine, md_table, write

HERE = Path(__file__).resolve()
QUICK = {"batch1": {1: 2, 3: 1}, "large": {1: 60, 3: 20}, "crop": 64}
FULL = {"batch1": {1: 20, 3: 5}, "large": {1: 2000, 3: 300}, "crop": 0}


def worker(spec: dict) -> dict:
    """Run one measurement in this (fresh) process; returns its numbers."""
    import numpy as np

    from arcodec.codec.coders import set_threads

    set_threads(spec["threads"])  # torch too, for the models that load it (the photo models do not)
    from _common import load_set
    from arcodec.codec.api import decode_file, decode_many, encode_many
    from arcodec.zoo import load_model

    m = load_model(spec["model"])
    images, what = load_set(spec["data"], spec["n"], crop=spec.get("crop", 0))
    out = {"images": what, "n": len(images), "subpixels_per_image": images[0].size}
    if spec["mode"] == "baseline":
        return out
    from arcodec.errors import ArcodecError

    try:
        encode_many(images[:1], model=m)  # refused before any work when the model cannot code them
    except ArcodecError as e:
        return {**out, "refused": str(e)}
    t, c = time.perf_counter(), time.process_time()
    if spec["mode"] == "batch1":
        files = [encode_many([a], model=m)[0].data for a in images]
        t1, c1 = time.perf_counter(), time.process_time()
        decoded = [decode_file(f, model=m)[1][0] for f in files]
    else:
        files = [e.data for e in encode_many(images, model=m)]
        t1, c1 = time.perf_counter(), time.process_time()
        decoded = [imgs[0] for _, imgs in decode_many(files, model=m)]
    t2, c2 = time.perf_counter(), time.process_time()
    n = len(images)
    return {**out, "encode_s_per_image": (t1 - t) / n, "decode_s_per_image": (t2 - t1) / n,
            "encode_img_s": n / (t1 - t), "decode_img_s": n / (t2 - t1),
            "encode_cpu_s_per_image": (c1 - c) / n, "decode_cpu_s_per_image": (c2 - c1) / n,
            "decode_subpixels_s": n * images[0].size / (t2 - t1),
            "roundtrips": f"{sum(np.array_equal(a, b) for a, b in zip(images, decoded))}/{n}"}


# Linux carries a parent's peak RSS over fork and exec into the child's ru_maxrss, so each
# measured command is started by this small Python, not by the benchmark (which holds torch
# and the models): the child's ru_maxrss is then its own peak (or the trampoline's ~10 MiB).
_TRAMPOLINE = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, st, ru = os.wait4(p.pid, 0); "
               "open(sys.argv[1], 'w').write(str(ru.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(st))")


def measured(cmd: list[str], threads: int) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one fresh process, its rusage read by wait4."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as d:
        rss = Path(d) / "maxrss"
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", _TRAMPOLINE, str(rss), *cmd], stdout=out, stderr=err, env=env)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if p.returncode:
            raise SystemExit(f"error: {' '.join(cmd)} failed:\n{err.read().decode()[-2000:]}")
        return wall, int(rss.read_text()) / 1024, out.read().decode()


def run_worker(spec: dict) -> dict:
    wall, rss, stdout = measured([sys.executable, str(HERE), "--worker", json.dumps(spec)], spec["threads"])
    return {**spec, **json.loads(stdout.strip().splitlines()[-1]), "peak_rss_mib": rss, "process_wall_s": wall}


def cli(model: str, data: str) -> dict:
    """Cold wall time and peak memory of the CLI on one image of ``data``."""
    from _common import load_set
    from arcodec.imageio import write_image

    exe = str(Path(sys.executable).with_name("arcodec"))
    image = load_set(data, 1)[0][0]
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "image.png"
        write_image(src, image)
        c_s, c_rss, _ = measured([exe, "compress", "-k", "-m", model, str(src)], 1)
        i_s, _, _ = measured([exe, "info", str(src) + ".arc"], 1)
        d_s, d_rss, _ = measured([exe, "decompress", "-f", str(src) + ".arc"], 1)
    return {"model": model, "data": data, "cli_compress_s": c_s, "cli_decompress_s": d_s, "cli_info_s": i_s,
            "cli_compress_peak_rss_mib": c_rss, "cli_decompress_peak_rss_mib": d_rss}


def specs(preset: dict) -> list[dict]:
    """The measurements: per shipped model that can code (not the superseded ones), on its
    own data set, and on one photo when it codes 8-bit photos; 2 threads for the default gray
    model only."""
    from _common import applies, coder_refusal, native_data
    from arcodec.zoo import DEFAULT_GRAY, cards, load_model

    out = []
    for card in cards():
        name, data = card["name"], native_data(card)
        if card.get("superseded_by") or coder_refusal(name):  # a superseded model only decodes its old files
            continue
        m = load_model(name)
        ch = 1 if m.channels == 1 else 3
        if data:
            base = {"model": name, "data": data, "threads": 1}
            out += [{**base, "mode": "baseline", "n": preset["large"][ch]},
                    {**base, "mode": "batch1", "n": preset["batch1"][ch]},
                    {**base, "mode": "large", "n": preset["large"][ch]}]
            if name == DEFAULT_GRAY:
                out.append({**base, "mode": "large", "n": preset["large"][ch], "threads": 2})
        if applies(m.levels, m.channels, "photos"):
            out.append({"model": name, "data": "photos", "mode": "batch1", "n": 1, "threads": 1,
                        "crop": preset["crop"]})
    return out


def markdown(res: dict) -> list[str]:
    mach = res["machine"]
    label = {"baseline": "load only (no coding)", "batch1": "batch 1 (one image per call)",
             "large": "large batch (one call)"}
    rows = []
    for r in res["runs"]:
        if "refused" in r:
            rows.append([f"`{r['model']}`", r["images"], label[r["mode"]], r["threads"], f"refused: {r['refused']}",
                         *[""] * 5, f"{r['peak_rss_mib']:.0f}", ""])
            continue
        rows.append([f"`{r['model']}`", r["images"], label[r["mode"]], r["threads"],
                     *(("", "", "", "", "", "") if r["mode"] == "baseline" else
                       (f"{r['encode_img_s']:.3g}", f"{r['decode_img_s']:.3g}", f"{r['encode_s_per_image']:.3g}",
                        f"{r['decode_s_per_image']:.3g}", f"{r['decode_cpu_s_per_image']:.3g}",
                        f"{r['decode_subpixels_s']:,.0f}")),
                     f"{r['peak_rss_mib']:.0f}", r.get("roundtrips", "")])
    lines = [f"Produced by `{res['command']}` on {mach['cpu']} ({mach['cpus']} CPUs, shared with other jobs), "
             f"device: {res['device']}; load average {mach['load_avg_1min']} at the start: the machine was shared, so "
             "wall-clock speeds are lower than on an idle machine, and the decode CPU seconds (the process's own, "
             "all threads) show the work itself. Each row is a fresh process; peak RSS is its `ru_maxrss` "
             "(interpreter, model and images included, and torch where the model or the data loading imports "
             "it).", "",
             *md_table(["model", "images", "mode", "threads", "encode img/s", "decode img/s", "encode s/img",
                        "decode s/img", "decode CPU s/img", "decoded sub-pixels/s", "peak RSS MiB", "round trips"],
                       rows), ""]
    for c in res["cli"]:
        lines.append(f"- cold CLI, one {c['data']} image with `{c['model']}`: `arcodec compress` {c['cli_compress_s']:.2f} s "
                     f"(peak {c['cli_compress_peak_rss_mib']:.0f} MiB), `arcodec info` {c['cli_info_s']:.2f} s, "
                     f"`arcodec decompress` {c['cli_decompress_s']:.2f} s (peak {c['cli_decompress_peak_rss_mib']:.0f} MiB)")
    lines.append(f"- a fresh Python that only imports torch: {res['import_torch_s']:.2f} s, what a call that needs "
                 "torch pays at its start (photos compress and decompress without it, a digit decompresses without "
                 "it)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help=f"the full run: {FULL}")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # one measurement, as JSON (internal)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    runs = []
    for spec in specs(FULL if args.full else QUICK):
        runs.append(run_worker(spec))
        print(f"{spec['model']} {spec['mode']} {spec['data']} x{spec['n']} threads={spec['threads']}: "
              f"{runs[-1].get('decode_img_s', 0):.3g} img/s decode, {runs[-1]['peak_rss_mib']:.0f} MiB", flush=True)
    from _common import coder_refusal, native_data
    from arcodec.zoo import cards

    clis = [cli(c["name"], native_data(c)) for c in cards()
            if native_data(c) and not c.get("superseded_by") and not coder_refusal(c["name"])]
    import_torch_s = measured([sys.executable, "-c", "import torch"], 1)[0]
    mach = machine(1)
    device = "CPU" + (f" (GPU present but unused: {mach['gpu']})" if mach["gpu"] else " (no GPU on this machine)")
    res = {"command": command(), "machine": mach, "device": device, "runs": runs, "cli": clis,
           "import_torch_s": import_torch_s}
    write("speed", res, markdown(res), runs + clis)


if __name__ == "__main__":
    main()
