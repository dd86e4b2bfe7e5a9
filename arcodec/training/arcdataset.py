"""A PyTorch Dataset over the images of one .arc file (an archive, or a single image).

    ds = ArcDataset("mnist-test.arc")                 # labels from folders: "3/00001.png" -> "3"
    x, y = ds[0]                                      # (C, H, W) uint8 tensor, int label
    loader = DataLoader(ds, batch_size=64, num_workers=2, persistent_workers=True)

``len(ds)`` comes from the header alone. The pixels are decoded lazily, a stream at a time
(:class:`arcodec.codec.api.Archive`): an item decodes only the streams that hold it (up to
256 tiles each), each checked by its own CRC32, and each process keeps the decoded streams
in a small cache (``cache_subpixels``, 64 Mi sub-pixels by default: all of MNIST, a few
hundred photos). A file without stream checksums (one written before them, a stored file)
is decoded whole on first use and checked by the file's CRC32. The dataset itself holds only
the path, the header's entries and the labels: it pickles cheaply and decodes in the worker.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path, PurePosixPath

import torch

from arcodec.codec import container


@lru_cache(maxsize=2)
def _archive(path: str, size: int, mtime_ns: int, cache_subpixels: int):
    """This process's :class:`~arcodec.codec.api.Archive` of a file; keyed by size and
    mtime so that a rewritten file is read again."""
    from arcodec.codec.api import Archive

    return Archive(Path(path).read_bytes(), cache_subpixels=cache_subpixels)


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
    entry that has no folder. ``cache_subpixels``: decoded sub-pixels each process keeps
    (default :data:`arcodec.codec.api.ARCHIVE_CACHE`, 64 Mi)."""

    def __init__(self, path: str | os.PathLike, transform=None, labels=None, cache_subpixels: int | None = None):
        from arcodec.codec.api import ARCHIVE_CACHE

        self.path = os.path.abspath(path)
        self.transform = transform
        self.cache_subpixels = cache_subpixels or ARCHIVE_CACHE
        st = os.stat(self.path)
        self._version = (st.st_size, st.st_mtime_ns)  # the file as the dataset saw it
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

    def archive(self):
        """This process's decoder of the file (:class:`~arcodec.codec.api.Archive`), made on
        first use."""
        st = os.stat(self.path)
        if (st.st_size, st.st_mtime_ns) != self._version:
            raise RuntimeError(f"{self.path} changed since the dataset was made: make a new ArcDataset")
        return _archive(self.path, st.st_size, st.st_mtime_ns, self.cache_subpixels)

    def __getitem__(self, i: int):
        label = self.labels[i]  # an index out of range fails here, before any decoding
        x = torch.from_numpy(self.archive()[i].transpose(2, 0, 1).copy())
        return (self.transform(x) if self.transform else x), label
