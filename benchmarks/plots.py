"""Figures of benchmarks/results/compression.json: learned against classical codecs.

    python benchmarks/plots.py      # after benchmarks/compression.py (`make bench` runs both)

Per data set: ``compression_bpd_DATA.png``, bits/dim of every codec (bars; the learned
codecs' files and archive beside their NLL), and ``compression_speed_DATA.png``, bits/dim
against decode images/s on a log scale. Writes benchmarks/results/compression_plots.md,
the figures' links for the README.
"""

from __future__ import annotations

import json

from _common import RESULTS, file_safe
from arcodec.explore.plots import pyplot
from compression import rows_of

COLOURS = {"nll": "tab:green", "learned": "tab:red", "learned-archive": "tab:orange", "image": "tab:blue",
           "raw": "tab:gray", "stream": "silver"}
LABELS = {"nll": "model NLL", "learned": "learned, one file per image", "learned-archive": "learned, one archive",
          "image": "image codec, per image", "raw": "raw pixels + compressor, per image",
          "stream": "raw pixels + compressor, whole set"}


def bars(set_name: str, rows: list[dict], what: str, out) -> None:
    plt = pyplot()
    rows = sorted(rows, key=lambda r: r["bpd"])
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.5), dpi=120)
    ax.barh(range(len(rows)), [r["bpd"] for r in rows], color=[COLOURS[r["kind"]] for r in rows])
    ax.set_yticks(range(len(rows)), [r["codec"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    for i, r in enumerate(rows):
        ax.text(r["bpd"], i, f" {r['bpd']:.3f}", va="center", fontsize=7)
    ax.set_xlabel("bits per sub-pixel (lower is better)")
    ax.set_title(f"{set_name}: {what}", fontsize=8)
    _legend(ax, {r["kind"] for r in rows})
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def speed(set_name: str, rows: list[dict], what: str, out) -> None:
    plt = pyplot()
    rows = [r for r in rows if r.get("decode_img_s")]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for r in rows:
        ax.scatter(r["decode_img_s"], r["bpd"], color=COLOURS[r["kind"]], s=30)
        ax.annotate(r["codec"], (r["decode_img_s"], r["bpd"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("decode images/s (log scale; learned: batched, classical: one image at a time)")
    ax.set_ylabel("bits per sub-pixel (lower is better)")
    ax.set_title(f"{set_name}: {what}", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, {r["kind"] for r in rows})
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _legend(ax, kinds: set[str]) -> None:
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=COLOURS[k], label=LABELS[k]) for k in COLOURS if k in kinds], fontsize=7,
              loc="best")


def main() -> None:
    src = RESULTS / "compression.json"
    if not src.is_file():
        raise SystemExit(f"error: {src} is missing: run benchmarks/compression.py first")
    res = json.loads(src.read_text())
    lines = [f"Figures of `{res['command']}`, drawn by `python benchmarks/plots.py`:", ""]
    for set_name, entry in res["sets"].items():
        rows = rows_of(set_name, entry)
        b, s = f"compression_bpd_{file_safe(set_name)}.png", f"compression_speed_{file_safe(set_name)}.png"
        bars(set_name, rows, entry["images"], RESULTS / b)
        speed(set_name, rows, entry["images"], RESULTS / s)
        lines += [f"![bits/dim per codec, {set_name}](benchmarks/results/{b}) "
                  f"![bits/dim against decode speed, {set_name}](benchmarks/results/{s})", ""]
    (RESULTS / "compression_plots.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
