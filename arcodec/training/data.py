"""Data sets as uint8 tensors (N, C, H, W): uint8 in, uint8 out.

Every data set is registered by name with the number of levels its values take.
Splits are fixed and seeded (``SPLIT_SEED``):

* ``mnist``, ``fashion-mnist``: ``train`` is the first 55,000 images of a fixed permutation
  of the 60,000 training images, ``val`` the other 5,000; ``test`` the 10,000 test images.
* ``cifar10``: the same with 45,000 / 5,000 of the 50,000 training images; 10,000 test.
* ``binarized-mnist``: MNIST's splits thresholded at 128 (pixel >= 128 -> 1): a fixed,
  deterministic binarization, 2 levels.
* ``colour-mnist``: MNIST's splits with stroke and background in colours drawn per image
  (seeded by split and index), 2 bits per channel: (N, 3, 28, 28), values 0..3.
* ``digits``: scikit-learn's 8x8 digits scaled to 0..255 (1,797 images): 80/10/10.
* ``folder:PATH``: every image file under PATH; the files (sorted) are split 80/10/10 by a
  seeded permutation, and each split is cut into seeded random crops of ``crop`` x ``crop``
  pixels (``crops`` per image), grayscale or RGB as the files are (``mode`` forces one),
  half of the training crops mirrored when ``flip`` is set, and a seeded fraction ``chroma``
  of every split's crops (RGB only) cut from the image after a 4:2:0 chroma round trip
  (:func:`subsample_chroma`), as most photos that went through JPEG, video or Photo CD are.

Data sets with labels (the MNIST family, fashion-mnist, cifar10, digits and its 4x4
binarization) give them through :func:`load_labels`, in the order of their images: a
class-conditional model (``classes`` > 0) trains on them.

The torchvision sets are read from ``--data-root`` (default ``../shared/data`` beside the
checkout, or ``$ARCODEC_DATA``); ``download=True`` lets torchvision fetch them there.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from arcodec.errors import ArcodecError
from arcodec.imageio import IMAGE_SUFFIXES, read_image, to_luma
from arcodec.models.conditioned import to_gray  # the conditioning variable, defined with its model

DEFAULT_ROOT = os.environ.get("ARCODEC_DATA", str(Path(__file__).resolve().parents[2].parent / "shared" / "data"))
SPLIT_SEED = 0
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    levels: int
    load: Callable[..., torch.Tensor]  # (split, root, download, **options) -> (N, C, H, W) uint8
    description: str
    labels: Callable[..., torch.Tensor] | None = None  # (split, root, download) -> (N,) int64, in load's order


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, levels: int, description: str):
    """Decorator: ``@register_dataset("mnist", 256, "...")`` on ``load(split, root, download, **options)``."""

    def wrap(fn):
        if name in DATASETS:
            raise ValueError(f"data set {name!r} registered twice")
        DATASETS[name] = DatasetInfo(name, levels, fn, description)
        return fn

    return wrap


def register_labels(*names: str):
    """Decorator: ``@register_labels("mnist", "binarized-mnist")`` on ``labels(split, root,
    download)``, the (N,) int64 labels of the images those registered data sets load, in
    the same order."""

    def wrap(fn):
        for name in names:
            DATASETS[name] = dataclasses.replace(DATASETS[name], labels=fn)
        return fn

    return wrap


def _split(n: int, fractions: tuple[float, float]) -> dict[str, np.ndarray]:
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    a = int(round(n * fractions[0]))
    b = a + int(round(n * fractions[1]))
    return {"train": perm[:a], "val": perm[a:b], "test": perm[b:]}


def _torchvision(cls_name: str, split: str, root: str | None, download: bool, val: int,
                 targets: bool = False):
    import torchvision.datasets as tvd

    root = root or DEFAULT_ROOT
    try:
        ds = getattr(tvd, cls_name)(root=root, train=split != "test", download=download)
    except RuntimeError as e:
        raise FileNotFoundError(f"{cls_name} not found under {root} (use --download or --data-root): {e}") from None
    data = torch.as_tensor(ds.data)
    data = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)  # CIFAR is NHWC
    labels = torch.as_tensor(ds.targets)
    if split != "test":
        perm = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(data)))
        idx = perm[val:] if split == "train" else perm[:val]
        data, labels = data[idx], labels[idx]
    data = data.contiguous()
    return (data, labels) if targets else data


@register_dataset("mnist", 256, "MNIST, 28x28 grayscale, 55,000 / 5,000 / 10,000")
def load_mnist(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    """MNIST as (N, 1, 28, 28) uint8 through torchvision (``download=True`` fetches it)."""
    return _torchvision("MNIST", split, root, download, 5000)


@register_dataset("fashion-mnist", 256, "Fashion-MNIST, 28x28 grayscale, 55,000 / 5,000 / 10,000")
def load_fashion_mnist(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    return _torchvision("FashionMNIST", split, root, download, 5000)


@register_dataset("cifar10", 256, "CIFAR-10, 32x32 RGB, 45,000 / 5,000 / 10,000")
def load_cifar10(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    return _torchvision("CIFAR10", split, root, download, 5000)


@register_labels("fashion-mnist")
def load_fashion_mnist_labels(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    """The clothing classes (N,) of ``fashion-mnist``'s images, in the same order."""
    return _torchvision("FashionMNIST", split, root, download, 5000, targets=True)[1]


