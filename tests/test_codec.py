import numpy as np
import pytest
import torch

import arcodec
from arcodec.codec import container
from arcodec.codec.api import decode_file, decode_many, encode_images, encode_many
from arcodec.errors import ArcodecError, FormatError, IntegrityError, ModelError
from conftest import SHARED_MNIST
from stream_helpers import decode_stream, encode_stream

SHARED_MNIST_PRESENT = SHARED_MNIST.exists()


def test_roundtrip_real_digits_tiny_model(tiny, digits):
    imgs = list(digits[:6])
    enc = encode_images(imgs, [f"{i}.png" for i in range(6)], model=tiny)
    header, out = decode_file(enc.data, model=tiny)
    assert [e.name for e in header.entries] == [f"{i}.png" for i in range(6)]
    for a, b in zip(imgs, out):
        assert np.array_equal(a, b[:, :, 0])


def test_shapes_tiles_and_colour_channel_by_channel(tiny):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (37, 21, 3), dtype=np.uint8),  # RGB, several tiles
            rng.integers(0, 256, (1, 1), dtype=np.uint8),
            np.full((9, 40), 255, dtype=np.uint8),
            rng.integers(0, 256, (20, 8, 4), dtype=np.uint8)]
    enc = encode_images(imgs, ["a", "b", "c", "d"], model=tiny, tile=16)
    header, out = decode_file(enc.data, model=tiny)
    assert header.tile == 16
    for a, b in zip(imgs, out):
        assert np.array_equal(a.reshape(b.shape), b)


def test_encoder_and_decoder_see_identical_tables(tiny, digits):
    """The table used to encode each symbol equals, element for element, the table the
    decoder computes for it (float64 weights compared with ==)."""
    x = torch.from_numpy(digits[:5]).long()[:, None]
    seen_enc, seen_dec = [], []
    payload, _ = encode_stream(tiny.net, x, on_table=lambda r0, r1, w: seen_enc.append(w))
    y = decode_stream(tiny.net, payload, 5, 1, 28, 28, on_table=lambda r, c, ch, w: seen_dec.append(w))
    assert torch.equal(x, y)
    enc = np.concatenate(seen_enc)
    dec = np.concatenate(seen_dec)
    assert enc.shape == dec.shape == (5 * 784, 256)
    assert np.array_equal(enc, dec)


def test_files_coded_together_equal_files_coded_alone(tiny, digits):
    """Batching several files through the model changes neither their bytes nor their pixels."""
    imgs = [digits[0], digits[1, :13, :20], digits[2], digits[3, :5, :5]]
    alone = [encode_images([a], model=tiny).data for a in imgs]
    together = encode_many(imgs, model=tiny, max_tiles=3)  # several batches, mixed shapes
    assert [e.data for e in together] == alone
    decoded = decode_many(alone[::-1], model=tiny, max_tiles=2)
    for a, (header, (b,)) in zip(imgs[::-1], decoded):
        assert not header.archive and np.array_equal(a, b[:, :, 0])


def test_one_corrupt_file_fails_a_batched_decode(tiny, digits):
    files = [e.data for e in encode_many(list(digits[:3]), model=tiny)]
    bad = bytearray(files[1])
    bad[-6] ^= 0x10  # a payload byte: decodes to other pixels, caught by the CRC32
    with pytest.raises((IntegrityError, FormatError)):
        decode_many([files[0], bytes(bad), files[2]], model=tiny)


def test_naive_and_cached_decoders_agree(tiny, digits):
    x = torch.from_numpy(digits[:3, :12, :12].copy()).long()[:, None]
    payload, _ = encode_stream(tiny.net, x)
    assert torch.equal(decode_stream(tiny.net, payload, 3, 1, 12, 12, naive=True), x)
    assert torch.equal(decode_stream(tiny.net, payload, 3, 1, 12, 12), x)


