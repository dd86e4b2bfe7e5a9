"""What the integer engine costs: the float network's NLL against the code length of the
engine's integer tables, on the same images.

    python benchmarks/engine_precision.py                    # photo-rgb, validation photos
    python benchmarks/engine_precision.py --model runs/photo-rgb/best.pt --crops 8

The images are seeded 96x96 crops of the validation split of ``../shared/data/photos`` (the
photos the model was validated on; never Kodak). The float NLL is the model's own
``log_prob_at`` over every pixel of each crop (the borders zero-padded, as the coder sees
them); the engine's is the sum of -log2 of the integer tables' probabilities of the actual
pixels (``arcodec.codec.wavefront.encode_streams``), and the real payload is reported beside
it. Writes benchmarks/results/engine_precision.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from _common import command, machine, md_table, missing, write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="photo-rgb")
    p.add_argument("--crops", type=int, default=4, help="crops per validation photo")
    p.add_argument("--crop", type=int, default=96)
    args = p.parse_args()

    from arcodec.codec import wavefront
    from arcodec.training.data import DEFAULT_ROOT, load_folder
    from arcodec.models.layers import set_exact
    from arcodec.zoo import load_model

    m = load_model(args.model)
    net = m.net
    mode = "L" if net.config.channels == 1 else "RGB"
    try:
        x = load_folder(f"{DEFAULT_ROOT}/photos", "val", crop=args.crop, crops=args.crops, mode=mode).long()
    except FileNotFoundError as e:
        raise missing("the photo folder", e) from None
    set_exact(net, False)
    try:
        with torch.no_grad():
            float_bits = float(-net.log_prob_at(net.raw(x), x).sum()) / math.log(2.0)
    finally:
        set_exact(net, True)
    t = time.perf_counter()
    (payload, engine_bits), = wavefront.encode_streams(net, x, [len(x)])
    seconds = time.perf_counter() - t
    n = x.numel()
    res = {"command": command(), "machine": machine(), "model": m.name, "images": f"{len(x)} crops {args.crop}x{args.crop}",
           "float_bpd": float_bits / n, "engine_bpd": engine_bits / n, "payload_bpd": 8 * len(payload) / n,
           "relative": engine_bits / float_bits - 1, "encode_s": seconds}
    md = [f"`{command()}`: model `{m.name}`, {len(x)} seeded {args.crop}x{args.crop} crops of the validation photos", ""]
    md += md_table(["float NLL (bits/sub-pixel)", "integer engine's tables", "engine / float", "real payload"],
                   [[f"{res['float_bpd']:.4f}", f"{res['engine_bpd']:.4f}", f"{100 * res['relative']:+.2f} %",
                     f"{res['payload_bpd']:.4f}"]])
    write("engine_precision", res, md)


if __name__ == "__main__":
    main()
