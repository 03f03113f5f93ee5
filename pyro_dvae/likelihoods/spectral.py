# SPDX-License-Identifier: Apache-2.0
"""Likelihood of a mixture STFT bin given the source that produced it: a circular complex Gaussian.

``o_tf | w_tf = n, s ~ CN(s_n,tf, v_x,tf)``, the MixDVAE single-channel separation model [1]: every
time-frequency bin belongs to one source (W-disjoint orthogonality [2]) up to a small residual of
variance ``v_x``. A circular complex Gaussian ``CN(mu, v)`` (density ``exp(-|o - mu|^2 / v) / (pi v)``)
is written for Pyro as two independent real Gaussians of variance ``v / 2`` on the real and imaginary
parts (``torch.view_as_real`` layout, last dim 2): the densities are identical.

Residual variance: ``v_x,tf = scale_b * base_tf`` per mixture ``b``, with ``base = |o_tf|^2`` floored at
``floor`` times the mixture's mean bin power (``"proportional"``: the reference's ``v_x = 0.03 |o|^2``, a
relative error in every bin, IS-like) or ``base`` = that mean power (``"global"``: one variance per
mixture). :meth:`ComplexGaussianBins.m_step` is the exact maximiser of the expected log-likelihood over
``scale`` (the reference keeps it frozen at its initial value).

**References:**

[1] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for
    Multi-Source Trajectory Modeling and Separation", TMLR.
[2] O. Yilmaz, S. Rickard (2004), "Blind Separation of Speech Mixtures via Time-Frequency Masking",
    IEEE Trans. Signal Processing 52(7).
"""

import math

import pyro.distributions as dist
import torch
from torch import nn

KINDS = ("proportional", "global")


def complex_normal_entropy(var):
    """Entropy ``log(pi e var)`` of a circular complex Gaussian of variance ``var``."""
    return torch.log(math.pi * math.e * var)


def abs2(z):
    """``|z|^2`` of a complex tensor as ``re^2 + im^2`` (several times faster than ``z.abs() ** 2`` on CPU,
    which computes a hypot and a square root); real tensors are squared."""
    if z.is_complex():
        return z.real**2 + z.imag**2
    return z * z


def complex_normal_log_prob(value, var):
    """``log CN(value; 0, var)`` for complex ``value`` (or a power ``|value|^2`` given as a real tensor)."""
    power = abs2(value) if value.is_complex() else value
    return -torch.log(math.pi * var) - power / var


class ComplexGaussianBins(nn.Module):
    """``o | w = n, s ~ CN(s_n, v_x)`` per TF bin, with ``v_x = scale * base(o)`` (module docstring).

    :param float ratio: initial ``scale`` (reference: 0.03 with ``kind="proportional"``).
    :param str kind: ``"proportional"`` or ``"global"``.
    :param float floor: relative floor of ``base`` (``"proportional"``), keeps silent bins finite.
    :param float min_scale: lower bound of ``scale`` after an M-step.
    """

    closed_form = True

    def __init__(self, ratio=0.03, kind="proportional", floor=1e-4, min_scale=1e-4):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not ratio > 0 or not floor > 0 or not min_scale > 0:
            raise ValueError(f"ratio, floor and min_scale must be positive, got {ratio}, {floor}, {min_scale}")
        self.kind, self.floor, self.min_scale = kind, float(floor), float(min_scale)
        self.register_buffer("scale", torch.tensor(float(ratio)))  # scalar, or (B,) after an M-step

    def base(self, obs):
        """``base_tf`` of a complex mixture STFT ``obs (B, T, F)``, shape ``(B, T, F)``."""
        power = abs2(obs)
        mean = power.mean((-2, -1), keepdim=True).clamp_min(torch.finfo(power.dtype).tiny)
        if self.kind == "global":
            return mean.expand_as(power)
        return torch.maximum(power, self.floor * mean)

    def variance(self, obs):
        """``v_x (B, T, F)`` for a complex mixture STFT ``obs (B, T, F)``."""
        scale = self.scale.to(obs.real.dtype)
        return (scale.reshape(-1, 1, 1) if scale.dim() else scale) * self.base(obs)

    def dist(self, loc, obs):
        """Distribution of the real view ``(..., B, T, F, 2)`` of ``obs`` given source values ``loc`` (same
        layout, broadcasting), event dim 1 (real and imaginary parts)."""
        std = (0.5 * self.variance(torch.view_as_complex(obs.contiguous()))).sqrt().unsqueeze(-1)
        return dist.Normal(loc, std.expand(loc.shape)).to_event(1)

    @torch.no_grad()
    def m_step(self, obs, eta, mean, var):
        """Exact maximiser of ``sum eta E[log CN(obs; s, v_x)]`` over ``scale`` (one per mixture).

        :param obs: ``(B, T, F)`` complex mixture; ``eta (B, T, F, N)`` responsibilities; ``mean``
            (complex) / ``var`` ``(B, T, F, N)``: the source posteriors.
        """
        err = (abs2((obs.unsqueeze(-1) - mean)) + var) * eta
        num = (err.sum(-1) / self.base(obs)).sum((-2, -1))
        den = eta.sum((-3, -2, -1)).clamp_min(1e-12)
        self.scale = (num / den).clamp_min(self.min_scale).to(self.scale.dtype)
