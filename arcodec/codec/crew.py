"""A crew: worker threads that wait for work inside compiled code, for decoders whose steps
are too short to hand out through a thread pool.

A raster decoder runs one step of its batch per pixel, a few hundred microseconds each, and
between two steps the coder reads the symbols in Python. Handed to a pool, every step pays
for waking a sleeping thread and for passing the GIL back and forth: measured on the Gated
PixelCNN's step of 128 digits, two threads took 384 microseconds where one took 530 for the
same work (the ideal is 265). A crew's workers never return to Python between steps: each
spins in a compiled loop (its kernel's ``serve`` loop, written with this module's
:func:`load_acquire`, :func:`store_release`, :func:`claim` and :func:`fetch_add`) on a small
control array, and when a new command appears takes chunks of the batch, one at a time,
until none is left; the calling thread takes chunks too (its kernel's ``lead``) and then
waits, also in compiled code, until every chunk is done. The same step took 250
microseconds on two threads.

Chunks are claimed, not dealt: a worker that the operating system has taken off its CPU
(another process wants it) holds up at most the one chunk it is running, and the caller
runs the others itself, so a crew on a busy machine decodes about as fast as one thread
instead of waiting a time slice for its worker every step. A worker that waits long (the
coder, a progress bar, the end of a decode) goes back to Python and sleeps in growing naps,
so an idle crew costs almost nothing; :meth:`Crew.close` (or the crew's collection) stops
it. A decoder makes a crew only of as many threads as the process may run on
(:func:`arcodec.codec.coders.cores`), and hands steps to the pool otherwise.

The kernels' compiled loops take these functions in: numba's disk cache looks only at the
file of the function it caches, so after changing one here, touch the kernels' module
(``gated.py``) or clear its cache.

The order of the memory operations is the compiled code's own. The caller stores its
inputs, the claim counter (the generation in its high bits, the next chunk in its low ones)
and the count of finished chunks, then the command's generation with release order; a
worker loads the generation with acquire order, claims a chunk by a compare-and-swap on the
counter (which fails if the counter holds another generation, so a late worker never runs a
chunk of a command it did not read), and counts the chunk finished with an atomic add after
its outputs; the caller's wait loads that count with acquire order.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref

import numpy as np

try:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - without numba the decoders hand work to a pool
    intrinsic = None

# the control array: [generation, command, row, column]; command EXIT stops the workers
GENERATION, COMMAND, ROW, COLUMN = range(4)
EXIT = -1
# the claims array: the claim counter (generation << TAG | next chunk) at CLAIMED, the count
# of finished chunks at FINISHED, one cache line apart
STRIDE = 8
CLAIMED, FINISHED = 0, STRIDE
TAG = 24  # bits of the chunk index in the claim counter
SPINS = 1 << 24  # loads a worker (or the caller) spins before it returns to Python (some milliseconds)
IDLE_SPINS = 1 << 10  # a worker's spins between its naps once nothing came for SPINS loads
NAPS = (1e-4, 1e-3, 1e-2)  # its naps in Python, growing while nothing comes
EAGER = 1 << 14  # loads a waiting thread spins before it offers its CPU between loads (yield_cpu)
YIELD_LOADS = 128  # what an offer counts for against SPINS: about as long as that many loads
YIELD = None if sys.platform == "win32" else "sched_yield"  # the C library's call that offers a CPU


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
    @intrinsic
    def claim(typingctx, array, index, expected):
        """array[index] = expected + 1 if it holds ``expected`` (1-D int64), atomically with
        acquire and release order; True if it did."""
        def codegen(context, builder, sig, args):
            old = context.cast(builder, args[2], sig.args[2], types.int64)
            new = builder.add(old, old.type(1))
            pair = builder.cmpxchg(_pointer(context, builder, sig, args), old, new, "acq_rel", "acquire")
            return builder.extract_value(pair, 1)
        return types.boolean(array, index, expected), codegen

    @intrinsic
    def fetch_add(typingctx, array, index, value):
        """array[index] += value (1-D int64), atomically with release order."""
        def codegen(context, builder, sig, args):
            value = context.cast(builder, args[2], sig.args[2], types.int64)
            builder.atomic_rmw("add", _pointer(context, builder, sig, args), value, "release")
            return context.get_dummy_value()
        return types.void(array, index, value), codegen

    @intrinsic
    def yield_cpu(typingctx):
        """Offer this thread's CPU to another thread that wants it (POSIX ``sched_yield``;
        returns at once when none does); nothing where there is no such call."""
        def codegen(context, builder, sig, args):
            if YIELD is not None:
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), YIELD)
                builder.call(fn, [])
            return context.get_dummy_value()
        return types.void(), codegen
else:  # pragma: no cover
    load_acquire = store_release = claim = fetch_add = yield_cpu = None


def next_chunk(claims, generation, chunks):
    """A chunk of ``generation`` for this thread to run (claimed: no other thread runs it), or
    -1 when none is left or the counter has moved on to another generation."""
    while True:
        v = load_acquire(claims, CLAIMED)
        if v >> TAG != generation or (v & ((1 << TAG) - 1)) >= chunks:
            return -1
        if claim(claims, CLAIMED, v):
            return v & ((1 << TAG) - 1)


def chunk_done(claims):
    """Count a chunk finished (after its outputs are stored)."""
    fetch_add(claims, FINISHED, 1)


def all_done(claims, chunks, spins):
    """The caller's wait: spin until ``chunks`` chunks are finished; False if ``spins``
    loads passed first (the caller then checks its workers are alive)."""
    n = 0
    while load_acquire(claims, FINISHED) < chunks:
        n += 1
        if n > spins:
            return False
        if n > EAGER:  # a worker is slow: perhaps it waits for a CPU this thread holds
            yield_cpu()
            n += YIELD_LOADS
    return True


def _publish(control, claims, generation, command, row, column):
    """The caller's side: a command for every worker (its inputs already stored)."""
    control[COMMAND] = command
    control[ROW] = row
    control[COLUMN] = column
    claims[CLAIMED] = generation << TAG
    claims[FINISHED] = 0
    store_release(control, GENERATION, generation)


