"""Golden files: the same images and models give the same bytes, release after release.

Each case compresses a fixed, generated image with one shipped model (or the stored
method, or auto) and compares the bytes with the committed file in ``tests/golden/``; the
committed file must also decode to the image. A change that moves code without changing
behaviour keeps every byte. Regenerate deliberately with ``ARCODEC_REGEN=1`` (a format or
model change), and say why in the commit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import arcodec

GOLDEN = Path(__file__).parent / "golden"


def _digit() -> np.ndarray:
    """A 28x28 digit-like image: a thick ring, smooth edges (no data set needed)."""
    yy, xx = np.mgrid[:28, :28]
    r = np.hypot(yy - 13.5, xx - 13.5)
    return (np.clip(1 - abs(r - 8) / 3, 0, 1) * 255).round().astype(np.uint8)


def _photo(h: int = 21, w: int = 26) -> np.ndarray:
    """A small smooth colour image with texture from a seeded generator (PCG64 is stable)."""
    g = np.random.default_rng(7)
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([60 + 4 * xx, 90 + 3 * yy, 140 + 2 * (xx - yy)], axis=-1)
    return np.clip(base + g.integers(-6, 7, size=(h, w, 3)), 0, 255).astype(np.uint8)


def _colour_digit() -> np.ndarray:
    d = _digit() // 64  # 4 levels
    return (np.stack([d, 3 - d, d // 2], axis=-1) * 85).astype(np.uint8)


CASES = {
    "mnist-gated": (_digit, "mnist-gated"),
    "mnist-gated-v1": (_digit, "mnist-gated-v1"),  # superseded (id 1): its files still decode
    "mnist-gated-v2": (_digit, "mnist-gated-v2"),  # superseded (id 11)
    "mnist-gated-v3": (_digit, "mnist-gated-v3"),  # superseded (id 12)
    "mnist-gated-v4": (_digit, "mnist-gated-v4"),  # superseded (id 25)
    "mnist-gated-v5": (_digit, "mnist-gated-v5"),  # superseded (id 30)
    "mnist-gated-small": (_digit, "mnist-gated-small"),  # the frontier's faster sizes, chosen by name
    "mnist-gated-medium": (_digit, "mnist-gated-medium"),
    "mnist-gated-small-v1": (_digit, "mnist-gated-small-v1"),  # superseded (id 9)
    "mnist-gated-medium-v1": (_digit, "mnist-gated-medium-v1"),  # superseded (id 10)
    "mnist-idf": (_digit, "mnist-idf"),
    "colour-mnist-made": (lambda: _colour_digit() // 85, "colour-mnist-made"),
    "colour-mnist-made-v1": (lambda: _colour_digit() // 85, "colour-mnist-made-v1"),  # superseded (id 2)
    "photo-rgb": (_photo, "photo-rgb"),
    "photo-rgb-v1": (_photo, "photo-rgb-v1"),  # superseded (id 5): its files still decode
    "photo-rgb-v2": (_photo, "photo-rgb-v2"),  # superseded (id 7)
    "photo-rgb-v3": (_photo, "photo-rgb-v3"),  # superseded (id 13)
    "photo-rgb-v4": (_photo, "photo-rgb-v4"),  # superseded (id 14)
    "photo-rgb-v5": (_photo, "photo-rgb-v5"),  # superseded (id 15)
    "photo-rgb-v6": (_photo, "photo-rgb-v6"),  # superseded (id 16)
    "photo-rgb-v7": (_photo, "photo-rgb-v7"),  # superseded (id 17)
    "photo-rgb-v8": (_photo, "photo-rgb-v8"),  # superseded (id 18)
    "photo-rgb-v9": (_photo, "photo-rgb-v9"),  # superseded (id 19)
    "photo-rgb-v10": (_photo, "photo-rgb-v10"),  # superseded (id 20)
    "photo-rgb-v11": (_photo, "photo-rgb-v11"),  # superseded (id 21)
    "photo-rgb-v12": (_photo, "photo-rgb-v12"),  # superseded (id 22)
    "photo-rgb-420": (_photo, "photo-rgb-420"),  # the 4:2:0 specialist (id 33)
    "photo-rgb-420-v1": (_photo, "photo-rgb-420-v1"),  # superseded (id 23)
    "photo-rgb-420-v2": (_photo, "photo-rgb-420-v2"),  # superseded (id 24)
    "photo-rgb-420-v3": (_photo, "photo-rgb-420-v3"),  # superseded (id 28)
    "photo-rgb-420-v4": (_photo, "photo-rgb-420-v4"),  # superseded (id 29)
    "photo-gray": (lambda: _photo()[:, :, 1], "photo-gray"),
    "auto-levels": (_colour_digit, "auto"),
    "auto-noise": (lambda: np.random.default_rng(3).integers(0, 256, (9, 11, 3)).astype(np.uint8), "auto"),
    "auto-16bit": (lambda: _photo()[:, :, 1].astype(np.uint16) * 257 + 3, "auto"),  # header tag 11
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_bytes(case):
    make, model = CASES[case]
    img = make()
    data = arcodec.compress(img, model)
    path = GOLDEN / f"{case}.arc"
    if os.environ.get("ARCODEC_REGEN"):
        path.write_bytes(data)
    assert path.exists(), f"no golden file {path.name}: run with ARCODEC_REGEN=1"
    assert data == path.read_bytes(), f"{case}: the bytes changed"
    assert np.array_equal(arcodec.decompress(path.read_bytes()), img)


@pytest.mark.parametrize("case", sorted(c for c in CASES if (GOLDEN / "legacy" / f"{c}.arc").exists()))
def test_files_of_earlier_weights_files_still_decode(case):
    """``golden/legacy/`` holds the golden files as they were before the zoo's weights moved
    from ``.pt`` files to safetensors model files (same tensors, other bytes, so another
    fingerprint): they still decode, through the cards' ``legacy_sha256``."""
    make, _ = CASES[case]
    data = (GOLDEN / "legacy" / f"{case}.arc").read_bytes()
    assert data != (GOLDEN / f"{case}.arc").read_bytes()
    assert np.array_equal(arcodec.decompress(data), make())


