"""Choosing the method: every applicable shipped model and the stored pixels, the smallest
file wins; a level map for images of few levels; no file larger than its stored pixels."""

import numpy as np
import pytest
from click.testing import CliRunner

import arcodec
from arcodec.codec import container
from arcodec.cli import main
from arcodec.codec.api import decode_file, encode_images, encode_many, encode_stored
from arcodec.errors import ArcodecError
from arcodec.zoo import applicable, cards


def stored_size(img: np.ndarray) -> int:
    """Header + raw pixels + CRC: the bound no auto file may exceed."""
    a = img if img.ndim == 3 else img[:, :, None]
    header = container.Header(0, b"\0\0", (container.Entry(*a.shape),), method=container.METHOD_RAW)
    return len(container.write(header, a.tobytes(), [a]))


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (16, 16, 3), (9, 7, 4), (5, 6, 2)])
def test_noise_never_expands(shape):
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    data = arcodec.compress(img)
    assert len(data) <= stored_size(img)
    assert np.array_equal(arcodec.decompress(data), img)


def test_the_auto_choice_is_the_smallest_candidate(digits):
    img = digits[0]
    auto = arcodec.compress(img)
    header = container.read(auto)[0]
    names = applicable([img[:, :, None]])
    assert names  # a 28x28 digit has shipped models
    sizes = {n: len(encode_images([img], model=n).data) for n in names}
    sizes["stored"] = len(encode_stored([img[:, :, None]]).data)
    assert len(auto) == min(sizes.values())
    assert header.method == container.METHOD_MODEL  # a model beats the stored pixels on a digit
    many = encode_many([img, img[:5, :5]])
    assert [e.data for e in many][0] == auto and len(many[1].data) <= stored_size(img[:5, :5])


def test_stored_files_round_trip_and_refuse_corruption():
    img = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    flat = np.zeros((40, 30), dtype=np.uint8)
    for a, method in ((img, container.METHOD_RAW), (flat, container.METHOD_DEFLATE)):
        enc = encode_stored([a if a.ndim == 3 else a[:, :, None]])
        header, (out,) = decode_file(enc.data)
        assert header.method == method and np.array_equal(out.reshape(a.shape), a)
        bad = bytearray(enc.data)
        bad[-6] ^= 0x10  # inside the payload
        with pytest.raises(ArcodecError):
            decode_file(bytes(bad))
        with pytest.raises(ArcodecError):
            decode_file(enc.data[:-9] + enc.data[-4:])  # payload cut short


def test_a_level_map_lets_the_two_bit_colour_model_code_scaled_colour(digits):
    """Colour MNIST saved the usual way (its 4 levels as 0, 85, 170, 255) goes to the colour
    model through a level map instead of to the 8-bit models."""
    import torch

    from arcodec.training.data import colourize

    assert any(c["name"] == "colour-mnist-made" for c in cards())  # shipped in the zoo
    small = colourize(torch.from_numpy(digits[:1, None]), seed=3)[0].permute(1, 2, 0).numpy()  # 0..3
    scaled = (small * 85).astype(np.uint8)
    data = arcodec.compress(scaled)
    header = container.read(data)[0]
    assert header.levels == (0, 85, 170, 255) and header.bit_depth == 2
    assert np.array_equal(arcodec.decompress(data), scaled)
    assert len(data) <= len(arcodec.compress(small)) + 40  # the map costs a few header bytes


