"""Files made on the CPU decode on a GPU, and files made on a GPU decode on the CPU: the same bytes.

The Gated PixelCNN's engine (``arcodec/codec/gated.py``) computes in integers: float32
products of integers whose partial sums stay below 2**24 (exact in any order once TF32 is
off), look-ups, integer shifts. So the encoder's tables are the same numbers on any machine
and any device, and so are the files. This script shows it with the shipped ``mnist-gated``
on the first N MNIST test digits, one file per digit, in three steps on two machines:

    python benchmarks/cross_device.py make DIR --count 512           # CPU: encode, DIR/*.arc
    python benchmarks/cross_device.py device DIR OUT --device cuda   # GPU machine: decode DIR's
        # files there, encode the digits there (OUT/device_files.tar), compare the engine's
        # logits on the GPU and on that machine's CPU element for element (OUT/device.json)
    python benchmarks/cross_device.py verify DIR OUT                 # CPU: decode the GPU's files

``verify`` writes benchmarks/results/cross_device.{json,md}. On the GPU the decoder runs
the engine's whole-image pass at every pixel (the rows its receptive field reaches, every
file of a batch together: ``gated.use_device``), not the CPU's ring-buffer stepper; its
speed is that design's, measured on an otherwise idle GPU. Digits come from
``../shared/data`` (or ``$ARCODEC_DATA``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, load_set, machine, md_table, write  # noqa: E402

MODEL = "mnist-gated"


def _digits(count: int) -> list[np.ndarray]:
    images, _ = load_set("mnist", count)
    return images


def _files(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.glob("*.arc"))]


def _digest(datas: list[bytes]) -> str:
    h = hashlib.sha256()
    for d in datas:
        h.update(len(d).to_bytes(4, "little") + d)
    return h.hexdigest()


def _same_images(decoded, digits) -> int:
    return sum(bool(np.array_equal(imgs[0], d)) for (_, imgs), d in zip(decoded, digits))


def make(folder: Path, count: int) -> None:
    """Encode the first ``count`` test digits on this machine's CPU, one file each."""
    from arcodec.codec.api import encode_many

    digits = _digits(count)
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    datas = [e.data for e in encode_many(digits, model=MODEL)]
    seconds = time.perf_counter() - t
    for i, d in enumerate(datas):
        (folder / f"{i:05d}.arc").write_bytes(d)
    info = {"machine": machine(), "count": count, "bytes": sum(map(len, datas)), "sha256": _digest(datas),
            "encode_seconds": round(seconds, 3)}
    (folder / "cpu.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


def device(folder: Path, out: Path, name: str, batch1: int) -> None:
    """On the machine with the device: decode the CPU's files there, encode the digits there,
    and compare the engine's logits there with the same machine's CPU engine."""
    import torch

    from arcodec.codec import gated
    from arcodec.codec.api import coding, decode_many, encode_many
    from arcodec.zoo import load_model

    cpu_files = _files(folder)
    digits = _digits(len(cpu_files))
    model = load_model(MODEL)
    gated.use_device(name)
    result = {"machine": machine(), "device": name, "device_name": torch.cuda.get_device_name(0)
              if name.startswith("cuda") else name, "count": len(cpu_files)}
    _say(f"{len(cpu_files)} files read, model loaded")
    decode_many(cpu_files[:1], model)  # warm-up: the engine moves to the device, its kernels load
    _sync(name)
    _say("warm-up decode done")
    t = time.perf_counter()
    decoded = decode_many(cpu_files, model)
    _sync(name)
    seconds = time.perf_counter() - t
    result["decode_batched"] = {"images": len(cpu_files), "seconds": round(seconds, 3),
                                "images_per_s": round(len(cpu_files) / seconds, 2),
                                "equal": _same_images(decoded, digits)}
    _say(f"batched decode: {result['decode_batched']}")
    t = time.perf_counter()
    alone = [decode_many([f], model)[0] for f in cpu_files[:batch1]]
    seconds = time.perf_counter() - t
    result["decode_batch1"] = {"images": batch1, "seconds": round(seconds, 3),
                               "images_per_s": round(batch1 / seconds, 3), "equal": _same_images(alone, digits)}
    _say(f"one file a call: {result['decode_batch1']}")
    encode_many(digits[:1], model=model)
    _sync(name)
    t = time.perf_counter()
    datas = [e.data for e in encode_many(digits, model=model)]
    _sync(name)
    seconds = time.perf_counter() - t
    result["encode_batched"] = {"images": len(digits), "seconds": round(seconds, 3),
                                "images_per_s": round(len(digits) / seconds, 1), "sha256": _digest(datas),
                                "same_bytes_as_cpu_files": sum(a == b for a, b in zip(datas, cpu_files))}
    _say(f"encode: {result['encode_batched']}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i, d in enumerate(datas):
            info = tarfile.TarInfo(f"{i:05d}.arc")
            info.size = len(d)
            tar.addfile(info, io.BytesIO(d))
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_files.tar").write_bytes(buf.getvalue())
    # the engine's logits of every position, on the device and on this machine's CPU
    x = torch.from_numpy(np.stack([d[:, :, 0] for d in digits])[:, None].astype(np.int64))
    weights = coding(model)  # what the coder codes with: the weights as numpy arrays
    on_device, on_cpu = weights.device_engine(gated.DEVICE), weights.torch_engine
    equal = total = 0
    t_dev = t_cpu = 0.0
    with torch.no_grad():
        for i in range(0, len(x), 128):
            t = time.perf_counter()
            a = on_device(x[i: i + 128])
            t_dev += time.perf_counter() - t
            t = time.perf_counter()
            b = on_cpu(x[i: i + 128])
            t_cpu += time.perf_counter() - t
            equal += int((a == b).sum())
            total += a.numel()
    result["logits"] = {"compared": total, "equal": equal, "device_seconds": round(t_dev, 3),
                        "cpu_seconds": round(t_cpu, 3)}
    (out / "device.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


_START = time.perf_counter()


def _say(what: str) -> None:
    """A timestamped line as each step ends: a run cut short by its time limit shows where."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {what}", flush=True)


def _sync(name: str) -> None:
    if name.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def verify(folder: Path, out: Path) -> None:
    """Back on the CPU: decode the device's files, compare them with the CPU's, write results."""
    from arcodec.codec.api import decode_many

    cpu = json.loads((folder / "cpu.json").read_text())
    dev = json.loads((out / "device.json").read_text())
    cpu_files = _files(folder)
    with tarfile.open(out / "device_files.tar") as tar:
        names = sorted(m.name for m in tar.getmembers())
        dev_files = [tar.extractfile(n).read() for n in names]
    digits = _digits(len(dev_files))
    decode_many(dev_files[:1], MODEL)  # warm-up: the model loads, the kernels compile
    t = time.perf_counter()
    decoded = decode_many(dev_files, MODEL)
    seconds = time.perf_counter() - t
    result = {"command": command(), "cpu_machine": cpu["machine"], "device_machine": dev["machine"],
              "device": dev["device_name"], "count": len(dev_files),
              "cpu_decodes_device_files": _same_images(decoded, digits),
              "cpu_decode_images_per_s": round(len(dev_files) / seconds, 1),
              "same_bytes": sum(a == b for a, b in zip(dev_files, cpu_files)),
              "cpu_sha256": cpu["sha256"], "device_sha256": _digest(dev_files), "on_device": dev}
    n = len(dev_files)
    d = dev
    lines = [f"Produced by `python benchmarks/cross_device.py make DIR --count {n}` on this CPU, "
             f"`python benchmarks/cross_device.py device DIR OUT --device {d['device']}` on a machine with "
             f"{d['device_name']} (torch {d['machine']['torch']}), then `{command()}` here: "
             f"the first {n} MNIST test digits with `{MODEL}`, one file each. "
             "The GPU's decoder is the engine's whole-image pass at every pixel, every file of a batch "
             "together (`gated.use_device`); the CPU's is the ring-buffer stepper.", "",
             *md_table(["check", "result"], [
                 ["GPU decodes the CPU's files (images equal to the digits, batched)",
                  f"{d['decode_batched']['equal']}/{n}"],
                 ["GPU decodes the CPU's files one at a time", f"{d['decode_batch1']['equal']}/"
                                                              f"{d['decode_batch1']['images']}"],
                 ["GPU's files byte for byte the CPU's", f"{result['same_bytes']}/{n}"],
                 ["CPU decodes the GPU's files", f"{result['cpu_decodes_device_files']}/{n}"],
                 ["engine logits equal, GPU against the GPU machine's CPU",
                  f"{d['logits']['equal']:,}/{d['logits']['compared']:,}"],
                 ["GPU decode, batched (img/s)", d["decode_batched"]["images_per_s"]],
                 ["GPU decode, one file a call (img/s)", d["decode_batch1"]["images_per_s"]],
                 ["GPU encode, batched (img/s)", d["encode_batched"]["images_per_s"]],
                 ["this CPU's decode of the same files, batched (img/s)", result["cpu_decode_images_per_s"]],
             ])]
    write("cross_device", result, lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("make")
    p.add_argument("folder", type=Path)
    p.add_argument("--count", type=int, default=512)
    p = sub.add_parser("device")
    p.add_argument("folder", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch1", type=int, default=3, help="files decoded one per call")
    p = sub.add_parser("verify")
    p.add_argument("folder", type=Path)
    p.add_argument("out", type=Path)
    a = ap.parse_args()
    if a.step == "make":
        make(a.folder, a.count)
    elif a.step == "device":
        device(a.folder, a.out, a.device, a.batch1)
    else:
        verify(a.folder, a.out)


if __name__ == "__main__":
    main()