def test_each_kind_of_model_has_its_registered_coder():
    """A model's kind (its ``coding``, or its ``scan`` when not raster) picks one coder;
    a kind is registered once, and a kind without a coder is refused with a clear error."""
    from types import SimpleNamespace as Net

    from arcodec.codec import coders

    assert coders.coder_for(Net(), "m").kind == "autoregressive"
    assert coders.coder_for(Net(coding="flow"), "m").check is not None
    wave = coders.coder_for(Net(scan="wavefront"), "m")
    assert (wave.kind, wave.scan, wave.tile) == ("wavefront", container.SCAN_WAVEFRONT, 4096)
    with pytest.raises(ValueError, match="already registered"):
        coders.register_coder("flow", wave.encode, wave.decode)
    with pytest.raises(ArcodecError, match="continuous flow"):
        coders.coder_for(Net(coding="continuous"), "m")
    with pytest.raises(ArcodecError, match="no coder codes"):
        coders.coder_for(Net(coding="diffusion"), "m")


def test_unlikely_images_cost_more_but_decode(tiny):
    noise = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    data = arcodec.compress(noise, model=tiny)
    assert np.array_equal(arcodec.decompress(data, model=tiny), noise)
    blank = arcodec.compress(np.zeros((28, 28), np.uint8), model=tiny)
    assert len(blank) < len(data)


def test_estimate_matches_real_size(tiny, digits):
    enc = encode_images(list(digits[:20]), [str(i) for i in range(20)], model=tiny)
    overhead = len(enc.data) - enc.nll_bits / 8
    assert 0 <= overhead < container.header_size(enc.data) + 16


def test_bit_flips_and_truncation_never_pass_silently(tiny, digits):
    data = arcodec.compress(digits[0], model=tiny)
    rng = np.random.default_rng(0)
    for pos in rng.permutation(len(data))[:25]:
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(ArcodecError):
            arcodec.decompress(bytes(bad), model=tiny)
    for n in rng.permutation(len(data))[:15]:
        with pytest.raises(ArcodecError):
            arcodec.decompress(data[:n], model=tiny)


def test_crc_mismatch(tiny, digits):
    data = arcodec.compress(digits[1], model=tiny)
    with pytest.raises(IntegrityError, match="CRC32"):
        arcodec.decompress(data[:-4] + bytes(4), model=tiny)
    a = digits[1].copy()
    a[5, 5] ^= 1  # right file bytes, different pixels
    assert not container.verify(data, [a[:, :, None]])
    assert container.verify(data, [digits[1][:, :, None]])


