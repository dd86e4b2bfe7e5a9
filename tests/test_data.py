import io

import numpy as np
import pytest
import torch
from PIL import Image

from arcodec.errors import ArcodecError
from arcodec.training.data import (colourize, dataset_levels, labelled_datasets, load_dataset, load_labels,
                                   subsample_chroma)


def test_digits_splits_are_disjoint_and_seeded():
    parts = {s: load_dataset("digits", s) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 1797
    assert parts["train"].shape[1:] == (1, 8, 8) and parts["train"].dtype == torch.uint8
    assert torch.equal(parts["val"], load_dataset("digits", "val"))
    flat = {s: {bytes(a.numpy()) for a in p} for s, p in parts.items()}
    assert len(flat["val"] & flat["test"]) < 5  # (a few digits repeat exactly in the data set itself)


def test_colourize_is_deterministic_two_bit_and_keeps_the_digit():
    gray = load_dataset("digits", "test")
    gray = torch.nn.functional.interpolate(gray.float(), size=(28, 28)).round().to(torch.uint8)
    a, b = colourize(gray, 3), colourize(gray, 3)
    assert torch.equal(a, b) and a.shape == (len(gray), 3, 28, 28) and int(a.max()) <= 3
    assert not torch.equal(a, colourize(gray, 4))
    stroke, background = gray[:, 0] >= 160, gray[:, 0] < 64
    for i in range(len(a)):  # stroke and background colours differ by >= 4 steps (L1)
        if stroke[i].any():
            fg = a[i][:, stroke[i]][:, 0].int()
            bg = a[i][:, background[i]][:, 0].int()
            assert int((fg - bg).abs().sum()) >= 4


def test_folder_of_images_gives_seeded_crops(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    x = load_dataset(f"folder:{tmp_path}", "train", crop=16, crops=3)
    assert x.shape == (8 * 3, 3, 16, 16) and x.dtype == torch.uint8
    assert torch.equal(x, load_dataset(f"folder:{tmp_path}", "train", crop=16, crops=3))
    g = load_dataset(f"folder:{tmp_path}", "val", crop=16, crops=2, mode="L")
    assert g.shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="smaller than the crop"):
        load_dataset(f"folder:{tmp_path}", "test", crop=64)
    with pytest.raises(FileNotFoundError):
        load_dataset(f"folder:{tmp_path / 'nothing'}", "train")


def test_chroma_round_trip_is_jpegs_420():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (37, 42, 3), dtype=np.uint8)  # odd height: the last row repeats
    ours = subsample_chroma(img)
    jpeg = io.BytesIO()
    Image.fromarray(img).save(jpeg, "JPEG", quality=100, subsampling=2)  # 4:2:0, libjpeg's fancy upsampling
    theirs = np.asarray(Image.open(jpeg)).astype(int)
    # quality 100 still rounds the DCT: within that of JPEG's own 4:2:0, far from the input
    assert np.abs(ours - theirs).mean() < 0.2 * np.abs(img - theirs).mean()
    gray = np.repeat(img[..., :1], 3, axis=2)  # no chroma: unchanged
    assert np.array_equal(subsample_chroma(gray), gray)


def test_folder_crops_after_chroma_subsampling(tmp_path):
    img = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(img).save(tmp_path / "a" / "x.png")
    Image.fromarray(subsample_chroma(img)).save(tmp_path / "b" / "x.png")
    plain = load_dataset(f"folder:{tmp_path / 'a'}", "train", crop=16, crops=40, flip=True)
    assert torch.equal(plain, load_dataset(f"folder:{tmp_path / 'a'}", "train", crop=16, crops=40, flip=True,
                                           chroma=0.0))
    sub = load_dataset(f"folder:{tmp_path / 'b'}", "train", crop=16, crops=40, flip=True)
    assert torch.equal(sub, load_dataset(f"folder:{tmp_path / 'a'}", "train", crop=16, crops=40, flip=True,
                                         chroma=1.0))  # the same places, the other image
    half = load_dataset(f"folder:{tmp_path / 'a'}", "val", crop=16, crops=40, chroma=0.5)
    both = load_dataset(f"folder:{tmp_path / 'a'}", "val", crop=16, crops=40)
    from_sub = [not torch.equal(h, b) for h, b in zip(half, both)]
    assert 5 < sum(from_sub) < 35  # every split, about half
    with pytest.raises(ValueError, match="needs RGB"):
        load_dataset(f"folder:{tmp_path / 'a'}", "train", crop=16, crops=2, mode="L", chroma=0.5)
    with pytest.raises(ValueError, match="from 0 to 1"):
        load_dataset(f"folder:{tmp_path / 'a'}", "train", crop=16, crops=2, chroma=1.5)


def test_levels_and_unknown_names():
    assert dataset_levels("mnist") == 256 and dataset_levels("binarized-mnist") == 2
    assert dataset_levels("colour-mnist") == 4
    with pytest.raises(KeyError, match="unknown data set"):
        load_dataset("imagenet", "train")
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "dev")


def test_labels_follow_the_images():
    assert {"mnist", "fashion-mnist", "cifar10", "digits"} <= set(labelled_datasets())
    for split in ("train", "val", "test"):
        y = load_labels("digits", split)
        assert y.dtype == torch.int64 and len(y) == len(load_dataset("digits", split))
    y, x = load_labels("digits", "test"), load_dataset("digits", "test")
    from sklearn.datasets import load_digits as sk_digits

    sk = sk_digits()
    i = int(np.flatnonzero((np.round(sk.images * (255.0 / 16.0)) == x[0, 0].numpy()).all(axis=(1, 2)))[0])
    assert int(sk.target[i]) == int(y[0])  # the label of the same image
    assert torch.equal(load_labels("digits-4x4-binary", "val"), load_labels("digits", "val"))
    with pytest.raises(ArcodecError, match="toy1d has no labels"):
        load_labels("toy1d", "train")


def test_missing_torchvision_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--download"):
        load_dataset("fashion-mnist", "test", root=str(tmp_path))


def test_colour_mnist_dataset_class(tmp_path):
    """torchvision-style: (image, label) items; a clear error when MNIST is missing."""
    from conftest import SHARED_MNIST

    from arcodec.training.data import ColourMNIST

    with pytest.raises(FileNotFoundError, match="download"):
        ColourMNIST(root=str(tmp_path), train=False)
    if SHARED_MNIST.exists():
        ds = ColourMNIST(train=False)
        x, y = ds[0]
        assert len(ds) == 10000 and x.shape == (3, 28, 28) and int(x.max()) <= 3 and 0 <= y <= 9
        assert torch.equal(ColourMNIST(train=False)[5][0], ds[5][0])  # deterministic
