"""Hostile input: whatever the bytes, the reader returns a header or raises FormatError, and the
decoder returns exactly the pixels that were coded or raises an ArcodecError: never another
exception, never other pixels, never a hang. Random small images round-trip exactly through
the automatic model choice. Property-based (hypothesis, examples not saved to disk); the
coverage-guided target ``fuzz/fuzz_arc.py`` runs for a bounded time when atheris is
installed; ``benchmarks/fuzz.py`` is the long run. The regressions the fuzzing found close
the file."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import tracemalloc
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="the property-based tests need hypothesis (pip install hypothesis)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

import arcodec  # noqa: E402
from arcodec.codec import api as codec, container  # noqa: E402
from arcodec.codec import entropy  # noqa: E402
from arcodec.codec.container import Entry, Header  # noqa: E402
from arcodec.errors import ArcodecError, FormatError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))
from seeds import INTERESTING, OPS, mutate, seed_files  # noqa: E402


def fuzz_settings(n: int) -> settings:
    """n examples, no deadline (the machine may be busy), nothing written to .hypothesis/."""
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


STORED = ["stored-raw", "stored-deflate", "archive-stored", "16-bit"]
MODEL = ["digit", "gray-alpha", "colour", "level-map", "idf", "archive", "palette", "photo", "photo-gray"]
ops = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1 << 16),
                         st.one_of(st.sampled_from(INTERESTING), st.integers(0, 255))), min_size=1, max_size=4)


def assert_refused_or_exact(data: bytes, images) -> bool:
    """decode_file(data) raises an ArcodecError (True), or gives exactly ``images`` (False);
    any other exception propagates and fails the test."""
    try:
        _, out = codec.decode_file(data)
    except ArcodecError:
        return True
    assert len(out) == len(images) and all(np.array_equal(a, b) for a, b in zip(out, images)), data.hex()
    return False


# --- the container parser -------------------------------------------------------------------

@lru_cache(maxsize=1)
def header_seeds() -> list[bytes]:
    """Headers of every shape the writer makes, with a made-up payload."""
    fp, px = b"\x12\x34", [np.zeros((2, 2, 1), np.uint8)]
    names = tuple(Entry(28, 28, 1, f"mnist/{i:05d}.png") for i in range(40))
    headers = [
        Header(1, fp, (Entry(28, 28, 1),)),
        Header(2, fp, (Entry(5, 7, 3),), bit_depth=2),
        Header(1, fp, (Entry(300, 5000, 2),), bit_depth=3, tile=32, scan=container.SCAN_WAVEFRONT),
        Header(0, b"\0\0", (Entry(4, 4, 4),), method=container.METHOD_DEFLATE),
        Header(2, fp, (Entry(3, 3, 3),), bit_depth=2, levels=(0, 85, 170, 255)),
        Header(7, fp, (Entry(3, 4, 1, "a"), Entry(1, 1, 3, "dir/é.png")), archive=True),
        Header(1, fp, names, archive=True),  # a packed entry table
        Header(1, fp, (), archive=True),
    ]
    return [container.write(h, b"\x01\x02\x03", px) for h in headers]


def parse(data: bytes):
    """container.read(data), or None for a FormatError; any other exception fails the test.
    What the reader accepts, the writer writes back to the same header and payload."""
    try:
        header, payload, _ = container.read(data)
    except FormatError:
        return None
    again, payload2, _ = container.read(container.write(header, payload, []))
    assert (again, payload2) == (header, payload), data.hex()
    return header


@fuzz_settings(400)
@given(st.binary(max_size=96))
def test_parser_random_bytes(data):
    parse(data)


@fuzz_settings(400)
@given(st.integers(0, 15), st.binary(max_size=96))
def test_parser_random_bytes_after_the_magic(flags, rest):
    parse(b"AR" + bytes([0x10 | flags]) + rest)


@fuzz_settings(600)
@given(st.sampled_from(range(len(header_seeds()))), ops)
def test_parser_mutated_headers(i, edits):
    parse(mutate(header_seeds()[i], edits))


@fuzz_settings(300)
@given(st.sampled_from(sorted(seed_files())), ops)
def test_parser_mutated_files(kind, edits):
    parse(mutate(seed_files()[kind][0], edits))


# --- whole files: round trips ---------------------------------------------------------------

@st.composite
def small_images(draw, max_side: int = 12):
    """(H, W) or (H, W, C) uint8, 1..max_side a side, C 1..4: random values, a few levels,
    2-bit values, or sparse (mostly zeros: what the models code best)."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    c = draw(st.sampled_from([1, 2, 3, 4]))
    kind = draw(st.sampled_from(["random", "levels", "2-bit", "sparse"]))
    if kind == "random":
        a = draw(arrays(np.uint8, (h, w, c)))
    elif kind == "levels":
        levels = draw(st.lists(st.integers(0, 255), min_size=1, max_size=4, unique=True))
        a = draw(arrays(np.uint8, (h, w, c), elements=st.sampled_from(levels)))
    elif kind == "2-bit":
        a = draw(arrays(np.uint8, (h, w, c), elements=st.integers(0, 3)))
    else:
        a = draw(arrays(np.uint8, (h, w, c), elements=st.sampled_from([0, 3, 255]), fill=st.just(0)))
    return a[:, :, 0] if c == 1 and draw(st.booleans()) else a


