"""Signals that end a command: making sure they do, wherever they land. Standard library
only, so that the CLI can use it before it imports anything heavy."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

RESEND_S = 0.05  # seconds before a swallowed signal is sent again


def redeliver_swallowed(rules: list[tuple[Callable[[BaseException], bool], int, Callable]]) -> None:
    """Make sure a signal handler's exception ends the process even when it is raised inside
    a callback that C code made (numba's compiler calls Python through ctypes while a kernel
    compiles): ctypes swallows such an exception, printing "Exception ignored" and a
    traceback, and carries on. ``sys.unraisablehook`` sees it instead: for the first rule
    (is this exception mine, signal, handler) that matches, the handler is set again and the
    signal sent again, to be handled once the callback has returned (should it land in a
    callback again, the same again); anything else goes to Python's own hook."""
    def hook(info) -> None:
        for mine, signum, handler in rules:
            if info.exc_value is not None and mine(info.exc_value):
                signal.signal(signum, handler)
                # sent a moment later from another thread: sent from here, it would be
                # handled here, still inside the callback, and swallowed again
                timer = threading.Timer(RESEND_S, os.kill, (os.getpid(), signum))
                timer.daemon = True
                timer.start()
                return
        sys.__unraisablehook__(info)

    sys.unraisablehook = hook
