# SPDX-License-Identifier: Apache-2.0
"""The posterior-mean gains of :mod:`pyro_dvae.masks`: the Gaussian (Wiener) gain and the Gamma scale mixture,
checked against numerical integration."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from pyro_dvae.masks import scale_mixture_gain, wiener_gain


def brute_force_gain(v_s, v_n, power, shape):
    """``E[u v_s / (u v_s + v_n) | x]`` for ``u ~ Gamma(shape, shape)``, ``x ~ CN(0, u v_s + v_n)``, by adaptive
    quadrature over ``log u``."""
    def weight(lu):
        u = math.exp(lu)
        v = u * v_s + v_n
        return math.exp(shape * lu - shape * u - math.log(v) - power / v)

    num = integrate.quad(lambda lu: weight(lu) * math.exp(lu) * v_s / (math.exp(lu) * v_s + v_n), -40, 8,
                         limit=400, points=[0.0])[0]
    den = integrate.quad(weight, -40, 8, limit=400, points=[0.0])[0]
    return num / den


@pytest.mark.parametrize("shape", [0.5, 1.0, 3.0])
def test_scale_mixture_gain_matches_quadrature(shape):
    cases = [(1.0, 1.0, 0.1), (1.0, 1.0, 2.0), (1.0, 1.0, 10.0), (0.1, 2.0, 0.5), (4.0, 0.5, 30.0), (1e-3, 1.0, 5.0)]
    v_s, v_n, power = (torch.tensor([c[i] for c in cases], dtype=torch.float64) for i in range(3))
    got = scale_mixture_gain(v_s[None], v_n[None], power, shape, num_nodes=161)
    want = torch.tensor([brute_force_gain(*c, shape) for c in cases], dtype=torch.float64)
    torch.testing.assert_close(got, want, atol=2e-3, rtol=0.0)
    # the default grid is within 1e-2 of it
    torch.testing.assert_close(scale_mixture_gain(v_s[None], v_n[None], power, shape), want, atol=1e-2, rtol=0.0)


def test_scale_mixture_gain_grows_with_the_observed_power_and_tends_to_wiener():
    v_s, v_n = torch.ones(1, 50), torch.full((1, 50), 0.5)
    power = torch.logspace(-2, 2, 50)
    g = scale_mixture_gain(v_s, v_n, power, 0.5)
    assert (g.diff() > 0).all()  # a bin louder than v_s + v_n predicts is more likely a loud speech bin
    w = wiener_gain(v_s, v_n)
    assert g[0] < w[0] and g[-1] > w[-1]
    assert ((g > 0) & (g < 1)).all()
    # a very large shape puts u at 1: the Wiener gain (a fine grid around log u = 0)
    near = scale_mixture_gain(v_s, v_n, power, 1e5, num_nodes=401, log_range=(-0.05, 0.05))
    torch.testing.assert_close(near, w, atol=1e-3, rtol=0.0)
    assert scale_mixture_gain(v_s, v_n, power, None).equal(w)
    assert scale_mixture_gain(v_s, v_n, power, math.inf).equal(w)


def test_scale_mixture_gain_averages_posterior_draws_and_broadcasts():
    torch.manual_seed(0)
    v_s = torch.rand(3, 2, 4, 5) + 0.1
    v_n = torch.rand(1, 2, 4, 5) + 0.1
    power = torch.rand(2, 4, 5) * 3
    g = scale_mixture_gain(v_s, v_n, power, 1.0)
    each = torch.stack([scale_mixture_gain(v_s[r:r + 1], v_n, power, 1.0) for r in range(3)])
    torch.testing.assert_close(g, each.mean(0))
    assert g.shape == (2, 4, 5) and torch.isfinite(g).all()
    # silent bins (zero power, zero speech variance) stay finite
    z = scale_mixture_gain(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(3), 0.5)
    assert torch.isfinite(z).all()


def test_scale_mixture_gain_is_the_same_in_blocks_and_differentiable(monkeypatch):
    """The gain is computed in blocks of bins (:data:`~pyro_dvae.masks._BLOCK`): the result does not depend on
    the block size, a block boundary included, and gradients still flow to the variances."""
    from pyro_dvae import masks

    torch.manual_seed(2)
    v_s = (torch.rand(2, 3, 7, 11, dtype=torch.float64) * 2).requires_grad_()
    v_n, power = torch.rand(1, 3, 7, 11, dtype=torch.float64), torch.rand(3, 7, 11, dtype=torch.float64) * 3
    whole = scale_mixture_gain(v_s, v_n, power, 0.5)
    monkeypatch.setattr(masks, "_BLOCK", 10)  # 231 bins: 24 blocks, the last one short
    blocks = scale_mixture_gain(v_s, v_n, power, 0.5)
    torch.testing.assert_close(blocks, whole, atol=1e-12, rtol=0.0)
    (grad,) = torch.autograd.grad(blocks.sum(), v_s)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # a scalar noise variance broadcasts like a tensor one
    torch.testing.assert_close(scale_mixture_gain(v_s, 0.3, power, 0.5),
                               scale_mixture_gain(v_s, torch.full_like(v_n, 0.3), power, 0.5))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), -math.inf])
def test_scale_mixture_gain_rejects_a_bad_shape(bad):
    with pytest.raises(ValueError, match="shape"):
        scale_mixture_gain(torch.ones(1, 2), torch.ones(1, 2), torch.ones(2), bad)


def test_float32_matches_float64():
    rng = np.random.default_rng(1)
    v_s, v_n, p = (torch.tensor(rng.gamma(1.0, 1.0, (2, 30))) for _ in range(3))
    g64 = scale_mixture_gain(v_s, v_n, p[0], 0.5)
    g32 = scale_mixture_gain(v_s.float(), v_n.float(), p[0].float(), 0.5)
    torch.testing.assert_close(g32.double(), g64, atol=1e-5, rtol=0.0)
