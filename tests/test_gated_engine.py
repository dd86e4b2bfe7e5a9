"""The integer engine of Gated PixelCNNs (arcodec.codec.gated, engine 1): the decoder's
tables equal the encoder's element for element, whatever the batch, the threads or the
image's shape; files round-trip and say which engine made them; the shipped model's
engine stays within 1 % of its float NLL."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest
import torch

import arcodec
from arcodec.codec import container, gated
from arcodec.codec.api import decompress, encode_images, encode_many
from arcodec.codec.coders import share_out
from arcodec.errors import FormatError
from arcodec.models.heads import nll_bits
from arcodec.models.layers import float_copy
from arcodec.registry import build_model, make_config
from arcodec.zoo import load_model


def tiny(dilation: str = "1,2", seed: int = 0, calibrated: bool = True):
    torch.manual_seed(seed)
    net = build_model("gated-pixelcnn", make_config("gated-pixelcnn", {
        "hidden": 8, "layers": 4, "head": 16, "dilation": dilation, "levels": 256}))
    net.eval()
    if calibrated:
        net.calibrate(torch.randint(0, 256, (8, 1, 12, 12)))
    return net


def rings(n: int = 4, size: int = 28) -> torch.Tensor:
    """Digit-like images: rings of several radii and widths (no data set needed)."""
    yy, xx = np.mgrid[:size, :size]
    out = []
    for k in range(n):
        r = np.hypot(yy - 13.5 + k, xx - 13.5 - k / 2)
        out.append(np.clip(1 - abs(r - 6 - k) / (2 + k / 2), 0, 1) * 255)
    return torch.from_numpy(np.round(np.stack(out))[:, None]).long()


def decoded_tables(net, payloads, counts, h, w):
    tables = {}

    def keep(r, c, ch, weights):
        tables[r, c] = weights.copy()
    x = gated.decode_streams(net, payloads, counts, 1, h, w, on_table=keep)
    return torch.as_tensor(x), tables  # numpy from the numpy engine (a few tiles), a tensor otherwise


def encoded_tables(net, x):
    """The payload of tiles x (n, 1, h, w) as one stream, and the encoder's tables by pixel:
    {(r, c): (n, K)}."""
    n, _, _, w = x.shape
    enc = {}

    def keep(r0, r1, weights):
        weights = weights.reshape(r1 - r0, w, n, -1)  # decoder order: row, column, tile
        for r in range(r0, r1):
            for c in range(w):
                enc[r, c] = weights[r - r0, c]
    [(payload, _)] = gated.encode_streams(net, x, [n], on_table=keep)
    return payload, enc


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (5, 7), (13, 11)])
def test_decoder_tables_equal_the_encoders_for_every_shape_batch_and_thread_count(shape):
    net = tiny()
    h, w = shape
    x = torch.randint(0, 256, (5, 1, h, w))
    payload, enc = encoded_tables(net, x)
    threads = torch.get_num_threads()
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            y, dec = decoded_tables(net, [payload], [5], h, w)
            assert torch.equal(y, x)
            assert all(np.array_equal(dec[k], enc[k]) for k in enc)
        # the same tiles as streams of 2 and 3 tiles (another batch split): the same tables
        [(p2, _), (p3, _)] = gated.encode_streams(net, x, [2, 3])
        y, dec = decoded_tables(net, [p2, p3], [2, 3], h, w)
        assert torch.equal(y, x) and all(np.array_equal(dec[k], enc[k]) for k in enc)
        # one tile alone (batch 1) gets its own rows of the batch's tables
        [(p1, _)] = gated.encode_streams(net, x[3:4], [1])
        y, dec = decoded_tables(net, [p1], [1], h, w)
        assert torch.equal(y, x[3:4]) and all(np.array_equal(dec[k][0], enc[k][3]) for k in enc)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (6, 7)])
def test_the_compiled_encoder_writes_the_pytorch_encoders_payloads(monkeypatch, shape):
    """The encoder's compiled rows (the decoder's row kernels with every column at once) and
    the engine's whole-image pass in PyTorch: the same bytes, streams of 1, 2 and 20 tiles,
    on one thread and on two (tiles shared), and the same NLL up to float32 sums; a batch
    above ENCODE_POSITIONS takes the PyTorch pass."""
    if not gated.numpy_decodes(tiny()):
        pytest.skip("numba or scipy is not installed: only the PyTorch encoder exists")
    net = tiny(dilation="1,2,4")
    x = torch.randint(0, 256, (23, 1, *shape))
    counts = [1, 2, 20]
    monkeypatch.setattr(gated, "NUMPY_ENCODES", False)
    reference = gated.encode_streams(net, x, counts)
    monkeypatch.setattr(gated, "NUMPY_ENCODES", True)
    calls = []
    rows = gated._encode_rows
    monkeypatch.setattr(gated, "_encode_rows", lambda *a: calls.append(1) or rows(*a))
    for threads in (1, 2):
        monkeypatch.setattr(gated, "coder_threads", lambda threads=threads: threads)
        got = gated.encode_streams(net, x, counts)
        assert [p for p, _ in got] == [p for p, _ in reference]
        assert [b for _, b in got] == pytest.approx([b for _, b in reference], rel=1e-5)
    assert len(calls) == 2
    monkeypatch.setattr(gated, "ENCODE_POSITIONS", len(x) * shape[1] - 1)
    assert gated.encode_streams(net, x, counts)[0][0] == reference[0][0] and len(calls) == 2


def test_the_compiled_step_and_the_pytorch_step_give_the_same_tables(monkeypatch):
    """The decoder's compiled steps (on 20 tiles the matrix-product step of a large batch,
    on one the numba kernel for every layer and the head) and the pure-PyTorch fallback:
    identical integers."""
    if gated._STEP is None:
        pytest.skip("numba is not installed: only the PyTorch step exists")
    net = tiny(dilation="1,2,4")
    x = torch.randint(0, 256, (20, 1, 9, 10))
    [(payload, _)] = gated.encode_streams(net, x, [20])
    [(one, _)] = gated.encode_streams(net, x[:1], [1])
    compiled = [decoded_tables(net, [payload], [20], 9, 10), decoded_tables(net, [one], [1], 9, 10)]
    assert gated.engine(net).incremental(20, 9, 10).kernel is not None
    monkeypatch.setattr(gated, "_STEP", None)
    assert gated.engine(net).incremental(20, 9, 10).kernel is None
    plain = [decoded_tables(net, [payload], [20], 9, 10), decoded_tables(net, [one], [1], 9, 10)]
    for (xa, ta), (xb, tb) in zip(compiled, plain):
        assert torch.equal(xa, xb) and all(np.array_equal(ta[k], tb[k]) for k in ta)
    assert torch.equal(compiled[0][0], x)


def test_a_large_batch_steps_by_matrix_products_with_the_kernels_tables(monkeypatch):
    """From BLAS_BATCH tiles a step is one matrix product a layer over the batch (BLAS,
    float32: exact integers), as is the start of every row, in one compiled call each: the
    same tables and pixels as the step kernel's loops, on one thread, on two threads of a
    crew (workers waiting in compiled code) and on two of the coder's pool, the batch in
    slices of a few tiles."""
    if gated._FUSED is None:
        pytest.skip("numba or scipy is not installed: no matrix-product kernels")
    net = tiny(dilation="1,2,4")
    n = 2 * gated.BLAS_BATCH + 5
    x = torch.randint(0, 256, (n, 1, 6, 7))
    [(payload, _)] = gated.encode_streams(net, x, [n])
    assert gated.engine(net).incremental(n, 6, 7).fused_steps
    runs = []
    crews = []  # each crew's threads
    made = gated.Crew
    monkeypatch.setattr(gated, "Crew", lambda *a: (c := made(*a), crews.append(c.threads))[0])
    # (threads, CREW, the CPUs the process may use): a crew's threads spin, so never more
    # of them than CPUs: with 2 threads on 1 CPU the pool shares the batch
    for threads, crew, cpus in ((1, True, 2), (2, True, 2), (2, False, 2), (2, True, 1)):
        monkeypatch.setattr(gated, "coder_threads", lambda threads=threads: threads)
        monkeypatch.setattr(gated, "cores", lambda cpus=cpus: cpus)
        monkeypatch.setattr(gated, "CREW", crew)
        slices = []
        monkeypatch.setattr(gated, "share_out", lambda fn, m, k: (slices.append(k), share_out(fn, m, k)))
        before = len(crews)
        runs.append(decoded_tables(net, [payload], [n], 6, 7))
        on_crew = threads > 1 and crew and cpus >= threads
        assert len(crews) - before == on_crew  # one crew for the whole decode
        assert max(slices, default=1) == (1 if on_crew else threads)
    assert all(not t.is_alive() for c in crews for t in c)  # the decode's end stopped them
    monkeypatch.setattr(gated, "BLAS_BATCH", n + 1)
    assert not gated.engine(net).incremental(n, 6, 7).fused_steps
    runs.append(decoded_tables(net, [payload], [n], 6, 7))
    for y, tables in runs:
        assert torch.equal(y, x) and all(np.array_equal(tables[k], runs[-1][1][k]) for k in tables)


def blank_beginnings(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Tiles whose first nonzero pixel lies anywhere: at (0, 0), mid-row, at a row's last
    pixel, at the very last pixel, or nowhere (all 0); random pixels after it."""
    g = torch.Generator().manual_seed(seed)
    firsts = [0, 1, w - 1, w, w + 2, 2 * w - 1, 3 * w + 3, h * w - 1, h * w, h * w]
    x = torch.randint(0, 256, (n, h * w), generator=g)
    for k in range(n):
        first = firsts[k % len(firsts)] if k < 2 * len(firsts) else int(torch.randint(0, h * w + 1, (1,), generator=g))
        x[k, :first] = 0
        if first < h * w and x[k, first] == 0:
            x[k, first] = 1
    return x.view(n, 1, h, w)


