"""The progress bar every command shows."""

from __future__ import annotations

import sys


def progress_bar(total: int, desc: str, unit: str = "px", unit_scale: bool = True):
    """A tqdm bar over ``total`` units of work on stderr, to use as a context manager with
    ``update(n)``; shown only on a terminal (tqdm hides itself when stderr is no tty) and
    only for work that lasts more than half a second. ``unit_scale``: 1.2M rather than
    1234567."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=False, disable=None,
                file=sys.stderr, delay=0.5)
