"""A crew: worker threads that wait for work inside compiled code, for decoders whose steps
are too short to hand out through a thread pool.

A raster decoder runs one step of its batch per pixel, a few hundred microseconds each, and
between two steps the coder reads the symbols in Python. Handed to a pool, every step pays
for waking a sleeping thread and for passing the GIL back and forth: measured on the Gated
PixelCNN's step of 128 digits, two threads took 384 microseconds where one took 530 for the
same work (the ideal is 265). A crew's workers never return to Python between steps: each
spins in a compiled loop (its kernel's :func:`serve` loop, written with this module's
:func:`load_acquire` and :func:`store_release`) on a small control array, runs its slice of
the batch when a new command appears, and marks it done; the calling thread runs the first
slice itself and then waits, also in compiled code, for the others. The same step took 250
microseconds on two threads.

A worker that waits long (the coder, a progress bar, the end of a decode) goes back to
Python and sleeps in growing naps, so an idle crew costs almost nothing; :meth:`Crew.close`
(or the crew's collection) stops it. Spinning threads need a CPU each: a decoder makes a
crew only of as many threads as the process may run on (:func:`arcodec.codec.coders.cores`),
and hands steps to the pool otherwise. The order of the memory operations is the compiled
code's own: the caller stores its inputs and then the command's generation with release
order; a worker loads the generation with acquire order, and stores its generation as done
with release order after its outputs; the caller's wait loads it with acquire order.
"""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np

try:
    from numba.core import cgutils, types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - without numba the decoders hand work to a pool
    intrinsic = None

# the control array: [generation, command, row, column]; command EXIT stops the workers
GENERATION, COMMAND, ROW, COLUMN = range(4)
EXIT = -1
STRIDE = 8  # int64s between two workers' done flags: one cache line each
SPINS = 1 << 24  # loads a worker (or the caller) spins before it returns to Python (some milliseconds)
IDLE_SPINS = 1 << 10  # a worker's spins between its naps once nothing came for SPINS loads
NAPS = (1e-4, 1e-3, 1e-2)  # its naps in Python, growing while nothing comes


if intrinsic is not None:
    def _pointer(context, builder, sig, args):
        array = context.make_array(sig.args[0])(context, builder, args[0])
        index = context.cast(builder, args[1], sig.args[1], types.intp)
        return cgutils.get_item_pointer(context, builder, sig.args[0], array, [index], wraparound=False)

    @intrinsic
    def load_acquire(typingctx, array, index):
        """array[index] (1-D int64) loaded with acquire order: never hoisted out of a loop, and
        no later load of this thread is made before it."""
        def codegen(context, builder, sig, args):
            return builder.load_atomic(_pointer(context, builder, sig, args), "acquire", 8)
        return types.int64(array, index), codegen

    @intrinsic
    def store_release(typingctx, array, index, value):
        """array[index] = value (1-D int64) stored with release order: every store this thread
        made before it is visible to a thread that loads it with acquire order."""
        def codegen(context, builder, sig, args):
            value = context.cast(builder, args[2], sig.args[2], types.int64)
            builder.store_atomic(value, _pointer(context, builder, sig, args), "release", 8)
            return context.get_dummy_value()
        return types.void(array, index, value), codegen
else:  # pragma: no cover
    load_acquire = store_release = None


def _publish(control, generation, command, row, column):
    """The caller's side: a command for every worker (its inputs already stored)."""
    control[COMMAND] = command
    control[ROW] = row
    control[COLUMN] = column
    store_release(control, GENERATION, generation)


def _wait(done, workers, generation, spins):
    """The caller's side: spin until every worker marked ``generation`` done; False if
    ``spins`` loads passed first (the caller then checks its workers are alive)."""
    for w in range(1, workers + 1):
        n = 0
        while load_acquire(done, w * STRIDE) != generation:
            n += 1
            if n > spins:
                return False
    return True


def compiled():
    """(publish, wait) compiled, or None without numba (or with ARCODEC_NO_NUMBA=1): then no
    decoder makes a crew."""
    from arcodec.codec.mixture import compile_kernel

    pair = (compile_kernel(_publish), compile_kernel(_wait)) if intrinsic is not None else (None, None)
    return None if None in pair else pair


CALLER = compiled()


class Crew:
    """``threads - 1`` workers for the slices ``cuts[1:]`` of a batch, each running
    ``serve(control, done, me, generation, spins, b0, b1, *args)`` (a compiled loop that
    returns the last generation it served, or EXIT) until told to exit; the caller runs
    slice 0 itself. :meth:`run` gives every worker a command and returns once all ran it."""

    def __init__(self, serve, cuts: list[int], args: tuple):
        self.control = np.zeros(4, dtype=np.int64)
        self.done = np.zeros((len(cuts) - 1) * STRIDE, dtype=np.int64)
        self.generation = 0
        self.cuts = cuts
        self.threads = [threading.Thread(target=_work, daemon=True, name=f"arcodec-crew-{me}",
                                         args=(serve, self.control, self.done, me, cuts[me], cuts[me + 1], args))
                        for me in range(1, len(cuts) - 1)]
        for t in self.threads:
            t.start()
        self._stop = weakref.finalize(self, _stop, self.control, self.threads)

    def run(self, command: int, row: int = 0, column: int = 0, mine=None) -> None:
        """Every worker runs ``command`` on its slice; ``mine()`` (the caller's slice) runs
        meanwhile; returns when all are done."""
        publish, wait = CALLER
        self.generation += 1
        publish(self.control, self.generation, command, row, column)
        if mine is not None:
            mine()
        while not wait(self.done, len(self.threads), self.generation, SPINS):
            if not all(t.is_alive() for t in self.threads):
                raise RuntimeError("a decoder thread stopped")  # a bug: the workers' loop cannot fail

    def close(self) -> None:
        self._stop()


def _work(serve, control, done, me, b0, b1, args) -> None:
    """A worker's life: serve in compiled code while commands come, nap in Python between."""
    generation, nap = 0, -1
    while True:
        served = serve(control, done, me, generation, SPINS if nap < 0 else IDLE_SPINS, b0, b1, *args)
        if served == EXIT:
            return
        if served == generation:  # nothing came: a nap, longer each time
            nap = min(nap + 1, len(NAPS) - 1)
            time.sleep(NAPS[nap])
        else:
            generation, nap = served, -1


def _stop(control, threads) -> None:
    publish, _ = CALLER
    publish(control, int(control[GENERATION]) + 1, EXIT, 0, 0)
    for t in threads:
        t.join()