def test_info_names_the_method(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    path = tmp_path / "noise.arc"
    path.write_bytes(arcodec.compress(img))
    out = CliRunner().invoke(main, ["info", str(path)])
    assert out.exit_code == 0 and ("stored" in out.output or "model" in out.output)
    if container.read(path.read_bytes())[0].method != container.METHOD_MODEL:
        assert "stored (" in out.output


def test_unsafe_and_duplicate_names_are_refused_by_the_library(tmp_path):
    from arcodec.codec.api import decompress_archive
    from arcodec.errors import FormatError

    img = np.zeros((4, 4), dtype=np.uint8)
    for bad in ("/etc/passwd", "../up.png", "a/../../b.png", "C:evil.png"):
        with pytest.raises(ArcodecError):
            encode_images([img, img], names=["ok.png", bad])
    dup = encode_images([img, img + 1], names=["same.png", "same.png"]).data
    with pytest.raises(FormatError, match="more than once"):
        decompress_archive(dup)
    (tmp_path / "dup.arc").write_bytes(dup)
    out = CliRunner().invoke(main, ["decompress", str(tmp_path / "dup.arc"), "-o", str(tmp_path / "out")])
    assert out.exit_code == 1 and "more than once" in out.output and not (tmp_path / "out").exists()


def test_info_on_an_archive_of_no_images(tmp_path):
    header = container.Header(0, b"\0\0", (), archive=True, method=container.METHOD_RAW)
    path = tmp_path / "empty.arc"
    path.write_bytes(container.write(header, b"", []))
    out = CliRunner().invoke(main, ["info", str(path)])
    assert out.exit_code == 0 and "images           0" in out.output


def test_of_several_photo_models_the_sample_picks_the_one_that_codes_a_large_photo(monkeypatch, tmp_path):
    """When several local photo models apply to an image of PRESELECT_SUBPIXELS or more, the
    exact code length of a seeded sample of its pixels picks the one that codes it in full:
    here photo-rgb against an untrained photo model (a model file of random weights), in
    either order. The file is photo-rgb's own and decodes; a small image is still coded by
    both, and auto's file is the smaller."""
    import torch

    from arcodec.codec import api
    from arcodec.registry import build_model, make_config, model_file_bytes

    torch.manual_seed(0)
    untrained = build_model("local-photo", make_config("local-photo", {"channels": 3, "hidden": 16, "blocks": 1}))
    other = str(tmp_path / "untrained.arcm")
    (tmp_path / "untrained.arcm").write_bytes(model_file_bytes(untrained, "untrained", {}))
    g = np.random.default_rng(11)
    yy, xx = np.mgrid[:300, :320]
    base = np.stack([60 + xx // 3, 90 + yy // 4, 140 + (xx - yy) // 5], axis=-1)
    big = np.clip(base + g.integers(-4, 5, size=base.shape), 0, 255).astype(np.uint8)
    small = big[:40, :50]
    assert big.size >= api.PRESELECT_SUBPIXELS > small.size
    alone = {n: arcodec.compress(big, n) for n in ("photo-rgb", other)}
    assert len(alone["photo-rgb"]) < len(alone[other])
    coded = []
    encode = api._encode

    def spy(m, *args, **kwargs):
        coded.append(m.name)
        return encode(m, *args, **kwargs)

    monkeypatch.setattr(api, "_encode", spy)
    for pair in (["photo-rgb", other], [other, "photo-rgb"]):
        monkeypatch.setattr(api, "_candidates", lambda imgs, planes=False, pair=pair: [(n, ()) for n in pair])
        coded.clear()
        data = arcodec.compress(big)
        assert coded == ["photo-rgb"] and data == alone["photo-rgb"]
        assert np.array_equal(arcodec.decompress(data), big)
        coded.clear()
        data = arcodec.compress(small)
        assert sorted(coded) == sorted(pair)
        assert len(data) == min(len(arcodec.compress(small, n)) for n in pair)


def test_a_photo_encode_starts_loading_what_it_needs_on_a_thread_of_its_own():
    """In a fresh process, warm_up (which a photo's encode starts) loads the offset search's
    optimiser and the engine's compiled kernel on its own thread, once a process."""
    import subprocess
    import sys

    code = """
import sys
from arcodec.codec import engine, wavefront
assert "scipy.optimize" not in sys.modules and not engine._KERNEL
wavefront.warm_up(); wavefront.warm_up()
assert len(wavefront._WARMING) == 1
wavefront._WARMING[0].join(120)
assert "scipy.optimize" in sys.modules
assert engine._KERNEL[0] is None or engine._KERNEL[0].signatures
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
