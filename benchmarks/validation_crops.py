"""The photo model's ship rule: float NLL of a candidate and of the shipped model on the same
validation crops, plain, half after a 4:2:0 chroma round trip (training's validation) and
all after it.

    python benchmarks/validation_crops.py runs/photo-rgb/best.pt            # against photo-rgb
    python benchmarks/validation_crops.py photo-rgb-v10 photo-rgb           # two shipped models

Each model is a zoo name or a checkpoint written by ``arcodec train``. The crops are those of
the photo-rgb training command (``--set crop=48 --set crops=4096 --set val_limit=1024``):
seeded 48x48 crops of the validation split of ``../shared/data/photos`` (never Kodak), 1,024
of them evenly spaced, so the half-4:2:0 column repeats the ``val`` that training logs. Two
models of different windows (``horizon``) score the same pixels: those whose wider window
lies inside the crop (:func:`common`).

The rule, set before any Kodak run: a candidate ships when its half-4:2:0 NLL is below the
shipped model's and its plain NLL is at most 0.5 % above it. Writes
benchmarks/results/validation_crops.{json,md}.
"""

from __future__ import annotations

import argparse

import torch

from _common import command, machine, md_table, missing, write

CHROMA = {"plain": 0.0, "half 4:2:0": 0.5, "all 4:2:0": 1.0}
PLAIN_SLACK = 0.005


def load_net(name: str) -> torch.nn.Module:
    from arcodec.models.layers import set_exact
    from arcodec.registry import load_checkpoint
    from arcodec.zoo import load_model

    net = load_checkpoint(name)[0] if name.endswith((".pt", ".arcm")) else load_model(name).net
    net = net.float()
    set_exact(net, False)
    return net.eval()


def common(crops: torch.Tensor, horizon: int, wide: int) -> torch.Tensor:
    """The crops (N, C, H, W) cut so that a model of ``horizon`` scores the positions a model
    of the wider ``wide`` scores on the whole crops (rows wide.., columns wide..W-wide-1): the
    same pixels for both, whatever their windows."""
    d = wide - horizon
    return crops[:, :, d:, d: crops.shape[-1] - d]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("candidate")
    p.add_argument("shipped", nargs="?", default="photo-rgb")
    p.add_argument("--crop", type=int, default=48)
    p.add_argument("--crops", type=int, default=4096, help="crops per validation photo before the limit")
    p.add_argument("--limit", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from arcodec.training.data import DEFAULT_ROOT, load_folder
    from arcodec.training.train import evaluate_nll

    nets = {name: load_net(name) for name in (args.candidate, args.shipped)}
    wide = max(net.config.horizon for net in nets.values())
    nll: dict[str, dict[str, float]] = {name: {} for name in nets}
    for label, chroma in CHROMA.items():
        try:
            v = load_folder(f"{DEFAULT_ROOT}/photos", "val", crop=args.crop, crops=args.crops, chroma=chroma)
        except FileNotFoundError as e:
            raise missing("the photo folder", e) from None
        v = v[torch.arange(0, len(v), max(1, len(v) // args.limit))[: args.limit]]
        for name, net in nets.items():
            nll[name][label] = evaluate_nll(net, common(v, net.config.horizon, wide), batch=64)
            print(f"{name:>32}  {label:<11} {nll[name][label]:.4f}", flush=True)

    cand, ship = nll[args.candidate], nll[args.shipped]
    ships = cand["half 4:2:0"] < ship["half 4:2:0"] and cand["plain"] <= ship["plain"] * (1 + PLAIN_SLACK)
    verdict = (f"{args.candidate} {'ships' if ships else 'does not ship'} against {args.shipped}: half 4:2:0 "
               f"{cand['half 4:2:0']:.4f} vs {ship['half 4:2:0']:.4f} (must be below), plain {cand['plain']:.4f} "
               f"vs {ship['plain']:.4f} (at most +{100 * PLAIN_SLACK:.1f} %)")
    print(verdict)
    res = {"command": command(), "machine": machine(args.threads),
           "crops": f"{args.limit} of {args.crops} seeded {args.crop}x{args.crop} crops per validation photo",
           "nll_bpd": nll, "ships": ships}
    md = [f"`{command()}`: float NLL (bits/sub-pixel) on {res['crops']}", ""]
    md += md_table(["model"] + list(CHROMA), [[name] + [f"{v[k]:.4f}" for k in CHROMA] for name, v in nll.items()])
    md += ["", verdict]
    write("validation_crops", res, md)


if __name__ == "__main__":
    main()
