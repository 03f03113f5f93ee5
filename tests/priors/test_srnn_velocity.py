# SPDX-License-Identifier: Apache-2.0
"""The velocity-input SRNN: its recurrences agree with its teacher-forced passes, and it reads the change."""

import torch

from pyro_dvae import presets, priors
from pyro_dvae.forecast import dvae_forecast


def _prior():
    prior = priors.build("srnn-velocity", **presets.prior_kwargs("srnn-velocity", 4, False, dense_dim=8, rnn_dim=8,
                                                                  z_dense=[8]))
    x = torch.rand(5, 12, 4).cumsum(1) * 0.01
    prior.fit_normalisation(x)
    return prior, x


def test_stepwise_passes_equal_the_teacher_forced_ones():
    prior, x = _prior()
    z = torch.randn(5, 12, prior.z_dim)
    with torch.no_grad():
        mean, var = prior.decode(z, x)
        mean_s, var_s = prior.decode_stepwise(z, lambda t, m, v: x[:, t])
        torch.testing.assert_close(mean_s, mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(var_s, var, rtol=1e-5, atol=1e-6)
        zj, loc, scale, mean_j, _ = prior.joint_stepwise(torch.randn(5, 12, prior.z_dim), lambda t, m, v: x[:, t])
        loc_tf, scale_tf = prior.z_prior_params(zj, x)
        torch.testing.assert_close(loc, loc_tf, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(mean_j, prior.decode(zj, x)[0], rtol=1e-5, atol=1e-6)


def test_the_recurrence_reads_the_last_change():
    prior, x = _prior()
    z = torch.zeros(1, 3, prior.z_dim)
    a = torch.tensor([[[0.5, 0.5, 0.6, 0.8], [0.5, 0.5, 0.6, 0.8], [0.5, 0.5, 0.6, 0.8]]])
    b = a.clone()
    b[:, 0] -= 0.01  # the same last position, another change before it
    with torch.no_grad():
        assert not torch.allclose(prior.decode(z, a)[0][:, 2], prior.decode(z, b)[0][:, 2])
    rebuilt = priors.build("srnn-velocity", **prior.config)
    assert rebuilt.phi_x[0].in_features == 8


def test_checkpoint_round_trip_and_forecast(tmp_path):
    prior, x = _prior()
    prior.save(tmp_path / "p.pt")
    same = priors.load(tmp_path / "p.pt")
    assert same.name == "srnn-velocity"
    f1, f2 = dvae_forecast(prior, x[:, :6], 4), dvae_forecast(same, x[:, :6], 4)
    torch.testing.assert_close(f1, f2)
    assert f1.shape == (5, 4, 4) and torch.isfinite(f1).all()


def test_shipped_real_track_prior_carries_the_velocity():
    """srnn_mot_real loads by name as a box-trajectory prior, and its forecast of a walker keeps walking (the
    synthetic srnn_mot, like a random walk, stays near the last box)."""
    from pyro_dvae import pretrained

    prior = pretrained.load("srnn_mot_real")
    assert prior.name == "srnn-velocity" and prior.x_dim == 4 and prior.emission == "gaussian"
    t = torch.arange(30.0)[:, None]
    past = (torch.tensor([0.3, 0.4, 0.35, 0.6]) + 0.002 * t * torch.tensor([1.0, 0.0, 1.0, 0.0]))[None]
    moved = dvae_forecast(prior, past, 20)[0, -1, 0] - past[0, -1, 0]
    assert 0.5 * 0.04 < moved < 1.5 * 0.04  # 20 more steps of 0.002
