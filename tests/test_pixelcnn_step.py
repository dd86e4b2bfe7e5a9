"""The compiled steps of the PixelCNN family (arcodec/codec/pixelcnn_step.py): the coder's
tables equal the PyTorch stepper's and the encoder's element for element, across models,
batch sizes (one thread and shared among threads), image shapes and a sampler's given rows;
the codec takes them for the models they cover and keeps the PyTorch steppers for the rest;
the shipped colour model round-trips real images through them. Tiny models, except the last."""

import numpy as np
import pytest
import torch

from arcodec.codec import autoregressive as ar
from arcodec.codec import pixelcnn_step
from arcodec.models.heads import nll_bits
from arcodec.models.layers import set_exact
from arcodec.registry import build_model, make_config

pytestmark = pytest.mark.skipif(pixelcnn_step._TRUNK is None, reason="numba is not installed")

CASES = {
    "made-rgb": ("pixelcnn-made", {"channels": 3, "levels": 4, "hidden": 6, "blocks": 2, "first_kernel": 3,
                                   "features": 5, "made_hidden": 9}),
    "made-gray-deep": ("pixelcnn-made", {"channels": 1, "levels": 5, "hidden": 8, "blocks": 1, "first_kernel": 5,
                                         "kernel": 5, "features": 4, "made_hidden": 7, "made_layers": 2}),
    "made-no-blocks": ("pixelcnn-made", {"channels": 2, "levels": 3, "hidden": 4, "blocks": 0, "features": 3,
                                         "made_hidden": 5}),
    "pixelcnn-rgb": ("pixelcnn", {"channels": 3, "levels": 4, "hidden": 6, "blocks": 2, "head": 6,
                                  "first_kernel": 3}),
    "pixelcnn-gray": ("pixelcnn", {"channels": 1, "levels": 6, "hidden": 4, "blocks": 1, "head": 4}),
}


