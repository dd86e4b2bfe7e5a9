"""The encoder's search for an image's own mixture offsets (arcodec/codec/adapt.py)."""

import numpy as np
import pytest

from arcodec.codec import adapt


def mixtures(n=600, m=4, seed=0):
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 256, n)
    levels[:30], levels[30:60] = 0, 255  # the tails' bins
    return (rng.normal(size=(n, m)), rng.uniform(-1, 1, (n, m)), rng.normal(-3, 2.5, (n, m)), levels)


@pytest.mark.parametrize("fn", [adapt.code_length, adapt.code_length_fast])
def test_gradient_matches_finite_differences(fn):
    lg, mu, ls, levels = mixtures()
    at = np.random.default_rng(1).normal(0, 0.3, 8)
    at[5] = 9.0  # a log scale pushed past the tables' clamp on some pixels: no gradient there
    value, grad = fn(at, lg, mu, ls, levels, 256)
    step = 1e-6
    numeric = [(fn(at + e, lg, mu, ls, levels, 256)[0] - fn(at - e, lg, mu, ls, levels, 256)[0]) / (2 * step)
               for e in np.eye(8) * step]
    assert np.allclose(grad, numeric, atol=1e-6)
    assert value > 0


def test_kernel_equals_the_numpy_reference():
    lg, mu, ls, levels = mixtures(n=2000, m=10, seed=2)
    at = np.random.default_rng(3).normal(0, 0.5, 20)
    a, b = adapt.code_length(at, lg, mu, ls, levels, 256), adapt.code_length_fast(at, lg, mu, ls, levels, 256)
    assert abs(a[0] - b[0]) < 1e-9 and np.allclose(a[1], b[1], atol=1e-9)


def test_fit_recovers_the_shift_of_a_known_mixture():
    """Levels drawn from a two-component logistic mixture with weights 0.8 / 0.2 and log
    scale -3; the model says equal weights and log scale -3.6: the fit moves the logits'
    difference to ln 4 and the log scales up by 0.6, to the sample's noise."""
    rng = np.random.default_rng(4)
    n = 20000
    comp = rng.random(n) < 0.2
    centre = np.where(comp, 0.3, -0.2)
    u = rng.random(n)
    x = centre + np.exp(-3.0) * np.log(u / (1 - u))
    levels = np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.int64)
    lg = np.zeros((n, 2))
    mu = np.tile([-0.2, 0.3], (n, 1))
    ls = np.full((n, 2), -3.6)
    before = adapt.code_length(np.zeros(4), lg, mu, ls, levels, 256)[0]
    got = adapt.fit_offsets(adapt.sample(lg, mu, ls, levels, 256), reach=5.0)
    assert abs((got[0] - got[1]) - np.log(4)) < 0.1
    assert np.abs(got[2:] - 0.6).max() < 0.05
    assert adapt.code_length(got, lg, mu, ls, levels, 256)[0] < before - 0.05
    assert not adapt.fit_offsets(adapt.sample(lg[:0], mu[:0], ls[:0], levels[:0], 256), reach=5.0).any()


def test_kernel_equals_the_reference_where_every_component_underflows():
    """Levels hundreds of scales from every mean (probabilities below 1e-250): the kernel
    leaves probabilities for logarithms there, and agrees with the reference."""
    lg, mu, ls, levels = mixtures(n=400, m=3, seed=5)
    mu[:200] = -0.9
    levels[:200] = 250
    ls[:200] = -6.5
    at = np.random.default_rng(6).normal(0, 0.2, 6)
    a, b = adapt.code_length(at, lg, mu, ls, levels, 256), adapt.code_length_fast(at, lg, mu, ls, levels, 256)
    assert a[0] > 400  # half the pixels near 1,000 nats each: far past where probabilities underflow
    assert abs(a[0] - b[0]) < 1e-9 * a[0] and np.allclose(a[1], b[1], atol=1e-9)


@pytest.mark.parametrize("log_scale", [-7.0, -4.0, -1.0, 2.5])
def test_kernel_equals_the_reference_from_sharp_to_wide_bins(log_scale):
    """The kernel takes a bin's 1 - e^-width from its two sigmoids' exponentials (levels
    below, inside and above a component's bin) and from expm1 where the bin is wider than
    0.01 scales: the same code length and gradient as the reference either way."""
    lg, mu, ls, levels = mixtures(n=3000, m=5, seed=8)
    ls = np.full_like(ls, log_scale) + np.random.default_rng(9).normal(0, 0.3, ls.shape)
    mu[:1000] = (levels[:1000, None] * 2.0 / 255 - 1.0) + np.random.default_rng(10).normal(0, 1 / 255, (1000, 5))
    at = np.random.default_rng(11).normal(0, 0.3, 10)
    a, b = adapt.code_length(at, lg, mu, ls, levels, 256), adapt.code_length_fast(at, lg, mu, ls, levels, 256)
    assert abs(a[0] - b[0]) < 1e-9 * max(1.0, a[0]) and np.allclose(a[1], b[1], atol=1e-9)