def test_tiles_blank_so_far_take_a_blank_tiles_state_with_the_same_tables(monkeypatch):
    """A large batch's tiles whose pixels so far are all 0 (a digit's blank top rows) skip
    the stacks and take a blank tile's state, computed once: the decoder's tables equal the
    encoder's and those of the decoder that computes every tile, element for element, on
    one thread and on two; the encoder that skips writes the same bytes."""
    if gated._FUSED is None:
        pytest.skip("numba or scipy is not installed: no matrix-product kernels")
    net = tiny(dilation="1,2,4")
    n, h, w = 3 * gated.BLAS_BATCH + 3, 6, 7
    x = blank_beginnings(n, h, w)
    payload, enc = encoded_tables(net, x)
    eng = gated.weights_of(net).engine
    assert (h, w) in eng.blanks  # the encoder skipped: it made the blank tile's state
    assert gated.GatedStepper(eng, n, h, w).first[0] == h * w  # and so does the decoder
    runs = []
    for threads in (1, 2):
        monkeypatch.setattr(gated, "coder_threads", lambda threads=threads: threads)
        runs.append(decoded_tables(net, [payload], [n], h, w))
    monkeypatch.setattr(gated, "BLANK_POSITIONS", 0)  # every tile computed
    assert gated.GatedStepper(eng, n, h, w).first[0] == -1
    assert gated.encode_streams(net, x, [n])[0][0] == payload
    runs.append(decoded_tables(net, [payload], [n], h, w))
    for y, tables in runs:
        assert torch.equal(y, x)
        assert all(np.array_equal(tables[k], enc[k]) for k in enc)


