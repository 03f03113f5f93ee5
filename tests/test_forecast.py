# SPDX-License-Identifier: Apache-2.0
"""pyro_dvae.forecast: the mean forecast of a DVAE prior equals its decoder rolled forward by hand."""

import pytest
import torch

from pyro_dvae import presets, priors
from pyro_dvae.forecast import dvae_forecast


def _prior(name="srnn"):
    prior = priors.build(name, **presets.prior_kwargs(name, 4, False, dense_dim=8, rnn_dim=8, z_dense=[8]))
    prior.fit_normalisation(torch.rand(6, 10, 4).cumsum(1) * 0.01)
    return prior


@pytest.mark.parametrize("name", ["srnn", "srnn-velocity", "vrnn"])
def test_prior_latents_forecast_is_the_noiseless_rollout(name):
    prior = _prior(name)
    past = torch.rand(3, 5, 4).cumsum(1) * 0.01
    got = dvae_forecast(prior, past, 4, latents="prior")
    with torch.no_grad():
        means = prior.joint_stepwise(torch.zeros(3, 9, prior.z_dim), lambda t, m, v: past[:, t] if t < 5 else m)[3]
    torch.testing.assert_close(got, means[:, 5:])


@pytest.mark.parametrize("name", ["srnn", "srnn-velocity"])
def test_posterior_latents_forecast_feeds_its_own_means(name):
    prior = _prior(name)
    past = torch.rand(3, 5, 4).cumsum(1) * 0.01
    got = dvae_forecast(prior, past, 3)
    assert got.shape == (3, 3, 4) and torch.isfinite(got).all()
    with torch.no_grad():  # the one-step forecast is the decoder's mean at the encoder's z and the prior's next z
        z = prior.encode(past).noiseless()
        z = torch.cat([z, torch.zeros(3, 1, prior.z_dim)], 1)
        x = torch.cat([past, torch.zeros(3, 1, 4)], 1)
        z[:, 5] = prior.z_prior_params(z, x)[0][:, 5]
        torch.testing.assert_close(got[:, 0], prior.decode(z, x)[0][:, 5])


def test_bad_inputs():
    prior = _prior()
    with pytest.raises(ValueError, match="horizon"):
        dvae_forecast(prior, torch.zeros(2, 3, 4), 0)
    with pytest.raises(ValueError, match="latents"):
        dvae_forecast(prior, torch.zeros(2, 3, 4), 2, latents="guess")
    spectral = priors.build("vae", x_dim=4, z_dim=2, emission="spectral", dense_dim=4, rnn_dim=4, z_dense=[4])
    with pytest.raises(ValueError, match="autoregressive Gaussian"):
        dvae_forecast(spectral, torch.ones(2, 3, 4), 2)
