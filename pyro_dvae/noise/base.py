# SPDX-License-Identifier: Apache-2.0
"""The contract shared by the noise variance models of speech enhancement.

A noise model gives the variance ``v_n,ft`` of the noise STFT ``n_ft ~ CN(0, v_n,ft)`` of a batch of noisy
utterances, shaped like their power spectrograms ``(B, T, F)`` (time first, as the priors read them):

``variance(power, z)`` with ``power = |x|^2`` the noisy power ``(B, T, F)`` and ``z`` the speech latents
``(B, T, z_dim)``, or ``(k B, T, z_dim)`` for ``k`` draws per utterance (particle-major rows; the result then
has ``k B`` rows when the model reads ``z``). Models that do not read one of them ignore it.
:attr:`NoiseModel.deep` tells whether the model has neural weights (trained by gradient: ``lv``, ``no``,
``nolv``) or is fitted per utterance in closed form (``nmf``).

Deep models work relative to a per-utterance, per-frequency *anchor*, a low quantile over time of the
log-power (:func:`noise_anchor`, a minimum-statistics-like noise-floor estimate [1]): they read
``(log |x|^2 - anchor) / 4`` and output ``log v_n = anchor + f(...)``. The models are thus invariant to the
input level (a gain on ``x`` shifts the anchor and ``v_n`` alike), which is what lets one trained on a folder
of noisy speech (U-ND) apply to utterances at any level or SNR; with the last layer started at zero the
initial noise estimate is the anchor itself.

**References:**

[1] R. Martin (2001), "Noise Power Spectral Density Estimation Based on Optimal Smoothing and Minimum
    Statistics", IEEE Trans. Speech and Audio Processing 9(5).
"""

import math

import torch
from torch import nn

#: Relative floor of the power before the logarithm (times the utterance's mean power).
POWER_FLOOR = 1e-8
#: Scale (in nepers of power) of the deep models' input features.
FEATURE_SCALE = 4.0


def log_power(power):
    """``log(|x|^2 + floor)`` with ``floor = POWER_FLOOR * mean power`` per utterance, ``(B, T, F)``."""
    mean = power.mean((-2, -1), keepdim=True).clamp_min(torch.finfo(power.dtype).tiny)
    return torch.log(power + POWER_FLOOR * mean)


def moving_average(x, k, causal=False):
    """``x (..., T)`` averaged over ``k`` frames along the last dim, edges replicated: centred (``k`` odd), or
    ``causal`` (frame ``t`` and the ``k - 1`` before it)."""
    if k <= 1:
        return x
    pad = (k - 1, 0) if causal else (k // 2, k // 2)
    flat = x.reshape(-1, 1, x.shape[-1])
    return nn.functional.avg_pool1d(nn.functional.pad(flat, pad, "replicate"), k, 1).reshape(x.shape)


def exponential_quantile(quantile):
    """``-log(1 - quantile)``: the ``quantile`` of an exponential law of mean 1, the law of the power of stationary
    noise in one bin. A power quantile divided by it estimates the mean noise power."""
    return -math.log1p(-float(quantile))


def noise_anchor(power, quantile=0.2):
    """Per-utterance, per-bin ``quantile`` over time of the log-power: ``(B, 1, F)``."""
    return torch.quantile(log_power(power), quantile, dim=-2, keepdim=True)


class NoiseModel(nn.Module):
    """Base class: subclasses set :attr:`name`, :attr:`deep`, implement :meth:`variance` and :attr:`config`."""

    name = None
    deep = False
    reads_z = False
    reads_x = False

    def __init__(self, num_bins):
        super().__init__()
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
        self.num_bins = num_bins

    @property
    def config(self):
        """Keyword arguments that rebuild this model with :func:`pyro_dvae.noise.build`."""
        return {"num_bins": self.num_bins}

    def variance(self, power, z=None):
        """Noise variance ``(B, T, F)`` of noisy power spectrograms ``power (B, T, F)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement variance()")

    def check(self, power, z=None):
        if power.dim() != 3 or power.shape[-1] != self.num_bins:
            raise ValueError(f"the {self.name} noise model expects power (B, T, {self.num_bins}), got "
                             f"{tuple(power.shape)}")
        if self.reads_z and (z is None or z.dim() != 3 or z.shape[1] != power.shape[1]
                             or z.shape[0] % power.shape[0]):
            raise ValueError(f"the {self.name} noise model reads the speech latents z (k B, T, z_dim) matching "
                             f"power {tuple(power.shape)}, got {tuple(getattr(z, 'shape', ()))}")