def test_a_crew_stops_when_its_decode_fails_and_when_it_is_collected(monkeypatch):
    """A corrupt payload stops a decode with a FormatError: its crew's threads stop too (no
    thread left spinning); so do those of a stepper that is dropped without closing."""
    if gated._SERVE is None:
        pytest.skip("numba or scipy is not installed: no crew")
    monkeypatch.setattr(gated, "coder_threads", lambda: 2)
    monkeypatch.setattr(gated, "cores", lambda: 2)
    net = tiny()
    n = 2 * gated.BLAS_BATCH
    x = torch.randint(0, 256, (n, 1, 5, 5))
    [(payload, _)] = gated.encode_streams(net, x, [n])
    crews = []  # each crew's threads (not the crew: it must be collectable)
    made = gated.Crew
    monkeypatch.setattr(gated, "Crew", lambda *a: (c := made(*a), crews.append(c.threads))[0])
    with pytest.raises(FormatError):
        gated.decode_streams(net, [payload[: len(payload) // 3]], [n], 1, 5, 5)
    assert len(crews) == 1 and not any(t.is_alive() for t in crews[0])
    stepper = gated.weights_of(net).engine.incremental(n, 5, 5)
    stepper.begin_row(np.zeros((n, 1, 5, 5), dtype=np.int64), 0)
    assert len(crews) == 2 and all(t.is_alive() for t in crews[1])
    del stepper
    gc.collect()
    assert not any(t.is_alive() for t in crews[1])


def test_the_compiled_gate_gives_the_pytorch_gates_integers(monkeypatch):
    """The encoder's and the row pass's gate (:class:`gated._Gate`): one compiled kernel on the
    CPU, the same integers as its PyTorch operations, over every pre-activation there is."""
    if gated._GATE is None:
        pytest.skip("numba is not installed: only the PyTorch gate exists")
    gate = gated._Gate(0.037, tensors=True)
    k = torch.arange(-gated.ACT, gated.ACT + 1, dtype=torch.float32)
    pre = torch.cartesian_prod(k, k.flip(0)[::7])  # (a, b) pairs, a and b the two halves
    pre = torch.cat([pre, pre.flip(1)]).contiguous()
    compiled = gate(pre)
    monkeypatch.setattr(gated, "_GATE", None)
    plain = gate(pre)
    assert compiled.dtype == plain.dtype == torch.float32 and torch.equal(compiled, plain)
    assert compiled.min() < 0 < compiled.max() and len(torch.unique(compiled)) > 100


def test_the_whole_image_pass_does_not_depend_on_the_crop():
    """The encoder's bands see crops of rows: a crop holding a pixel's receptive field gives
    that pixel the same logits as the whole image (integers: no order to depend on)."""
    net = tiny(dilation="1,2,4")
    eng = gated.engine(net)
    x = torch.randint(0, 256, (2, 1, 20, 9))
    full = eng(x)
    above = net.receptive_field()[0]
    for r0 in (0, 5, 11):
        part = eng(x[:, :, max(0, r0 - above): r0 + 4])
        assert torch.equal(part[..., -4:, :], full[..., r0: r0 + 4, :])
    assert torch.equal(eng(x[:2]), torch.cat([eng(x[:1]), eng(x[1:2])]))


def test_an_uncalibrated_model_still_codes_exactly(tmp_path):
    """Scales from bounds of the weights (coarse, but exact): a round trip through a file."""
    net = tiny(calibrated=False)
    assert not (net.act_max > 0).any()
    x = torch.randint(0, 256, (2, 1, 6, 5))
    payloads = [p for p, _ in gated.encode_streams(net, x, [2])]
    y, _ = decoded_tables(net, payloads, [2], 6, 5)
    assert torch.equal(y, x)


def test_shipped_gated_model_files_use_the_engine_within_one_percent_of_its_float_nll():
    m = load_model("mnist-gated")
    x = rings()
    img = x[0, 0].numpy().astype(np.uint8)
    enc = encode_images([img], model="mnist-gated")
    assert container.read(enc.data)[0].engine == gated.ENGINE
    assert np.array_equal(arcodec.decompress(enc.data), img)
    with torch.no_grad():
        exact = float(nll_bits(gated.engine(m.net)(x), x).sum())
        ref = float(nll_bits(float_copy(m.net)(x), x).sum())
    assert abs(exact / ref - 1) < 0.01, (exact, ref)
    assert (m.net.act_max > 0).all()  # shipped with its calibrated scales


def test_a_file_naming_an_engine_this_arcodec_lacks_is_refused():
    img = rings(1)[0, 0].numpy().astype(np.uint8)
    data = encode_images([img], model="mnist-gated").data
    header, payload, _ = container.read(data)
    from dataclasses import replace

    forged = container.write(replace(header, engine=7), payload, [img])
    with pytest.raises(FormatError, match="engine 7"):
        arcodec.decompress(forged)


def test_the_engine_costs_no_header_byte_and_misplaced_engine_fields_are_refused():
    entries = (container.Entry(28, 28, 1),)
    plain = container.write(container.Header(1, b"\x12\x34", entries), b"xyz", [])
    one = container.write(container.Header(1, b"\x12\x34", entries, engine=1), b"xyz", [])
    two = container.write(container.Header(1, b"\x12\x34", entries, engine=2), b"xyz", [])
    assert len(one) == len(plain) and len(two) == len(plain) + 3  # flag bit 3; tag 9 from engine 2 on
    assert [container.read(d)[0].engine for d in (plain, one, two)] == [0, 1, 2]
    stored = container.write(container.Header(0, b"\0\0", entries, method=container.METHOD_RAW),
                             bytes(784), [np.zeros((28, 28, 1), np.uint8)])
    with pytest.raises(FormatError, match="engine flag set in a stored file"):
        container.read(stored[:2] + bytes([stored[2] | 8]) + stored[3:])
    tagged = bytearray(two)
    tagged[2] &= ~8  # tag 9 without the flag
    with pytest.raises(FormatError, match="header field 9, engine"):
        container.read(bytes(tagged))


def test_the_numpy_engine_and_the_pytorch_engine_decode_the_same_tables(monkeypatch):
    """Tiles decode on the numpy engine (the compiled kernels and numpy's products, no
    torch), a few or many; forced onto the PyTorch engine they give the same tables and
    pixels, with dilations and an uncalibrated model too."""
    if gated._STEP is None:
        pytest.skip("numba is not installed: only the PyTorch engine exists")
    for net in (tiny(dilation="1,2,4"), tiny(calibrated=False)):
        assert gated.numpy_decodes(net)
        for n in (3, gated.BLAS_BATCH + 2):
            x = torch.randint(0, 256, (n, 1, 8, 9))
            [(payload, _)] = gated.encode_streams(net, x, [n])
            got = gated.decode_streams(net, [payload], [n], 1, 8, 9)
            assert isinstance(got, np.ndarray) and np.array_equal(got, x.numpy())
            fast = decoded_tables(net, [payload], [n], 8, 9)
            monkeypatch.setattr(gated, "numpy_decodes", lambda model: False)
            slow = decoded_tables(net, [payload], [n], 8, 9)
            monkeypatch.undo()
            assert torch.equal(fast[0], slow[0]) and all(np.array_equal(fast[1][k], slow[1][k]) for k in fast[1])


def test_weights_from_a_model_file_build_the_engine_of_the_torch_model(tmp_path):
    """GatedWeights read from a model file with numpy (what decoding a digit reads) give the
    engine of the torch model: the same layers, shapes and constants; the layout's shapes
    are the torch layers' own."""
    from arcodec.models.gated_layout import layer_shapes
    from arcodec.registry import model_file_bytes

    net = tiny(dilation="1,2")
    path = tmp_path / "g.arcm"
    path.write_bytes(model_file_bytes(net, "g", {}))
    read = gated.GatedWeights.read(path, dataclasses.asdict(net.config), torch_model=lambda: net)
    assert read.torch_model() is net
    a, b = read.engine, gated.GatedWeights.of(net).engine
    for la, lb, shape, layer in zip(a.layers, b.layers, layer_shapes(net.config), net.layers):
        for conv, s in ((layer.v, shape.v), (layer.h, shape.h)):
            assert (conv.pad, conv.conv.kernel_size, conv.dilation, conv.conv.in_channels) == \
                (s.pad, s.kernel, s.dilation, s.cin)
        for qa, qb in ((la.vertical, lb.vertical), (la.out, lb.out)):
            assert all(np.array_equal(getattr(qa, k), getattr(qb, k)) for k in ("wt", "bias", "mul"))
        assert all(np.array_equal(u, v) for u, v in zip(la.horizontal.parts, lb.horizontal.parts))
        assert np.array_equal(la.gate_v.tanh, lb.gate_v.tanh) and np.array_equal(la.gate_h.sig, lb.gate_h.sig)
    assert all(np.array_equal(qa.wt, qb.wt) and np.array_equal(qa.mul, qb.mul) for qa, qb in zip(a.head, b.head))


def _within(seconds: float, fn):
    """fn() on a daemon thread; fails (rather than hangs) when it has not returned in time."""
    import threading

    out = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert out, f"still running after {seconds} s: a deadlock"
    return out[0]


def test_work_shared_out_from_a_pool_thread_runs_there_and_does_not_deadlock():
    from arcodec.codec.coders import pool_map

    def outer(k):
        seen = []
        share_out(lambda a, b: seen.append((a, b)), 10, 2)  # nested: inline on this worker
        return k, sorted(seen)
    assert _within(30, lambda: pool_map(outer, list(range(4)), 2)) == [(k, [(0, 10)]) for k in range(4)]


def test_the_encoder_groups_tiles_on_two_threads_and_shares_their_gates_without_deadlock(monkeypatch):
    """The encoder computes groups of tiles on the coder's threads; each group's gates share
    their rows among the same threads: this deadlocked once (every worker waiting for tasks
    queued behind it). Groups of 4 of 16 tiles, gates shared from 1 row: the same payload."""
    from arcodec.codec import autoregressive

    net = tiny()
    x = torch.randint(0, 256, (16, 1, 6, 7))
    monkeypatch.setattr(gated, "NUMPY_ENCODES", False)  # the PyTorch pass: groups of tiles
    [(one, _)] = gated.encode_streams(net, x, [16])
    monkeypatch.setattr(autoregressive, "FORWARD_POSITIONS", 4 * 6 * 7)
    monkeypatch.setattr(gated, "GATE_ROWS", 1)
    monkeypatch.setattr(gated, "coder_threads", lambda: 2)
    monkeypatch.setattr(autoregressive, "coder_threads", lambda: 2)
    [(two, _)] = _within(60, lambda: gated.encode_streams(net, x, [16]))
    assert two == one


@pytest.mark.parametrize("device", ["cpu:0"] + (["cuda"] if torch.cuda.is_available() else []))
def test_the_engine_on_another_device_writes_and_reads_the_same_files(monkeypatch, device):
    """use_device: the encoder's pass and the decoder's whole-image pass on another device
    ("cpu:0" takes that path on any machine; "cuda" where torch sees a GPU) give the CPU's
    payloads byte for byte and decode the CPU's payloads, and the CPU decodes theirs; the
    shipped digit model's files made there are the CPU's bytes and decode on both."""
    net = tiny(dilation="1,2")
    x = rings(5, 12)
    counts = [2, 3]
    shipped = load_model("mnist-gated")
    digits = [a for a in rings(2, 10)[:, 0].numpy().astype(np.uint8)]
    reference = gated.encode_streams(net, x, counts)
    files = [e.data for e in encode_many(digits, model=shipped)]
    monkeypatch.setattr(gated, "DEVICE", "cpu")  # put back after the test
    gated.use_device(device)
    assert gated.DEVICE != "cpu" and gated.engine(net).device == torch.device(device)
    got = gated.encode_streams(net, x, counts)
    assert [p for p, _ in got] == [p for p, _ in reference]
    decoded = gated.decode_streams(net, [p for p, _ in reference], counts, 1, 12, 12)
    assert torch.equal(torch.as_tensor(decoded), x)
    assert [e.data for e in encode_many(digits, model=shipped)] == files
    assert all(np.array_equal(decompress(f, shipped), d) for f, d in zip(files, digits))
    monkeypatch.setattr(gated, "DEVICE", "cpu")
    assert torch.equal(torch.as_tensor(gated.decode_streams(net, [p for p, _ in got], counts, 1, 12, 12)), x)


def test_use_device_refuses_a_device_the_engine_cannot_use():
    with pytest.raises(ValueError, match="cpu or cuda"):
        gated.use_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            gated.use_device("cuda")
    assert gated.DEVICE == "cpu"