@fuzz_settings(12)
@given(small_images())
def test_random_small_images_roundtrip_exactly(a):
    out = arcodec.decompress(arcodec.compress(a))
    expected = a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a  # grayscale comes back (H, W)
    assert out.dtype == np.uint8 and out.shape == expected.shape and np.array_equal(out, expected)


names = st.text(st.sampled_from("ab/é_.0"), min_size=1, max_size=8).filter(lambda n: container.unsafe_name(n) is None)


@fuzz_settings(8)
@given(st.lists(small_images(max_side=8), min_size=1, max_size=3), st.data())
def test_random_archives_roundtrip_exactly(images, data):
    given_names = data.draw(st.lists(names, min_size=len(images), max_size=len(images), unique=True))
    out = arcodec.decompress_archive(codec.encode_images(images, names=given_names).data)
    assert list(out) == given_names
    for name, a in zip(given_names, images):
        expected = a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a
        assert out[name].shape == expected.shape and np.array_equal(out[name], expected)


# --- whole files: mutations -----------------------------------------------------------------

def test_seeds_are_the_kinds_they_claim():
    """The seeds cover the stored method, every shipped coding model and archives."""
    s = seed_files()
    assert set(s) == set(STORED) | set(MODEL)
    read = {k: container.read(d)[0] for k, (d, _) in s.items()}
    assert {read[k].method for k in STORED} == {container.METHOD_RAW, container.METHOD_DEFLATE}
    assert {read[k].model_id for k in MODEL} == {31, 3, 8, 32, 6} and read["level-map"].levels
    assert read["archive"].archive and read["archive-stored"].archive
    for kind, (d, images) in s.items():
        assert not assert_refused_or_exact(d, images), kind


@pytest.mark.parametrize("kind", STORED)
def test_every_byte_change_of_a_stored_file_is_refused(kind):
    data, images = seed_files()[kind]
    for i in range(len(data)):
        for v in range(256):
            if v != data[i]:
                assert assert_refused_or_exact(data[:i] + bytes([v]) + data[i + 1:], images), (i, v)


@pytest.mark.parametrize("kind", MODEL)
def test_byte_changes_of_a_model_coded_file_are_refused(kind):
    """Every byte, changed three ways (its low bit, its high bit, all its bits)."""
    data, images = seed_files()[kind]
    for i in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            assert assert_refused_or_exact(data[:i] + bytes([data[i] ^ mask]) + data[i + 1:], images), (i, mask)


@pytest.mark.slow
@pytest.mark.parametrize("kind", MODEL)
def test_every_byte_change_of_a_model_coded_file_is_refused(kind):
    data, images = seed_files()[kind]
    for i in range(len(data)):
        for v in range(256):
            if v != data[i]:
                assert assert_refused_or_exact(data[:i] + bytes([v]) + data[i + 1:], images), (i, v)


@pytest.mark.parametrize("kind", STORED + MODEL)
def test_truncation_at_every_length_is_refused(kind):
    data, images = seed_files()[kind]
    for n in range(len(data)):
        assert assert_refused_or_exact(data[:n], images), n