def trained(name):
    """The case's model after a few Adam steps on random images, in exact mode."""
    arch, settings = CASES[name]
    torch.manual_seed(0)
    m = build_model(arch, make_config(arch, settings))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x = torch.randint(0, m.config.levels, (3, m.config.channels, 7, 7), generator=g)
        loss = nll_bits(m(x), x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return set_exact(m.eval(), True)


@pytest.fixture(scope="module", params=sorted(CASES))
def model(request):
    return trained(request.param)


def tables(stepper, x, given_rows=0):
    """Every table a raster decode asks the stepper for, rows from ``given_rows`` on (the
    rows before are given, as a sampler gives them), the pixels filled in as it goes."""
    part = x.clone()
    part[:, :, given_rows:] = 0
    out = []
    n, C, H, W = x.shape
    for r in range(given_rows, H):
        stepper.begin_row(part, r)
        for c in range(W):
            for ch in range(C):
                if hasattr(stepper, "weights"):
                    out.append(stepper.weights(part, r, c, ch))
                else:
                    out.append(ar.table(stepper.step(part, r, c)[:, :, ch]))
                part[:, ch, r, c] = x[:, ch, r, c]
    return np.stack(out)


@pytest.mark.parametrize("shape", [(3, 6, 5), (20, 4, 7), (1, 1, 1), (2, 1, 6), (2, 5, 1), (17, 3, 3)])
def test_tables_equal_the_torch_stepper_and_the_encoder(model, shape):
    n, h, w = shape
    C, K = model.config.channels, model.config.levels
    x = torch.randint(0, K, (n, C, h, w), generator=torch.Generator().manual_seed(sum(shape)))
    fast = pixelcnn_step.compiled_stepper(model, n, C, h, w)
    assert isinstance(fast, pixelcnn_step.CompiledStepper)
    got = tables(fast, x)
    assert np.array_equal(got, tables(model.incremental(n, h, w), x))
    seen = []
    ar.encode_streams(model, x, [n], on_table=lambda a, b, t: seen.append(t))
    assert np.array_equal(got.reshape(-1, K), np.concatenate(seen))
    rows = got.reshape(-1, K)
    assert (rows > 0).all() and (len(rows) == 1 or len(np.unique(rows, axis=0)) > 1)  # not one repeated row


def test_the_same_tables_on_one_thread_and_two(model, monkeypatch):
    C, K = model.config.channels, model.config.levels
    x = torch.randint(0, K, (24, C, 4, 5), generator=torch.Generator().manual_seed(9))
    runs = []
    for threads in (1, 2):
        monkeypatch.setattr(pixelcnn_step, "coder_threads", lambda threads=threads: threads)
        runs.append(tables(pixelcnn_step.CompiledStepper(model, 24, 4, 5), x))
    assert np.array_equal(*runs)


def test_sampler_steps_give_the_torch_steppers_logits(model):
    """``step`` (what a sampler calls, once per channel with the channels before it filled
    in) gives the PyTorch stepper's logits of every channel, bit for bit."""
    C, K = model.config.channels, model.config.levels
    x = torch.randint(0, K, (3, C, 4, 5), generator=torch.Generator().manual_seed(8))
    fast, ref = pixelcnn_step.CompiledStepper(model, 3, 4, 5), model.incremental(3, 4, 5)
    part = torch.zeros_like(x)
    for r in range(4):
        fast.begin_row(part, r)
        ref.begin_row(part, r)
        for c in range(5):
            for ch in range(C):
                got, want = fast.step(part, r, c), ref.step(part, r, c)
                assert got.dtype == want.dtype == torch.float64 and torch.equal(got, want)
                part[:, ch, r, c] = x[:, ch, r, c]


def test_given_rows_are_caught_up(model):
    C, K = model.config.channels, model.config.levels
    x = torch.randint(0, K, (2, C, 6, 5), generator=torch.Generator().manual_seed(4))
    fast = tables(pixelcnn_step.CompiledStepper(model, 2, 6, 5), x, given_rows=3)
    assert np.array_equal(fast, tables(model.incremental(2, 6, 5), x, given_rows=3))


def test_the_codec_decodes_with_the_compiled_steps(model):
    C, K = model.config.channels, model.config.levels
    x = torch.randint(0, K, (3, C, 5, 6), generator=torch.Generator().manual_seed(6))
    payloads = [p for p, _ in ar.encode_streams(model, x, [2, 1])]
    assert isinstance(ar.make_stepper(model, 3, C, 5, 6), pixelcnn_step.CompiledStepper)
    out = ar.decode_streams(model, payloads, [2, 1], C, 5, 6)
    assert torch.equal(out, x)


def test_weights_read_without_torch_build_the_same_stepper(model, tmp_path):
    """A model file read with numpy (:class:`PixelCNNWeights`: its own quantization) gives the
    compiled stepper of the torch model, array for array, and the same tables; its steps
    work on numpy images."""
    from safetensors.numpy import save_file

    path = tmp_path / "m.safetensors"
    save_file({k: v.detach().numpy() for k, v in model.state_dict().items()}, str(path))
    config = {k: getattr(model.config, k) for k in model.config.__dataclass_fields__}
    light = pixelcnn_step.PixelCNNWeights.read(path, model.arch, config)
    a, b = pixelcnn_step.CompiledStepper(model, 2, 4, 5), pixelcnn_step.CompiledStepper(light, 2, 4, 5)
    for x, y in zip((*a.trunk, *a.head), (*b.trunk, *b.head)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert b.numpy and not a.numpy
    C, K = model.config.channels, model.config.levels
    x = torch.randint(0, K, (2, C, 4, 5), generator=torch.Generator().manual_seed(2))
    assert np.array_equal(tables(a, x), tables(b, x))
    assert light.receptive_field() == model.receptive_field()


def test_models_the_kernels_do_not_cover_keep_their_own_steppers():
    for arch, settings in [("pixelcnn", {"channels": 3, "levels": 4, "hidden": 6, "blocks": 1, "head": 6,
                                         "norm": True}),
                           ("pixelcnn", {"levels": 4, "hidden": 4, "blocks": 1, "head": 4, "mixture": 2}),
                           ("pixelcnn", {"levels": 4, "hidden": 4, "blocks": 1, "head": 4, "causal": False}),
                           ("stack-pixelcnn", {"levels": 4, "hidden": 4, "layers": 2})]:
        m = set_exact(build_model(arch, make_config(arch, settings)).eval(), True)
        assert pixelcnn_step.compiled_stepper(m, 2, m.config.channels, 4, 4) is None
        assert not isinstance(ar.make_stepper(m, 2, m.config.channels, 4, 4), pixelcnn_step.CompiledStepper)
    arch, settings = CASES["pixelcnn-gray"]
    float_model = build_model(arch, make_config(arch, settings))
    assert pixelcnn_step.compiled_stepper(float_model, 1, 1, 4, 4) is None  # the float path: not the codec's


def test_shipped_colour_model_round_trips_real_images(digits):
    from arcodec.codec.api import decode_file, encode_images
    from arcodec.training.data import colourize

    coloured = colourize(torch.from_numpy(digits[:4]).unsqueeze(1), seed=3)  # colour MNIST's recipe
    images = [im.permute(1, 2, 0).numpy() for im in coloured]
    enc = encode_images(images, model="colour-mnist-made", archive=True)
    assert len(enc.data) * 8 < 0.5 * enc.subpixels  # the model coded them (raw levels take 2 bits)
    _, out = decode_file(enc.data, model="colour-mnist-made")
    for a, b in zip(images, out):
        assert np.array_equal(np.asarray(b).reshape(a.shape), a)


def test_the_compiled_table_gives_softmax_weights_numbers(monkeypatch):
    """The coder's tables from exact logits (autoregressive.table): the compiled pass and
    :func:`arcodec.exact.softmax_weights` agree element for element, far tails (clamped to the
    table's end) and ties included, on contiguous and strided logits."""
    from arcodec import exact

    g = torch.Generator().manual_seed(3)
    logits = exact.to_grid(torch.randn(300, 256, generator=g, dtype=torch.float64) * 9)
    logits[::7] = logits[::7, :1]  # rows of one repeated value: every weight is 1
    logits[1, 5] = -exact.ACT_LIMIT
    logits[1, 6] = exact.ACT_LIMIT
    for lg in (logits, logits.t().contiguous().t(), logits[:, ::3]):
        got = ar.table(lg)
        assert np.array_equal(got, exact.softmax_weights(lg, dim=1).numpy())
    assert got.min() > 0 and (got == 1.0).sum() >= len(got)
    monkeypatch.setattr(ar, "TABLE_KERNEL", None)
    assert np.array_equal(ar.table(logits), exact.softmax_weights(logits, dim=1).numpy())