def test_model_mismatch_and_unknown_models(tiny, digits, tmp_path):
    data = arcodec.compress(digits[2], model=tiny)
    with pytest.raises(ModelError, match="checkpoint"):
        arcodec.decompress(data)  # id 0: the file needs its checkpoint
    other = tmp_path / "other.pt"
    ckpt = torch.load(tiny.name, weights_only=True)
    ckpt["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, other)
    with pytest.raises(ModelError, match="different weights"):
        arcodec.decompress(data, model=str(other))
    with pytest.raises(ModelError, match="unknown model"):
        arcodec.compress(digits[0], model="no-such-model")
    with pytest.raises(ModelError, match="model id 99"):
        h, payload, crc = container.read(data)
        arcodec.decompress(container.write(container.Header(99, h.fingerprint, h.entries), payload, []))


def test_newer_version_and_bad_arrays(tiny):
    data = bytearray(arcodec.compress(np.zeros((4, 4), np.uint8), model=tiny))
    data[2] = (9 << 4) | (data[2] & 15)
    with pytest.raises(FormatError, match="version 9"):
        arcodec.decompress(bytes(data), model=tiny)
    for bad in (np.zeros((4, 4), np.float32), np.zeros((4, 4, 7), np.uint8), np.zeros((0, 4), np.uint8),
                np.full((2, 2), 300)):
        with pytest.raises(ArcodecError):
            arcodec.compress(bad, model=tiny)


def test_shipped_model_roundtrip_on_real_digits(shipped, digits):
    imgs = list(digits[:8])
    enc = encode_images(imgs, [str(i) for i in range(8)], model=shipped)
    _, out = decode_file(enc.data)  # the model comes from the file's id and fingerprint
    assert all(np.array_equal(a, b[:, :, 0]) for a, b in zip(imgs, out))
    single = arcodec.compress(digits[9])
    assert np.array_equal(arcodec.decompress(single), digits[9])
    if SHARED_MNIST_PRESENT:  # real MNIST: far below PNG's 2.68 bits/dim
        assert 8 * len(single) / 784 < 2.0
    else:  # upscaled 8x8 digits are not MNIST-like, but still cost less than raw bytes
        assert 8 * len(single) / 784 < 8.0


def test_default_model_by_image_type_from_the_cards(tmp_path, monkeypatch):
    import json

    import arcodec.zoo as zoo

    rgb4 = np.random.default_rng(0).integers(0, 4, (5, 5, 3)).astype(np.uint8)
    rgb8 = rgb4.copy()
    rgb8[0, 0, 0] = 200
    gray = rgb4[:, :, :1]
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    assert zoo.default_model([rgb4]) == zoo.DEFAULT_GRAY  # no card applies: the gray one
    card = lambda name, i, rank, rule: (tmp_path / f"{name}.json").write_text(  # noqa: E731
        json.dumps({"name": name, "id": i, "rank": rank, "applies": rule}))
    card("colour4", 7, 1, {"channels": [3], "levels": 4})
    card("rgb", 8, 2, {"channels": [3], "levels": 256})
    card("small", 9, 1, {"channels": [1], "levels": 256, "max_pixels": 16})
    assert zoo.default_model([rgb4]) == "colour4" and zoo.applicable([rgb4]) == ["colour4", "rgb"]
    assert zoo.default_model([rgb8]) == "rgb"
    assert zoo.default_model([rgb4, rgb8]) == "rgb"  # one model per file
    assert zoo.default_model([gray]) == zoo.DEFAULT_GRAY  # 25 pixels: more than "small" takes
    assert zoo.applicable([gray[:4, :4]]) == ["small"]


def test_shipped_colour_model_is_the_default_for_two_bit_colour(digits):
    """RGB images with values 0..3 go to the shipped colour PixelCNN-MADE by default."""
    import arcodec.zoo as zoo
    from arcodec.training.data import colourize

    card = next(c for c in zoo.cards() if c["name"] == "colour-mnist-made")
    img = colourize(torch.from_numpy(digits[:1, None]), seed=7)[0].permute(1, 2, 0).numpy()  # (28, 28, 3), 0..3
    data = arcodec.compress(img)
    header, _, _ = container.read(data)
    assert header.model_id == card["id"] and header.bit_depth == 2
    assert np.array_equal(arcodec.decompress(data), img)
    if SHARED_MNIST_PRESENT:  # a real colour digit: far below the 2 bits/sub-pixel of raw 2-bit data
        assert 8 * len(data) / img.size < 1.0


def test_max_pixels_refuses_larger_files_and_the_cli_raises_it(tiny, digits, tmp_path):
    """A file of more sub-pixels than ``max_pixels`` is refused from its header, with the way
    to raise the limit; ``arcodec decompress --max-pixels N`` raises it on the command line."""
    from click.testing import CliRunner
    from PIL import Image

    from arcodec.cli import main
    from arcodec.codec.api import decompress

    data = arcodec.compress(digits[0], model=tiny)
    with pytest.raises(FormatError, match="784 sub-pixels, more than the limit of 783.*--max-pixels"):
        decode_file(data, model=tiny, max_pixels=783)
    assert np.array_equal(decompress(data, model=tiny, max_pixels=784), digits[0])
    arc = tmp_path / "d.png.arc"
    arc.write_bytes(data)
    r = CliRunner().invoke(main, ["decompress", "-k", "-m", tiny.name, "--max-pixels", "783", str(arc)])
    assert r.exit_code == 1 and "more than the limit of 783" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "d.png").exists()
    r = CliRunner().invoke(main, ["decompress", "-k", "-m", tiny.name, "--max-pixels", "784", str(arc)])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), digits[0])


def test_decoder_batches_stay_within_their_memory_budget(tiny, digits, monkeypatch):
    """Tiles decoded together hold at most DECODE_SUBPIXELS sub-pixels (the progress of a row
    counts the batch's tiles), and the images are the same whatever the batches."""
    from arcodec.codec import api

    imgs = list(digits[:6])
    data = [encode_images([a], model=tiny).data for a in imgs]
    monkeypatch.setattr(api, "DECODE_SUBPIXELS", 2 * 28 * 28)
    rows = []
    out = decode_many(data, model=tiny, progress=rows.append)
    assert all(np.array_equal(a, b[0][:, :, 0]) for a, (_, b) in zip(imgs, out))
    assert sum(rows) == 6 * 28 * 28 and max(rows) == 2 * 28
