"""Encode (or decode) seconds of this checkout against another one, on the same photos, in
one run: what a change to the photo coder gains, as a ratio (this shared machine's speed
drifts between runs, so only times measured side by side compare).

    git worktree add ../before HEAD~1                      # the code before the change
    python benchmarks/encode_ab.py --against ../before     # kodim05, 3 rounds
    python benchmarks/encode_ab.py --against ../before --photos kodim05.png kodim13.png --rounds 5
    python benchmarks/encode_ab.py --against ../before --cold   # each process's first encode
    python benchmarks/encode_ab.py --against ../before --decode # decode seconds instead

Each round encodes each photo once with each checkout, alternating, every encode in a fresh
process (the checkout's own package and zoo, ``arcodec compress``'s default model, 2
threads, after a small warm-up encode that loads the model and the compiled kernels; with
``--cold``, without it: the process's first encode, what ``arcodec compress`` makes). Prints
every time and the mean ratio; writes benchmarks/results/encode_ab.{json,md}. With
``--decode``, each checkout decodes the file that this checkout wrote for the photo (after a
small warm-up decode; with ``--cold``, without it), the pixels compared with the photo;
writes benchmarks/results/decode_ab.{json,md}. The photos are Kodak's
(``../shared/data/kodak``): timing only, nothing is selected on them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from _common import ROOT, command, default_photos, machine, md_table, missing, write

ONE = """
import json, sys, time
from pathlib import Path
import numpy as np
import arcodec
from arcodec.codec.api import decode_file, encode_images
from arcodec.codec.coders import set_threads
from arcodec.imageio import read_image
set_threads(2)
a = read_image(Path(sys.argv[1]).read_bytes(), sys.argv[1])
if sys.argv[2] == "warm":
    small = encode_images([a[:128, :512]]).data  # big enough for the offset fits: every kernel loaded
    if len(sys.argv) > 3:
        decode_file(small)
t = time.perf_counter()
if len(sys.argv) > 3:  # decode the file given
    data = Path(sys.argv[3]).read_bytes()
    _, (b,) = decode_file(data)
    assert np.array_equal(b, a), "the decoded pixels differ from the photo"
else:
    data = encode_images([a]).data
print(json.dumps({"seconds": time.perf_counter() - t, "bytes": len(data), "package": arcodec.__file__}))
"""


def encode(checkout: Path, photo: Path, cold: bool = False, decode: Path | None = None) -> dict:
    """Times one encode of ``photo`` (or one decode of the file ``decode``) with ``checkout``."""
    out = subprocess.run([sys.executable, "-c", ONE, str(photo), "cold" if cold else "warm",
                          *([str(decode)] if decode else [])], capture_output=True,
                         text=True, cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)})
    if out.returncode:
        raise SystemExit(f"error: {'decoding' if decode else 'encoding'} {photo.name} with {checkout} failed: "
                         f"{out.stderr.strip().splitlines()[-1]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(got["package"]).resolve().is_relative_to(checkout):
        raise SystemExit(f"error: the encode for {checkout} imported arcodec from {got['package']}")
    return got


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", required=True, type=Path, help="the other checkout (e.g. a git worktree)")
    p.add_argument("--photos", nargs="+", default=["kodim05.png"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cold", action="store_true", help="time each process's first encode (no warm-up encode)")
    p.add_argument("--decode", action="store_true", help="time decoding this checkout's file of each photo instead")
    args = p.parse_args()
    verb = "decode" if args.decode else "encode"
    other = args.against.resolve()
    if not (other / "arcodec" / "__init__.py").is_file():
        raise SystemExit(f"error: {args.against} is not an arcodec checkout (no arcodec/__init__.py)")
    photos = [(default_photos() / name).resolve() for name in args.photos]
    for photo in photos:
        if not photo.is_file():
            raise missing(f"the photo {photo.name}", f"{photo} not found")
    times: dict[str, list[float]] = {"this": [], "other": []}
    sizes = {}
    files = {}
    if args.decode:  # this checkout's file of each photo, in a folder of its own
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="decode_ab_"))
        for photo in photos:
            files[photo] = folder / f"{photo.stem}.arc"
            subprocess.run([sys.executable, "-m", "arcodec", "compress", str(photo), "-o", str(files[photo])],
                           check=True, capture_output=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for r in range(args.rounds):
        for photo in photos:
            for name, checkout in (("other", other), ("this", ROOT)):
                got = encode(checkout, photo, args.cold, files.get(photo))
                times[name].append(got["seconds"])
                sizes[(name, photo.name)] = got["bytes"]
                print(f"round {r + 1}  {photo.name}  {name:>5}  {got['seconds']:.2f} s  {got['bytes']:,} bytes", flush=True)
    this, that = np.array(times["this"]), np.array(times["other"])
    ratio = float(this.mean() / that.mean())
    wins = int((this < that).sum())
    print(f"this / other ({verb}): {ratio:.3f} (mean {this.mean():.2f} s against {that.mean():.2f} s; "
          f"this faster in {wins} of {len(this)} pairs)")
    res = {"command": command(), "machine": machine(2), "against": args.against.name, "photos": args.photos,
           "cold": args.cold, "decode": args.decode,
           "this_s": times["this"], "other_s": times["other"], "ratio": ratio, "pairs_faster": wins,
           "same_bytes": all(sizes[("this", ph.name)] == sizes[("other", ph.name)] for ph in photos)}
    if args.decode:
        for f in files.values():
            f.unlink()
        next(iter(files.values())).parent.rmdir()
    md = [f"`{command()}`: {verb} seconds, each photo alternately with each checkout, fresh processes, 2 threads"
          + (f", each process's first {verb}" if args.cold else f", after a warm-up {verb}")
          + (" (of the file this checkout wrote, the pixels compared with the photo)" if args.decode else ""), ""]
    md += md_table(["checkout", f"mean {verb} s", f"every {verb} (s)"],
                   [["this", f"{this.mean():.2f}", " ".join(f"{t:.2f}" for t in this)],
                    [args.against.name, f"{that.mean():.2f}", " ".join(f"{t:.2f}" for t in that)]])
    md += ["", f"this / {args.against.name}: {ratio:.3f}; this faster in {wins} of {len(this)} pairs"
           + ("" if args.decode else f"; same file sizes: {'yes' if res['same_bytes'] else 'no'}")]
    write("decode_ab" if args.decode else "encode_ab", res, md)


if __name__ == "__main__":
    main()
