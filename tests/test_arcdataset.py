"""ArcDataset: a torch Dataset over the images of one .arc file."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import arcodec
import arcodec.codec.api
from arcodec.codec import container
from arcodec.codec.api import Archive, decode_file
from arcodec.errors import ArcodecError, FormatError, IntegrityError
from arcodec.training.arcdataset import ArcDataset

RNG = np.random.default_rng(18)
IMAGES = [RNG.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(12)]
FOLDERS = ["3", "7", "10"]  # sorted as strings (as torchvision's ImageFolder): 10, 3, 7
NAMES = [f"{FOLDERS[i % 3]}/{i:05d}.png" for i in range(12)]
CLASS = [{"10": 0, "3": 1, "7": 2}[FOLDERS[i % 3]] for i in range(12)]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """12 images coded by the shipped gray model (so reading them runs the real decoder)."""
    path = tmp_path_factory.mktemp("arc") / "set.arc"
    path.write_bytes(arcodec.codec.api.encode_images(IMAGES, names=NAMES, model="mnist-gated").data)
    return path


@pytest.fixture
def decodes(monkeypatch) -> list:
    """Counts this process's calls of arcodec.codec.api.decode_file."""
    calls = []
    real = arcodec.codec.api.decode_file
    monkeypatch.setattr(arcodec.codec.api, "decode_file", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_len_and_labels_from_the_header(archive, decodes):
    ds = ArcDataset(archive)
    assert len(ds) == 12
    assert ds.classes == ["10", "3", "7"] and ds.labels == CLASS and ds.names == NAMES
    assert decodes == []
    with pytest.raises(IndexError):
        ds[12]
    assert decodes == []


def test_items(archive, decodes):
    ds = ArcDataset(archive, transform=lambda x: x.flip(-1))
    for i in (5, 0, 11):
        x, y = ds[i]
        assert x.dtype == torch.uint8 and x.shape == (1, 8, 8) and y == CLASS[i]
        assert np.array_equal(x[0].numpy(), IMAGES[i][:, ::-1])
        x[:] = 0  # the caller owns the tensor: the cached images stay intact
    assert np.array_equal(ds[5][0][0].numpy(), IMAGES[5][:, ::-1])
    assert len(decodes) <= 1  # the whole file once (or not at all if an earlier test cached it)


def test_dataloader_with_two_workers(archive, decodes, tmp_path):
    shutil.copy(archive, tmp_path / "fresh.arc")  # a file no earlier test decoded in this process
    ds = ArcDataset(tmp_path / "fresh.arc")
    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=4, num_workers=2):
        assert x.shape == (4, 1, 8, 8) and x.dtype == torch.uint8
        xs.append(x)
        ys.append(y)
    assert np.array_equal(torch.cat(xs)[:, 0].numpy(), np.stack(IMAGES))
    assert torch.cat(ys).tolist() == CLASS
    assert decodes == []  # the workers decoded; this process did not
    assert len(pickle.dumps(ds)) < 4096  # no pixels travel to the workers


def test_labels_given(archive, tmp_path):
    want = [(3 * i) % 5 for i in range(12)]
    (tmp_path / "labels.json").write_text(json.dumps(dict(zip(NAMES, want))))
    (tmp_path / "labels.csv").write_text("name,label\n" + "".join(f"{n},{y}\n" for n, y in zip(NAMES, want)))
    for labels in (dict(zip(NAMES, want)), want, str(tmp_path / "labels.json"), tmp_path / "labels.csv"):
        assert ArcDataset(archive, labels=labels).labels == want
    assert ArcDataset(archive, labels=want)[4][1] == want[4]
    with pytest.raises(ValueError, match="no label for 1 image"):
        ArcDataset(archive, labels=dict(zip(NAMES[1:], want)))
    with pytest.raises(ValueError, match="11 labels for the 12 images"):
        ArcDataset(archive, labels=want[1:])


def test_single_image_file_and_colour(tmp_path):
    rgb = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    (tmp_path / "one.arc").write_bytes(arcodec.compress(rgb))
    ds = ArcDataset(tmp_path / "one.arc")
    assert len(ds) == 1 and ds.classes == []
    x, y = ds[0]
    assert y == -1 and x.shape == (3, 5, 6)
    assert np.array_equal(x.permute(1, 2, 0).numpy(), rgb)


def test_not_an_arc_file(tmp_path):
    (tmp_path / "bad.arc").write_bytes(b"garbage")
    with pytest.raises(FormatError, match="not an arcodec file"):
        ArcDataset(tmp_path / "bad.arc")


def test_ecosystem_doc_examples_run(tmp_path, monkeypatch):
    """The Python blocks of docs/ecosystem.md (Pillow plugin and ArcDataset) run as written."""
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "ecosystem.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, str(doc), "exec"), {})


MANY = [RNG.integers(0, 256, (8, 8, 1), dtype=np.uint8) for _ in range(600)]  # 3 streams: 256 + 256 + 88 tiles


@pytest.fixture(scope="module")
def streamed():
    """An archive of 600 images in 3 streams: it carries a CRC32 of every stream."""
    return arcodec.codec.api.encode_images(MANY, names=[f"{i}.png" for i in range(600)], model="mnist-gated").data


def test_an_item_decodes_only_the_streams_that_hold_it(streamed):
    assert container.read(streamed)[0].stream_crcs
    arc = Archive(streamed)
    assert arc.random_access and arc.decoded_streams == 0
    assert np.array_equal(arc[300], MANY[300]) and arc.decoded_streams == 1  # stream 2 alone
    assert np.array_equal(arc[299], MANY[299]) and arc.decoded_streams == 1  # from the cache
    assert np.array_equal(arc[-1], MANY[599]) and arc.decoded_streams == 2
    small = Archive(streamed, cache_subpixels=1)  # keeps one stream only
    for i in (0, 300, 1):
        assert np.array_equal(small[i], MANY[i])
    assert small.decoded_streams == 3
    whole = decode_file(streamed)[1]  # the file's CRC32 and every stream's agree
    assert all(np.array_equal(a, b) for a, b in zip(whole, MANY))


def test_a_corrupt_stream_is_refused_when_decoded_alone(streamed):
    start = container.read_header(streamed)[1]
    sums, rest = streamed[start: start + 12], streamed[start + 12: -4]
    parts = container.split_parts(rest, 3, "stream")
    at = len(streamed) - 4 - len(parts[2]) // 2  # the middle of stream 3
    bad = bytearray(streamed)
    bad[at] ^= 0x10
    arc = Archive(bytes(bad))
    assert np.array_equal(arc[0], MANY[0]) and np.array_equal(arc[256], MANY[256])  # streams 1 and 2 are intact
    with pytest.raises(ArcodecError):
        arc[512]
    with pytest.raises(ArcodecError):
        decode_file(bytes(bad))
    wrong = bytearray(streamed)
    wrong[start + 4] ^= 1  # stream 2's checksum
    with pytest.raises(IntegrityError, match="CRC32 of stream 2 of 3 fails"):
        Archive(bytes(wrong))[256]
    assert sums == b"".join(int.to_bytes(c, 4, "little") for c in Archive(streamed)._job.crcs)


def test_dataloader_over_several_streams(streamed, tmp_path):
    (tmp_path / "many.arc").write_bytes(streamed)
    ds = ArcDataset(tmp_path / "many.arc", cache_subpixels=8 * 8 * 256)
    xs = torch.cat([x for x, _ in DataLoader(ds, batch_size=50, num_workers=2)])
    assert np.array_equal(xs.permute(0, 2, 3, 1).numpy(), np.stack(MANY))