@fuzz_settings(120)
@given(st.sampled_from(STORED + MODEL), ops)
def test_random_edits_are_refused_or_decode_exactly(kind, edits):
    data, images = seed_files()[kind]
    mutated = mutate(data, edits)
    assert assert_refused_or_exact(mutated, images) or mutated == data


# --- the range decoder ----------------------------------------------------------------------

@st.composite
def coded(draw):
    """(symbols, weights (n, K)): uniform, peaked, near-deterministic or wildly scaled rows,
    symbols drawn from them or against them."""
    n, k = draw(st.integers(0, 300)), draw(st.sampled_from([2, 3, 4, 96, 256]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    shape = draw(st.sampled_from(["uniform", "peaked", "deterministic", "scaled"]))
    w = {"uniform": lambda: rng.random((n, k)) + 0.5, "peaked": lambda: rng.random((n, k)) ** 40,
         "deterministic": lambda: np.where(np.arange(k) == 0, 1.0, 1e-12) * np.ones((n, 1)),
         "scaled": lambda: np.exp(rng.normal(0, 30, (n, k)))}[shape]()
    p = w / w.sum(axis=1, keepdims=True)
    if draw(st.booleans()):
        s = np.array([rng.choice(k, p=row) for row in p], dtype=np.int64).reshape(n)
    else:
        s = rng.integers(0, k, n)
    return s, w


@fuzz_settings(300)
@given(coded())
def test_range_coder_never_refuses_a_valid_stream(sw):
    """The decoder's budget (entropy.Decoder: no more information than the bytes can hold)
    and the check before decoding (entropy.check_room: no symbol costs less than the
    likeliest table entry's bits) never refuse what the encoder wrote, however extreme the
    tables."""
    s, w = sw
    data = entropy.encode(s, w)
    entropy.check_room(len(data), len(s), w.shape[1])
    assert np.array_equal(entropy.decode(data, w), s)


@fuzz_settings(200)
@given(coded(), st.integers(0, 64), st.integers(0, 3))
def test_range_coder_refuses_to_decode_far_past_its_data(sw, cut, extra):
    """A truncated stream asked for more symbols stops within the bits its bytes can hold."""
    s, w = sw
    data = entropy.encode(s, w)[:cut]
    uniform = np.ones((2000 * (extra + 1), 256))
    dec = entropy.Decoder(data)
    with pytest.raises(FormatError, match="corrupt payload"):  # the budget, or constriction's own check
        dec.decode(w)
        dec.decode(uniform)  # 8 bits a symbol: far beyond 32 bits a word


# --- the coverage-guided target and the benchmark -------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install atheris): fuzz/fuzz_arc.py not run")
def test_atheris_target_runs_clean_for_a_while(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # -timeout: a legitimately slow input (a header claiming thousands of pixels that its few
    # payload bytes can hold) must not fail a run this short on a busy machine
    args = [str(corpus), "-max_total_time=8", "-timeout=120", f"-artifact_prefix={tmp_path}/"]
    p = subprocess.run([sys.executable, str(ROOT / "fuzz" / "fuzz_arc.py"), *args], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0 and "Done" in p.stderr, p.stderr[-3000:]
    assert len(list(corpus.iterdir())) >= len(seed_files())


def test_fuzz_benchmark_counts_every_file():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import fuzz as bench  # benchmarks/fuzz.py

    res = bench.fuzz(len(seed_files()), timeout=60, progress=False)
    assert sum(res["outcomes"].values()) == len(seed_files())
    assert res["outcomes"]["traceback"] == res["outcomes"]["hang"] == res["outcomes"]["wrong output"] == 0
    assert bench.message_kind("FormatError: header claims a 3x70000 image: sides must be 1..65536") == \
        "FormatError: header claims a HxW image: sides must be N..N"


# --- regressions found by the fuzzing -------------------------------------------------------

def test_stored_archive_claiming_huge_images_is_refused_before_allocating():
    """4096 images of 65536 x 4096 in a 2 KB file: refused from the payload's size, without
    allocating them (codec._open allocated a TB of images, then compared)."""
    entries = tuple(Entry(65536, 4096, 1) for _ in range(4096))
    for method, payload in ((container.METHOD_RAW, b"abc"), (container.METHOD_DEFLATE, zlib.compress(b"abc"))):
        data = container.write(Header(0, b"\0\0", entries, archive=True, method=method), payload, [])
        tracemalloc.start()
        try:
            with pytest.raises(FormatError, match="stored bytes for"):
                codec.decode_file(data, max_pixels=1 << 62)  # past the limit of sub-pixels
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 << 20


def test_model_archive_claiming_billions_of_tiles_is_refused_before_planning():
    """65536 images of 65536 x 4096 (2^32 tiles of 64 x 64) with a 2-byte payload: refused at
    once (codec._open planned every tile's stream first: hours, and memory without end)."""
    m = codec.resolve("mnist-gated")
    entries = tuple(Entry(65536, 4096, 1) for _ in range(65536))
    data = container.write(Header(m.model_id, m.fingerprint, entries, archive=True), b"\x01\x02", [])
    t = time.perf_counter()
    with pytest.raises(FormatError, match="payload bytes for"):
        codec.decode_file(data, max_pixels=1 << 62)  # past the limit of sub-pixels
    assert time.perf_counter() - t < 20


def test_header_claiming_a_larger_image_stops_when_the_payload_runs_out():
    """A model-coded 3 x 3 digit's payload (4 bytes) under a header claiming 64 x 64: the range
    decoder read zeros past the end of the payload for all 4,096 pixels (half a minute here),
    then failed the CRC; now it stops within a few rows, once the symbols hold more
    information than the bytes can."""
    data, _ = seed_files()["digit"]
    header, payload, _ = container.read(data)
    big = container.write(Header(header.model_id, header.fingerprint, (Entry(64, 64, 1),)), payload, [])
    with pytest.raises(FormatError, match="more symbols than its bytes"):
        codec.decode_file(big)


def _claiming(model: str, entries: list[Entry], payload: bytes, tile: int | None = None) -> bytes:
    """A file of ``model`` whose header claims ``entries`` (an archive when several) over ``payload``."""
    m = codec.resolve(model)
    header = Header(m.model_id, m.fingerprint, tuple(entries), archive=len(entries) > 1,
                    tile=tile or codec.default_tile(m), scan=codec.scan_of(m))
    return container.write(header, payload, [])


def _refused(data: bytes, match: str, **kw) -> tuple[float, int]:
    """(seconds, peak traced bytes) that decode_file(data) takes to raise a FormatError
    matching ``match``."""
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(FormatError, match=match):
            codec.decode_file(data, **kw)
        return time.perf_counter() - t, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_nineteen_byte_file_claiming_a_huge_image_is_refused_at_once():
    """20 bytes claiming one 65536 x 4096 image in 4096 x 4096 tiles: the decoder allocated
    2 GiB and stepped through the pixels for ages; 2^28 sub-pixels cost 700 bytes at least,
    so the payload's size refuses it before anything is allocated."""
    data = _claiming("mnist-gated", [Entry(65536, 4096, 1)], b"\x55", tile=4096)
    assert len(data) <= 20
    seconds, peak = _refused(data, r"truncated: 1 bytes cannot hold 268435456 coded sub-pixels")
    assert seconds < 1 and peak < 16 << 20


def test_archive_claiming_many_images_is_refused_from_its_header():
    """An archive claiming 2^16 images of 4096 x 4096 (2^40 sub-pixels): refused by the
    max_pixels limit right after the header is read, naming the way to raise it."""
    data = _claiming("mnist-gated", [Entry(4096, 4096, 1)] * (1 << 16), b"\x55" * 64)
    t = time.perf_counter()
    with pytest.raises(FormatError, match=r"more than the limit of \d+: .* raise the limit .*--max-pixels"):
        codec.decode_file(data)
    assert time.perf_counter() - t < 5  # reading the entry table is most of it


def test_payload_cut_to_half_is_refused_midway(digits):
    """A real digit whose payload is cut in half stops once the range decoder has read past
    its bytes (a little over half the pixels), not after decoding zeros to the end."""
    data = codec.compress(digits[0], model="mnist-gated")
    header, payload, _ = container.read(data)
    cut = container.write(header, payload[: len(payload) // 2], [digits[0]])
    done = []
    with pytest.raises(FormatError, match="corrupt payload"):
        codec.decode_file(cut, progress=done.append)
    assert sum(done) < 0.75 * digits[0].size
