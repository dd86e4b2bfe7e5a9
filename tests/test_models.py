import pytest
import torch

from arcodec.models import causality
from arcodec import exact
from arcodec.models.heads import nll_bits
from arcodec.models.layers import set_exact
from arcodec.registry import architectures, build_model, make_config

SMALL = {"gated-pixelcnn": {"hidden": 8, "layers": 3, "head": 16},
         "pixelcnn": {"hidden": 8, "blocks": 2, "head": 16},
         "stack-pixelcnn": {"hidden": 8, "layers": 3},
         "pixelcnn-made": {"hidden": 8, "blocks": 2, "features": 8, "made_hidden": 16}}


def small(arch, **kw):
    torch.manual_seed(0)
    return build_model(arch, make_config(arch, {**SMALL.get(arch, {}), **kw}))


def train_a_little(model, steps=15):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = (torch.rand(8, model.config.channels, 8, 8, generator=g) > 0.6).long() * (model.config.levels - 1)
        loss = nll_bits(model(x), x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("arch", architectures("autoregressive"))
def test_every_registered_model_is_causal_at_init_and_after_training(arch):
    m = small(arch)
    assert causality.violations(m, 7, 7) == []
    assert causality.violations(train_a_little(m), 7, 7) == []


def test_gated_pixelcnn_has_no_blind_spot():
    m = train_a_little(small("gated-pixelcnn", layers=6))
    rf = causality.receptive_field(m, 9, 9, 6, 4)
    # every pixel above-right within reach (the plain PixelCNN misses these) and to the left
    assert (rf[3:6, :] > 0).all() and (rf[6, :4] > 0).all()
    assert (rf[6, 4:] == 0).all() and (rf[7:] == 0).all()


def test_violations_detects_a_leak():
    m = small("gated-pixelcnn")
    m.layers[0].h.pad = (0, 0, 0, 0)  # the first horizontal conv now sees the pixel itself...
    m.layers[0].h.conv.padding = (0, 1)  # ...and keeps the width
    assert causality.violations(m, 5, 5)


def test_exact_mode_is_close_to_float():
    m = train_a_little(small("gated-pixelcnn")).eval()
    x = torch.randint(0, 256, (4, 1, 10, 12))
    with torch.no_grad():
        f = m(x)
        e = set_exact(m, True)(x)
    assert e.dtype == torch.float64
    assert (f.double() - e).abs().max() < 2e-3
    assert torch.equal(torch.round(e * 4096), e * 4096)  # on the grid


def test_exact_mode_is_independent_of_batch_crop_and_threads():
    m = set_exact(train_a_little(small("gated-pixelcnn")).eval(), True)
    x = torch.randint(0, 256, (6, 1, 12, 14))
    threads = torch.get_num_threads()
    with torch.no_grad():
        full = m(x)
        torch.set_num_threads(1)
        try:
            one = torch.cat([m(x[i: i + 1]) for i in range(6)])
        finally:
            torch.set_num_threads(threads)
        reach = m.receptive_field()[0]
        crop = m(x[:, :, 9 - reach: 10])[:, :, :, -1]  # row 9 from the rows it can see
    assert torch.equal(full, one)
    assert torch.equal(full[:, :, :, 9], crop)


def test_incremental_stepper_equals_full_pass_bit_for_bit():
    m = set_exact(train_a_little(small("gated-pixelcnn")).eval(), True)
    x = torch.randint(0, 256, (3, 1, 9, 11))
    with torch.no_grad():
        full = m(x)
    inc = m.incremental(3, 9, 11)
    for r in range(9):
        inc.begin_row(x, r)
        for c in range(11):
            assert torch.equal(inc.step(x, r, c), full[:, :, :, r, c])


def test_tables_are_exact_and_sane():
    tanh, sig = exact.gate_tables()
    t = torch.linspace(-16, 16, len(tanh), dtype=torch.float64)
    assert (tanh - torch.tanh(t)).abs().max() < 1e-6 and (sig - torch.sigmoid(t)).abs().max() < 1e-6
    e = exact.exp_table()
    assert e[0] == 1.0 and (e > 0).all() and (e[1:] <= e[:-1]).all()
    assert abs(float(e[4096]) - 0.36787944117144233) < 1e-12
