"""Coverage-guided fuzzing of the .arc reader and decoder with atheris (libFuzzer).

    pip install atheris
    python fuzz/fuzz_arc.py -max_total_time=600             # starts from fuzz/seeds.py's files
    python fuzz/fuzz_arc.py CORPUS/ -max_total_time=3600    # keeps what it finds in CORPUS/
    python fuzz/fuzz_arc.py crash-1234abcd                  # replays one input

Every input goes through ``container.read`` (a header, or FormatError) and
``codec.decode_file`` with the model the file names (a clean refusal is any ArcodecError).
Anything else is a finding, and libFuzzer keeps the input: an exception of another type, or
an accepted file whose header or image shapes disagree with ``container.read``'s
(crash-*), a decode slower than -timeout (30 s unless given: timeout-*), a process beyond
-rss_limit_mb (4096 MB unless given: oom-*). The timeout is generous because a valid header
of a few bytes may claim thousands of pixels that its payload can hold (a near-certain pixel
costs a thousandth of a bit), and the instrumented decoder steps through them at a few
hundred a second; what the range decoder cannot hold it refuses (entropy.Decoder). Pixels of an accepted file are checked by
``decode_file`` itself (the CRC32 covers the file and the pixels); ``benchmarks/fuzz.py``
compares them with the seeds'. Without a corpus folder, the seeds are written to a
temporary one; an empty folder given is filled with them. Set OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy  # noqa: F401  (imported before the instrumentation: their coverage is not ours)
import torch
import constriction  # noqa: F401
import atheris

with atheris.instrument_imports(include=["arcodec"], exclude=["arcodec.models"]):
    from arcodec.codec import api as codec, container
    from arcodec.errors import ArcodecError, FormatError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seeds import seed_files  # noqa: E402

DEFAULTS = ("-timeout=30", "-rss_limit_mb=4096")


def test_one_input(data: bytes) -> None:
    try:
        header = container.read(data)[0]
    except FormatError:
        header = None
    try:
        decoded, images = codec.decode_file(data)
    except ArcodecError:
        return
    if header is None or decoded != header:
        raise AssertionError("decode_file accepted a file whose header container.read refuses or reads otherwise")
    wide = header.sample_bits == container.WIDE_BITS  # 16-bit: the header counts the byte planes
    shapes = [(e.height, e.width, e.channels // 2 if wide else e.channels) for e in header.entries]
    if [a.shape for a in images] != shapes:
        raise AssertionError(f"decoded shapes {[a.shape for a in images]} are not the header's {shapes}")


def _corpus(argv: list[str]) -> list[str]:
    """argv with the libFuzzer defaults and a corpus folder holding the seeds."""
    args = argv[1:]
    dirs = [a for a in args if not a.startswith("-") and Path(a).is_dir()]
    files = [a for a in args if not a.startswith("-") and Path(a).is_file()]
    if not dirs and not files:
        dirs = [tempfile.mkdtemp(prefix="arc-corpus-")]
        args.append(dirs[0])
    for d in dirs[:1]:
        if not any(Path(d).iterdir()):
            for kind, (data, _) in seed_files().items():
                (Path(d) / f"{kind}.arc").write_bytes(data)
    given = {a.split("=")[0] for a in args if a.startswith("-")}
    return [argv[0], *[f for f in DEFAULTS if f.split("=")[0] not in given], *args]


def main() -> None:
    torch.set_num_threads(1)
    for data, _ in seed_files().values():  # load the models before libFuzzer's clock starts
        test_one_input(data)
    atheris.Setup(_corpus(sys.argv), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
