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
from arcodec.training.arcdataset import ArcDataset
from arcodec.errors import FormatError

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
