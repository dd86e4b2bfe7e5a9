"""Smoke tests of the benchmark helpers on a few tiny images (offline, a few seconds)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _common  # noqa: E402
import classical  # noqa: E402


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    gray = (rng.random((3, 12, 10, 1)) < 0.3).astype(np.uint8) * 255  # digit-like: mostly 0 and 255
    rgb = rng.integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    return list(gray), list(rgb)


def test_classical_codecs_round_trip_gray_and_colour(images):
    codecs, missing = classical.available()
    names = {c.name for c in codecs}
    assert "PNG (Pillow)" in names and set(missing).isdisjoint(names)
    for imgs in images:
        rows = classical.measure(imgs, codecs)
        assert [r["codec"] for r in rows] == [c.name for c in codecs]
        for r in rows:
            assert r["roundtrips"] == f"{len(imgs)}/{len(imgs)}", r
            assert r["bytes"] > 0 and r["bpd"] == pytest.approx(8 * r["bytes"] / sum(a.size for a in imgs))
        for r in classical.streams(imgs, codecs):
            assert r["roundtrips"] == "1/1" and r["kind"] == "stream"


def test_gray_images_reach_webp_as_rgb_and_come_back_gray(images):
    codecs, _ = classical.available(["WebP lossless"])
    if not codecs:
        pytest.skip("WebP missing from this imagecodecs build")
    a = images[0][0]
    data = bytes(codecs[0].encode(a))
    assert np.array_equal(codecs[0].decode(data, a.shape), a)


def test_models_apply_to_data_of_their_levels_and_channels():
    gray, colour4 = (256, 1), (4, 3)
    assert _common.applies(*gray, "mnist") and _common.applies(*gray, "photos")
    assert not _common.applies(*gray, "colour-mnist")  # 2-bit data, 8-bit model: valid, meaningless
    assert _common.applies(*colour4, "colour-mnist")
    assert not _common.applies(*colour4, "mnist") and not _common.applies(*colour4, "photos")


def test_missing_photo_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="missing"):
        _common.load_set("photos", photos=tmp_path / "nowhere")


def test_header_bytes_match_a_real_file():
    import compression

    from arcodec.codec import container
    from arcodec.codec.api import encode_images
    from arcodec.training.data import load_digits
    from arcodec.zoo import load_model

    m = load_model("mnist-gated")
    a = load_digits("test")[0].permute(1, 2, 0).numpy().copy()
    assert compression.header_bytes(m, a) == container.header_size(encode_images([a], model=m).data)
