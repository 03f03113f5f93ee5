# SPDX-License-Identifier: Apache-2.0
"""Likelihoods of a detected box given the position of the source that produced it.

A likelihood is a small module with ``dist(loc, obs)``: the distribution (event dim 1 over the four
box coordinates) of a detection ``obs`` produced by a source at ``loc``. Subclass
:class:`BoxLikelihood` to write a new one (e.g. a Student-t for outlier-robust tracking); the
tracking model and the ``svi`` / ``enum-svi`` algorithms use it unchanged. :class:`GaussianBoxes`
also provides the Gaussian quantities that closed-form VEM steps need.
"""

import math

import pyro.distributions as dist
import torch
from torch import nn


def box_size(obs):
    """``(w, h, w, h)`` of ``(x1, y1, x2, y2)`` boxes, floored at a tiny positive value.

    Without autograd, results are reused for a tensor with the same memory, shape, strides and in-place
    version as one of the last few (VEM asks for the sizes of the same detections several times per
    iteration, through different views). The cache holds those tensors, so their memory cannot be reused by
    other data while an entry exists."""
    grad = torch.is_grad_enabled()
    key = None
    if not grad:
        key = (obs.data_ptr(), tuple(obs.shape), obs.stride(), obs._version, obs.dtype, obs.device)
        for entry in _sizes:
            if entry[0] == key:
                return entry[2]
    w = (obs[..., 2] - obs[..., 0]).abs()
    h = (obs[..., 3] - obs[..., 1]).abs()
    size = torch.stack([w, h, w, h], -1).clamp_min(1e-4)
    if key is not None:
        _sizes.insert(0, (key, obs, size))
        del _sizes[4:]
    return size


_sizes = []  # (key, tensor, sizes), most recent first


class BoxLikelihood(nn.Module):
    """Base class: implement :meth:`dist`."""

    closed_form = False

    def dist(self, loc, obs):
        """Distribution of ``obs (..., 4)`` given the source position ``loc (..., 4)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement dist(loc, obs)")


class GaussianBoxes(BoxLikelihood):
    """``o | s ~ N(s, diag(Phi))`` with ``Phi_d = (ratio_d * size_d)^2``: the noise of each coordinate
    scales with the detection's width (x) or height (y), as in MixDVAE.

    :param ratio: initial noise-to-size ratio, a float or 4 values (MixDVAE: 0.04). Updated by
        :meth:`m_step` (closed form).
    """

    closed_form = True

    def __init__(self, ratio=0.04):
        super().__init__()
        ratio = torch.as_tensor(ratio, dtype=torch.get_default_dtype()).expand(4).clone()
        if not (ratio > 0).all():
            raise ValueError("ratio must be positive")
        self.register_buffer("ratio", ratio)

    def variance(self, obs):
        return (self.ratio * box_size(obs)) ** 2

    def dist(self, loc, obs):
        return dist.Normal(loc, self.variance(obs).sqrt()).to_event(1)

    def expected_log_lik(self, obs, mean, var):
        """``E_{s ~ N(mean, diag(var))}[log N(obs; s, Phi)]`` (broadcasting)."""
        phi = self.variance(obs)
        diff = obs - mean
        sq = (torch.addcmul(var, diff, diff) / phi).sum(-1)  # the only ops of the broadcast size
        return -0.5 * (torch.log(2 * math.pi * phi).sum(-1) + sq)

    @torch.no_grad()
    def m_step(self, obs, weights, mean, var):
        """Closed-form maximiser of ``sum weights * E[log N(obs; s, Phi)]`` over the ratio.

        :param obs: ``(..., 4)`` detections; ``weights (...)`` their responsibilities for the source
            whose posterior is ``N(mean, var)`` (broadcast against ``obs``).
        """
        size2 = box_size(obs) ** 2
        terms = weights.unsqueeze(-1) * ((obs - mean) ** 2 + var) / size2
        num = terms.sum(tuple(range(terms.dim() - 1)))
        den = weights.sum().clamp_min(1e-12)
        self.ratio.copy_((num / den).clamp_min(1e-8).sqrt())


class BroadClutter(BoxLikelihood):
    """Density of a clutter detection: an independent ``N(centre, scale^2)`` per coordinate,
    broad over the normalised image."""

    closed_form = True

    def __init__(self, centre=0.5, scale=0.5):
        super().__init__()
        self.centre, self.scale = float(centre), float(scale)

    def dist(self, loc, obs):
        c = torch.full_like(obs, self.centre)
        return dist.Normal(c, torch.full_like(obs, self.scale)).to_event(1)

    def log_density(self, obs):
        return self.dist(None, obs).log_prob(obs)