def test_files_of_an_earlier_engine_still_decode():
    """``mnist-gated-engine0.arc`` was written before the Gated PixelCNN's integer engine
    (engine 0: the float64 fixed point of arcodec.exact) by the same float weights without
    the engine's scales (its fingerprint is the card's legacy sha256): it still decodes,
    through the model's own stepper, to the same image. So do ``photo-rgb-engine0.arc``,
    written before the wavefront coder's engine 1 (the streams' scale offsets),
    ``photo-rgb-engine1.arc``, written before its engine 2 (the streams' mixture offsets),
    ``photo-rgb-engine2.arc``, written before its engine 3 (the regions' offsets),
    ``photo-rgb-engine3.arc``, written before its engine 4 (the regions' corrections of the
    stream's offsets), and ``photo-rgb-engine4.arc``, written before its engine 5 (those
    corrections coded from the region above's)."""
    from arcodec.codec import container

    data = (GOLDEN / "mnist-gated-engine0.arc").read_bytes()
    header, _, _ = container.read(data)
    assert header.engine == 0 and container.read((GOLDEN / "mnist-gated.arc").read_bytes())[0].engine == 1
    assert np.array_equal(arcodec.decompress(data), _digit())
    # photo-rgb's file (id 7, now photo-rgb-v2) from before the scale offsets (wavefront engine 0)
    data = (GOLDEN / "photo-rgb-engine0.arc").read_bytes()
    assert container.read(data)[0].engine == 0
    assert np.array_equal(arcodec.decompress(data), _photo())
    # photo-rgb's file (id 16, now photo-rgb-v6) from before the mixture offsets (wavefront engine 1)
    data = (GOLDEN / "photo-rgb-engine1.arc").read_bytes()
    assert container.read(data)[0].engine == 1
    assert np.array_equal(arcodec.decompress(data), _photo())
    # photo-rgb's file (id 17, now photo-rgb-v7) from before the regions' offsets (wavefront engine 2)
    data = (GOLDEN / "photo-rgb-engine2.arc").read_bytes()
    assert container.read(data)[0].engine == 2
    assert np.array_equal(arcodec.decompress(data), _photo())
    # photo-rgb's file (id 18, now photo-rgb-v8) from before the regions' corrections (wavefront engine 3)
    data = (GOLDEN / "photo-rgb-engine3.arc").read_bytes()
    assert container.read(data)[0].engine == 3
    assert np.array_equal(arcodec.decompress(data), _photo())
    # photo-rgb's file (id 18, now photo-rgb-v8) from before the corrections were coded from the region above's (wavefront engine 4)
    data = (GOLDEN / "photo-rgb-engine4.arc").read_bytes()
    assert container.read(data)[0].engine == 4 and container.read((GOLDEN / "photo-rgb.arc").read_bytes())[0].engine == 5
    assert np.array_equal(arcodec.decompress(data), _photo())


