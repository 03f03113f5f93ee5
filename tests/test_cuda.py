# SPDX-License-Identifier: Apache-2.0
"""CUDA checks: priors, training and the registry run on the GPU when one is present."""

import pytest
import torch

from pyro_dvae import priors
from pyro_dvae.training import TrainConfig, elbo_loss, train_prior

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


@pytest.mark.parametrize("name", priors.available())
def test_prior_step_on_cuda(name):
    prior = priors.build(name, x_dim=7, z_dim=3, dense_dim=16, rnn_dim=16, z_dense=[16]).cuda()
    x = torch.randn(2, 3, 9, 7, device="cuda")
    mask = torch.ones(2, 3, 9, dtype=torch.bool, device="cuda")
    mask[0, 0, 5:] = False
    loss = elbo_loss(prior, x, mask, ss_prob=0.5)
    loss.backward()
    assert loss.device.type == "cuda" and torch.isfinite(loss)
    assert all(p.grad.device.type == "cuda" for p in prior.parameters() if p.grad is not None)
    q = prior.encode(x, mask)
    z = q.rsample()
    mean, var = prior.decode_stepwise(z, lambda t, m, v: m, x=x)
    assert mean.device.type == "cuda" and var.shape == x.shape


def test_training_on_cuda(tmp_path):
    from pyro_dvae.data import synthetic_trajectories

    train = torch.as_tensor(synthetic_trajectories(64, 20, seed=0))
    val = torch.as_tensor(synthetic_trajectories(32, 20, seed=1))
    prior = priors.build("srnn", x_dim=4, z_dim=4, dense_dim=16, rnn_dim=16, z_dense=[16])
    res = train_prior(prior, train, val, TrainConfig(epochs=2, batch_size=32, warmup_epochs=1, ss_start=1,
                                                     ss_end=2), out=tmp_path / "p.pt", device="cuda")
    assert next(prior.parameters()).device.type == "cuda"
    assert res.best_val < float("inf")
    assert priors.load(tmp_path / "p.pt").z_dim == 4
