"""A PyTorch Dataset over the images of one .arc file (an archive, or a single image).

    ds = ArcDataset("mnist-test.arc")                 # labels from folders: "3/00001.png" -> "3"
    x, y = ds[0]                                      # (C, H, W) uint8 tensor, int label
    loader = DataLoader(ds, batch_size=64, num_workers=2, persistent_workers=True)

``len(ds)`` comes from the header alone. The pixels are decoded lazily: the first item a
process asks for decodes the whole file (an archive decodes in one call) and the images are
kept in a small per-process cache, so each DataLoader worker decodes the file once (with
``persistent_workers=True``, once for all epochs). The dataset itself holds only the path,
the header's entries and the labels: it pickles cheaply and decodes in the worker.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from arcodec.codec import container


@lru_cache(maxsize=2)
def _decoded(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, ...]:
    """Every image (H, W, C) uint8 of a file; keyed by size and mtime so that a rewritten
    file is decoded again."""
    from arcodec.codec.api import decode_file

    return tuple(decode_file(Path(path).read_bytes())[1])


def read_labels(source: str | os.PathLike) -> dict[str, int] | list[int]:
    """Labels from a side file: JSON (a dict name -> int, or a list) or CSV rows ``name,label``
    (a first row whose label is not an integer is a header and skipped)."""
    path = Path(source)
    if path.suffix.lower() == ".json":
        return json.loads(path.read_text())
    out = {}
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row:
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{i + 1}: expected 'name,label', got {row!r}")
            try:
                out[row[0]] = int(row[1])
            except ValueError:
                if i:
                    raise ValueError(f"{path}:{i + 1}: label {row[1]!r} is not an integer") from None
    return out


class ArcDataset(torch.utils.data.Dataset):
    """(image (C, H, W) uint8 tensor after ``transform``, label int) for each image of a .arc file.

    ``labels``: a dict name -> int, a list (in the file's order), or the path of a side file
    (see :func:`read_labels`). Without it, the label is the index of the entry's parent folder
    among the sorted folder names (``classes``, as torchvision's ImageFolder), and -1 for an
    entry that has no folder."""

    def __init__(self, path: str | os.PathLike, transform=None, labels=None):
        self.path = os.path.abspath(path)
        self.transform = transform
        header = container.read(Path(self.path).read_bytes())[0]
        self.entries = header.entries
        self.names = [e.name for e in self.entries]
        folders = [PurePosixPath(n).parent.name for n in self.names]
        self.classes = sorted({f for f in folders if f})
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        if labels is None:
            self.labels = [self.class_to_idx.get(f, -1) for f in folders]
        else:
            self.labels = self._given(read_labels(labels) if isinstance(labels, (str, os.PathLike)) else labels)

    def _given(self, labels) -> list[int]:
        if isinstance(labels, Mapping):
            missing = [n for n in self.names if n not in labels]
            if missing:
                raise ValueError(f"labels name no label for {len(missing)} image(s) of {self.path}, "
                                 f"e.g. {missing[0]!r}")
            return [int(labels[n]) for n in self.names]
        labels = [int(y) for y in labels]
        if len(labels) != len(self.names):
            raise ValueError(f"{len(labels)} labels for the {len(self.names)} images of {self.path}")
        return labels

    def __len__(self) -> int:
        return len(self.entries)

    def images(self) -> tuple[np.ndarray, ...]:
        """Every image (H, W, C) uint8, decoded on the first call in this process (cached)."""
        st = os.stat(self.path)
        out = _decoded(self.path, st.st_size, st.st_mtime_ns)
        if [a.shape for a in out] != [(e.height, e.width, e.channels) for e in self.entries]:
            raise RuntimeError(f"{self.path} changed since the dataset was made: make a new ArcDataset")
        return out

    def __getitem__(self, i: int):
        label = self.labels[i]  # an index out of range fails here, before any decoding
        x = torch.tensor(self.images()[i].transpose(2, 0, 1))  # a copy: the cache stays intact
        return (self.transform(x) if self.transform else x), label