def test_the_public_api_takes_a_pixel_limit():
    """``arcodec.decompress(..., max_pixels=)`` refuses a file over the limit before any work."""
    from arcodec.errors import ArcodecError

    data = (GOLDEN / "mnist-gated.arc").read_bytes()  # one 28x28 image: 784 sub-pixels
    with pytest.raises(ArcodecError, match="more than the limit of 783"):
        arcodec.decompress(data, max_pixels=783)
    assert arcodec.decompress(data, max_pixels=784).shape == (28, 28)


def test_a_superseded_model_still_decodes_its_files_and_is_never_picked():
    """Retrained weights are a new model (a new id); the model they replace stays, so that
    its files decode, but applies to no image."""
    from arcodec.codec import container
    from arcodec.zoo import applicable, cards

    old = [c for c in cards() if c.get("superseded_by")]
    assert [c["name"] for c in old] == ["mnist-gated-v1", "colour-mnist-made-v1", "photo-rgb-v1", "photo-rgb-v2",
                                        "mnist-gated-small-v1", "mnist-gated-medium-v1", "mnist-gated-v2",
                                        "mnist-gated-v3", "photo-rgb-v3", "photo-rgb-v4", "photo-rgb-v5",
                                        "photo-rgb-v6", "photo-rgb-v7", "photo-rgb-v8", "photo-rgb-v9",
                                        "photo-rgb-v10", "photo-rgb-v11", "photo-rgb-v12", "photo-rgb-420-v1",
                                        "photo-rgb-420-v2", "mnist-gated-v4", "photo-rgb-420-v3",
                                        "photo-rgb-420-v4", "mnist-gated-v5"]
    assert not any("applies" in c for c in old)
    for name, new, image, old_id in (("photo-rgb-v1", "photo-rgb", _photo(), 5), ("photo-rgb-v2", "photo-rgb", _photo(), 7),
                                     ("photo-rgb-v3", "photo-rgb", _photo(), 13),
                                     ("photo-rgb-v4", "photo-rgb", _photo(), 14),
                                     ("photo-rgb-v5", "photo-rgb", _photo(), 15),
                                     ("photo-rgb-v6", "photo-rgb", _photo(), 16),
                                     ("photo-rgb-v7", "photo-rgb", _photo(), 17),
                                     ("photo-rgb-v8", "photo-rgb", _photo(), 18),
                                     ("photo-rgb-v9", "photo-rgb", _photo(), 19),
                                     ("photo-rgb-v10", "photo-rgb", _photo(), 20),
                                     ("photo-rgb-v11", "photo-rgb", _photo(), 21),
                                     ("photo-rgb-v12", "photo-rgb", _photo(), 22),
                                     ("photo-rgb-420-v1", "photo-rgb-420", _photo(), 23),
                                     ("photo-rgb-420-v2", "photo-rgb-420", _photo(), 24),
                                     ("photo-rgb-420-v3", "photo-rgb-420", _photo(), 28),
                                     ("photo-rgb-420-v4", "photo-rgb-420", _photo(), 29),
                                     ("colour-mnist-made-v1", "colour-mnist-made", _colour_digit() // 85, 2),
                                     ("mnist-gated-v1", "mnist-gated", _digit(), 1),
                                     ("mnist-gated-v2", "mnist-gated", _digit(), 11),
                                     ("mnist-gated-v3", "mnist-gated", _digit(), 12),
                                     ("mnist-gated-v4", "mnist-gated", _digit(), 25),
                                     ("mnist-gated-v5", "mnist-gated", _digit(), 30),
                                     ("mnist-gated-small-v1", "mnist-gated-small", _digit(), 9),
                                     ("mnist-gated-medium-v1", "mnist-gated-medium", _digit(), 10)):
        names = applicable([image if image.ndim == 3 else image[:, :, None]])
        assert name not in names and (new in names or "applies" not in next(c for c in cards() if c["name"] == new))
        data = (GOLDEN / f"{name}.arc").read_bytes()
        assert container.read(data)[0].model_id == old_id != container.read((GOLDEN / f"{new}.arc").read_bytes())[0].model_id
        assert np.array_equal(arcodec.decompress(data), image)


def test_the_faster_digit_models_are_chosen_by_name_only():
    """The frontier's smaller Gated PixelCNNs (benchmarks/frontier.py) code a digit when named
    (their golden files above), but auto never tries them: on MNIST their files are larger."""
    from arcodec.zoo import applicable, cards

    named = sorted(c["name"] for c in cards() if c["arch"] == "gated-pixelcnn" and "applies" not in c
                   and not c.get("superseded_by"))
    assert named == ["mnist-gated-medium", "mnist-gated-small"]
    digit = _digit()[:, :, None]  # (H, W, C), as the codec gives it
    assert "mnist-gated" in applicable([digit]) and not set(named) & set(applicable([digit]))