@register_labels("cifar10")
def load_cifar10_labels(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    """The classes (N,) of ``cifar10``'s images, in the same order."""
    return _torchvision("CIFAR10", split, root, download, 5000, targets=True)[1]


@register_dataset("binarized-mnist", 2, "MNIST thresholded at 128, values 0/1")
def load_binarized_mnist(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    return (load_mnist(split, root, download) >= 128).to(torch.uint8)


_BERNOULLI_SEED = {"train": 81, "val": 82, "test": 83}


@register_dataset("binarized-mnist-sampled", 2,
                  "MNIST binarized once by seeded Bernoulli draws (p = intensity / 255), values 0/1")
def load_sampled_binarized_mnist(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    """MNIST's splits with every pixel drawn once as 1 with probability intensity / 255
    (numpy's PCG64 seeded per split, so the set is fixed): the protocol of the binarized
    MNIST of Larochelle and Murray (2011) that the course's table (NADE, MADE, PixelCNN,
    Row LSTM) reports on. It is not their file: the draws differ, the statistics match.
    Thresholding (``binarized-mnist``: pixel >= 128) removes the stroke-edge noise and
    makes the set far easier (lower NLL); the two are not comparable."""
    x = load_mnist(split, root, download)
    u = np.random.default_rng(_BERNOULLI_SEED[split]).random(tuple(x.shape))
    return torch.from_numpy((u < x.numpy() / 255.0).astype(np.uint8))


# Colour MNIST: 2 bits per channel. Background and stroke colours are drawn from the 64
# colours of {0..3}^3 per image, the stroke's at least 4 steps (L1) from the background's
# so that the digit stays visible; the stroke strength is MNIST's intensity cut into
# 3 bands so anti-aliased edges get a colour between the two.
_COLOUR_SEED = {"train": 1, "val": 2, "test": 3}


def colourize(gray: torch.Tensor, seed: int) -> torch.Tensor:
    """(N, 1, H, W) uint8 grayscale -> (N, 3, H, W) uint8 with values 0..3 (deterministic)."""
    rng = np.random.default_rng(seed)
    palette = np.array([(r, g, b) for r in range(4) for g in range(4) for b in range(4)])
    n = len(gray)
    far = np.abs(palette[:, None] - palette[None]).sum(axis=2) >= 4  # (bg, fg) allowed pairs
    b = rng.integers(0, 64, n)
    pick = np.floor(rng.random(n) * far[b].sum(axis=1)).astype(int)  # the pick-th allowed fg
    f = np.argmax(np.cumsum(far[b], axis=1) > pick[:, None], axis=1)
    bg, fg = palette[b], palette[f]
    t = np.digitize(gray.numpy()[:, 0], [64, 160]) / 2.0  # 0, 0.5, 1
    out = bg[:, :, None, None] + (fg - bg)[:, :, None, None] * t[:, None]
    return torch.from_numpy(np.round(out).astype(np.uint8))


@register_dataset("colour-mnist", 4, "MNIST in seeded colours, 28x28x3, 2 bits per channel")
def load_colour_mnist(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    return colourize(load_mnist(split, root, download), _COLOUR_SEED[split])


@register_dataset("colour-mnist-gray", 10, "the gray (r + g + b, 0..9) of colour MNIST's images")
def load_colour_mnist_gray(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    return to_gray(load_colour_mnist(split, root, download).long()).to(torch.uint8)


@register_labels("mnist", "binarized-mnist", "binarized-mnist-sampled", "colour-mnist", "colour-mnist-gray")
def load_mnist_labels(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    """The digit labels (N,) of :func:`load_mnist`'s images (and of the data sets made from
    them, image by image), in the same order."""
    return _torchvision("MNIST", split, root, download, 5000, targets=True)[1]


class ColourMNIST(torch.utils.data.Dataset):
    """Colour MNIST as a torchvision-style Dataset: ``ColourMNIST(root, train=True,
    download=False, transform=None)[i]`` is (image (3, 28, 28) uint8 with values 0..3, label).

    ``train=True`` gives all 60,000 training digits, ``train=False`` the 10,000 test digits
    (colours seeded per split, as :func:`colourize`); ``load_dataset("colour-mnist", split)``
    gives the seeded train/val/test splits instead."""

    def __init__(self, root: str | None = None, train: bool = True, download: bool = False, transform=None):
        from torchvision.datasets import MNIST

        try:
            ds = MNIST(root=root or DEFAULT_ROOT, train=train, download=download)
        except RuntimeError as e:
            raise FileNotFoundError(f"MNIST not found under {root or DEFAULT_ROOT} (download=True fetches it): {e}") from None
        self.data = colourize(ds.data.unsqueeze(1), 11 if train else 13)
        self.targets = torch.as_tensor(ds.targets)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        x = self.data[i]
        return (self.transform(x) if self.transform else x), int(self.targets[i])


@register_dataset("digits", 256, "scikit-learn's 8x8 digits scaled to 0..255, 80/10/10 of 1,797")
def load_digits(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    """scikit-learn's 8x8 digits (values 0..16) scaled to 0..255, as (N, 1, 8, 8) uint8."""
    from sklearn.datasets import load_digits as sk_digits

    images = sk_digits().images  # float 0..16
    data = torch.from_numpy(np.round(images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    return data[torch.from_numpy(_split(len(data), (0.8, 0.1))[split])]


@register_dataset("digits-4x4-binary", 2,
                  "scikit-learn's digits averaged to 4x4 and thresholded (levels 0/1): small "
                  "enough to enumerate every image (arcodec.explore.enumeration)")
def load_digits_4x4_binary(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    """(N, 1, 4, 4) uint8 in {0, 1}: each 2x2 block of the 8x8 digits (0..255) averaged, 1
    where the mean is at least 64. Same splits as ``digits``."""
    pooled = torch.nn.functional.avg_pool2d(load_digits(split).float(), 2)
    return (pooled >= 64).to(torch.uint8)


@register_labels("digits", "digits-4x4-binary")
def load_digits_labels(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    """The labels (0..9, int64) of ``load_digits(split)``'s images, in the same order."""
    from sklearn.datasets import load_digits as sk_digits

    target = sk_digits().target
    return torch.from_numpy(target[_split(len(target), (0.8, 0.1))[split]]).long()


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | {".jpg", ".jpeg"} and p.is_file())
    if not files:
        raise FileNotFoundError(f"no image files under {folder}")
    return files


def subsample_chroma(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB through a 4:2:0 chroma round trip, as a JPEG coder and decoder do it:
    JFIF's full-range YCbCr (each plane rounded to 8 bits), Cb and Cr averaged over 2x2 blocks
    (the last row or column repeated at an odd side), then brought back to full size by the
    triangle filter of libjpeg's fancy upsampling (bilinear, half-pixel centres) and to RGB."""
    rgb = img.astype(np.float64)
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    ycc = np.clip(np.rint(rgb @ m.T + [0.0, 128.0, 128.0]), 0, 255)
    h, w = img.shape[:2]
    c = np.pad(ycc[..., 1:], ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    c = c.reshape(c.shape[0] // 2, 2, c.shape[1] // 2, 2, 2).mean(axis=(1, 3))
    c = torch.nn.functional.interpolate(torch.from_numpy(c).permute(2, 0, 1)[None], scale_factor=2,
                                        mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    ycc[..., 1:] = np.rint(c.numpy()[:h, :w])
    out = (ycc - [0.0, 128.0, 128.0]) @ np.linalg.inv(m).T
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def load_folder(folder: str | Path, split: str, crop: int = 32, crops: int = 64, mode: str = "",
                flip: bool = False, chroma: float = 0.0) -> torch.Tensor:
    """Seeded random ``crop`` x ``crop`` crops (``crops`` per image) of the images of one split
    of a folder, as (N, C, crop, crop) uint8; ``mode`` "L" or "RGB" forces the channels;
    ``flip`` mirrors a seeded half of the training split's crops left to right; a seeded
    fraction ``chroma`` of every split's crops comes from the image after
    :func:`subsample_chroma` (RGB images only)."""
    if not 0.0 <= chroma <= 1.0:
        raise ValueError(f"chroma is a fraction of the crops, from 0 to 1, not {chroma}")
    files = image_files(folder)
    idx = _split(len(files), (0.8, 0.1))[split] if len(files) >= 3 else np.arange(len(files))
    rng = np.random.default_rng([SPLIT_SEED, SPLITS.index(split)])
    out = []
    for i in sorted(idx.tolist()):
        img = read_image(files[i].read_bytes(), str(files[i]))  # (H, W, C) uint8
        if mode == "L" and img.shape[2] != 1:
            img = to_luma(img)
        elif mode == "RGB" and img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        h, w = img.shape[:2]
        if h < crop or w < crop:
            raise ValueError(f"{files[i]} is {h}x{w}, smaller than the crop size {crop}")
        ys = rng.integers(0, h - crop + 1, crops)
        xs = rng.integers(0, w - crop + 1, crops)
        flips = rng.random(crops) < 0.5 if flip and split == "train" else np.zeros(crops, dtype=bool)
        sources = [img] * crops
        if chroma > 0:  # drawn after the rest, so that chroma=0 keeps the crops it always gave
            if img.shape[2] != 3:
                raise ValueError(f"chroma subsampling needs RGB images; {files[i]} is grayscale (or mode=L)")
            sub = subsample_chroma(img)
            sources = [sub if p else img for p in rng.random(crops) < chroma]
        out += [s[y: y + crop, x: x + crop][:, ::-1] if f else s[y: y + crop, x: x + crop]
                for s, y, x, f in zip(sources, ys, xs, flips)]
    if not out:
        raise ValueError(f"the {split} split of {folder} holds no image ({len(files)} files in all)")
    channels = {a.shape[2] for a in out}
    if len(channels) > 1:
        raise ValueError(f"{folder} mixes grayscale and colour images: pass mode=L or mode=RGB")
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def dataset_levels(name: str) -> int:
    """Number of levels the values of data set ``name`` take."""
    if name.startswith("folder:"):
        return 256
    _known(name)
    return DATASETS[name].levels


def _known(name: str) -> None:
    _load_extra()
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}, folder:PATH")


def load_dataset(name: str, split: str, root: str | None = None, download: bool = False,
                 **options) -> torch.Tensor:
    """Split ``split`` of data set ``name`` as (N, C, H, W) uint8.

    ``options`` go to the loader (for ``folder:PATH``: crop, crops, mode)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    if name.startswith("folder:"):
        return load_folder(name[len("folder:"):], split, **options)
    _known(name)
    return DATASETS[name].load(split, root, download, **options)


def labelled_datasets() -> list[str]:
    """Names of the data sets that have labels."""
    _load_extra()
    return sorted(n for n, info in DATASETS.items() if info.labels is not None)


def load_labels(name: str, split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    """The labels (N,) int64 of split ``split`` of data set ``name``, in the order of
    :func:`load_dataset`'s images; a data set without labels is an :class:`ArcodecError`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    if not name.startswith("folder:"):
        _known(name)
    info = DATASETS.get(name)
    if info is None or info.labels is None:
        raise ArcodecError(f"data set {name} has no labels (labelled: {', '.join(labelled_datasets())})")
    return info.labels(split, root, download)


def _load_extra() -> None:
    """Data sets defined next to the models that use them register themselves on import."""
    import arcodec.training.toydata  # noqa: F401

