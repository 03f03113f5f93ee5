# SPDX-License-Identifier: Apache-2.0
"""Box likelihoods: the Gaussian noise M-step and the reuse of box sizes."""

import torch

from pyro_dvae.likelihoods import GaussianBoxes, box_size


def boxes(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(*shape, 2, generator=g)
    return torch.cat([xy, xy + 0.05 + torch.rand(*shape, 2, generator=g) * 0.1], -1)


def fresh_size(obs):
    w, h = obs[..., 2] - obs[..., 0], obs[..., 3] - obs[..., 1]
    return torch.stack([w, h, w, h], -1).abs().clamp_min(1e-4)


@torch.no_grad()
def test_box_size_reuse_is_never_stale():
    obs = boxes(3, 5)
    first = box_size(obs)
    assert box_size(obs) is first  # the same tensor: reused
    assert box_size(obs.unsqueeze(1)) is box_size(obs.unsqueeze(1))  # the same view, built twice
    obs[1, 2, 2] += 0.3  # in place: a new version
    assert torch.equal(box_size(obs), fresh_size(obs))
    other = obs.clone()  # same values, other memory
    other[0, 0, 3] += 0.2
    assert torch.equal(box_size(other), fresh_size(other))
    for _ in range(6):  # evicted entries are recomputed, not confused
        assert torch.equal(box_size(boxes(3, 5, seed=_)), fresh_size(boxes(3, 5, seed=_)))
    with torch.enable_grad():
        x = boxes(2, 4).requires_grad_(True)
        box_size(x).sum().backward()  # with autograd: computed each time, differentiable
        assert x.grad is not None


@torch.no_grad()
def test_gaussian_noise_m_step_is_the_weighted_maximiser():
    obs, mean, var = boxes(40), boxes(40, seed=1), torch.rand(40, 4) * 1e-3
    w = torch.rand(40)
    lik = GaussianBoxes()
    lik.m_step(obs, w, mean, var)
    best = (w * lik.expected_log_lik(obs, mean, var)).sum()
    for factor in (0.8, 1.25):
        other = GaussianBoxes(lik.ratio * factor)
        assert (w * other.expected_log_lik(obs, mean, var)).sum() < best