def compiled():
    """``_publish`` compiled, or None without numba (or with ARCODEC_NO_NUMBA=1): then no
    decoder makes a crew."""
    from arcodec.codec.mixture import compile_kernel

    return compile_kernel(_publish) if intrinsic is not None else None


CALLER = compiled()


class Crew:
    """``threads - 1`` workers and the caller sharing a batch of ``n`` tiles in chunks of
    ``chunk``. A worker runs ``serve(control, claims, generation, spins, chunk, n, *args)``
    (a compiled loop that runs the chunks it claims of every new command and returns the
    last generation it saw, or EXIT) until told to exit; the caller runs ``lead(claims,
    generation, command, row, column, chunk, n, spins, *args)`` (it claims and runs chunks,
    then waits for all; False if it gave up waiting after ``spins`` loads). :meth:`run`
    gives every thread a command and returns once the whole batch ran it."""

    def __init__(self, serve, lead, threads: int, chunk: int, n: int, args: tuple):
        self.control = np.zeros(4, dtype=np.int64)
        self.claims = np.zeros(2 * STRIDE, dtype=np.int64)
        self.generation = 0
        self.lead, self.chunk, self.n, self.args = lead, chunk, n, args
        self.threads = [threading.Thread(target=_work, daemon=True, name=f"arcodec-crew-{me}",
                                         args=(serve, self.control, self.claims, chunk, n, args))
                        for me in range(1, threads)]
        for t in self.threads:
            t.start()
        self._stop = weakref.finalize(self, _stop, self.control, self.claims, self.threads)

    def run(self, command: int, row: int = 0, column: int = 0) -> None:
        """Every thread runs ``command`` on the chunks it claims; returns when all are done."""
        self.generation += 1
        CALLER(self.control, self.claims, self.generation, command, row, column)
        while not self.lead(self.claims, self.generation, command, row, column, self.chunk, self.n, SPINS,
                            *self.args):
            if not all(t.is_alive() for t in self.threads):
                raise RuntimeError("a decoder thread stopped")  # a bug: the workers' loop cannot fail

    def close(self) -> None:
        self._stop()


def _work(serve, control, claims, chunk, n, args) -> None:
    """A worker's life: serve in compiled code while commands come, nap in Python between."""
    generation, nap = 0, -1
    while True:
        served = serve(control, claims, generation, SPINS if nap < 0 else IDLE_SPINS, chunk, n, *args)
        if served == EXIT:
            return
        if served == generation:  # nothing came: a nap, longer each time
            nap = min(nap + 1, len(NAPS) - 1)
            time.sleep(NAPS[nap])
        else:
            generation, nap = served, -1


def _stop(control, claims, threads) -> None:
    CALLER(control, claims, int(control[GENERATION]) + 1, EXIT, 0, 0)
    for t in threads:
        t.join()


if CALLER is not None:  # the chunk functions, compiled: the kernels' serve and lead loops call them
    from arcodec.codec.mixture import compile_kernel

    next_chunk, chunk_done, all_done = (compile_kernel(f) for f in (next_chunk, chunk_done, all_done))
