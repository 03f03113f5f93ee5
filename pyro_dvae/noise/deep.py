# SPDX-License-Identifier: Apache-2.0
"""Deep noise variance models of Lin et al. (2023): LV, NO and NOLV.

Each maps its input sequence through a recurrent layer, one tanh dense layer and a linear layer to the
log noise variance per frequency bin, relative to the utterance's anchor (:mod:`pyro_dvae.noise.base`):

- **LV** (``lv``): ``v_n,t = f(BiLSTM(z)_t)``, from the *speech latents* ``z`` (a bidirectional LSTM, as in
  the reference): the noise is a second decoder of the same latent sequence;
- **NO** (``no``): ``v_n,t = f(LSTM(x_{1:t-1}))``, from the *past noisy observations* (the input is shifted
  one frame, so ``v_n,t`` never reads ``x_t`` itself: a causal noise tracker);
- **NOLV** (``nolv``): both, the concatenation of the shifted-``x`` LSTM and a forward LSTM over ``z``.

**References:**

[1] X. Lin, S. Leglaive, L. Girin, X. Alameda-Pineda (2023), "Unsupervised Speech Enhancement with Deep
    Dynamical Generative Speech and Noise Models", Interspeech.
"""

import math

import torch
from torch import nn

from pyro_dvae.priors.nn import BiSeqLSTM, SeqLSTM, Tanh, shift_right

from .base import FEATURE_SCALE, NoiseModel, exponential_quantile, log_power, moving_average

#: Starts of a fresh deep noise model (:class:`DeepNoise`).
STARTS = ("anchor", "mean")


class DeepNoise(NoiseModel):
    """Shared parts of the deep noise models (see the module docstring).

    :param int num_bins: frequency bins ``F``.
    :param int z_dim: size of the speech latents (models reading ``z``).
    :param int rnn_dim: LSTM state size (128 in the reference).
    :param int dense_dim: width of the tanh layer (128 in the reference).
    :param float quantile: quantile of the anchor (:func:`~pyro_dvae.noise.base.noise_anchor`).
    :param int smooth: average the log-variance offsets over this many frames (odd; 1: off, the default): a
        slowly varying noise level. Centred for LV, trailing (the current and past frames) for the models that
        read the noisy input, which stay causal.
    :param str start: where a fresh model's noise variance starts: ``"anchor"`` (the default), at the anchor
        itself, the ``quantile`` of each bin's power (for stationary noise, ``-log(1 - quantile)`` times its mean:
        0.22 of it for 0.2); ``"mean"``, at the mean level that anchor implies for stationary noise (the output
        bias starts at ``-log(-log(1 - quantile))``; :func:`~pyro_dvae.noise.base.exponential_quantile`). A
        trained model's weights replace either start.
    """

    deep = True
    hidden_mult = 1  # width of the recurrent features, in units of rnn_dim

    def __init__(self, num_bins, z_dim=16, rnn_dim=128, dense_dim=128, quantile=0.2, smooth=1, start="anchor"):
        super().__init__(num_bins)
        if start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {start!r}")
        if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1 or smooth % 2 == 0:
            raise ValueError(f"smooth must be a positive odd int (frames), got {smooth!r}")
        self.smooth = smooth
        for key, val in (("z_dim", z_dim), ("rnn_dim", rnn_dim), ("dense_dim", dense_dim)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{key} must be a positive int, got {val!r}")
        if not 0.0 <= float(quantile) <= 1.0 or (start == "mean" and not 0.0 < float(quantile) < 1.0):
            raise ValueError(f"quantile must lie in [0, 1] ((0, 1) with start 'mean'), got {quantile}")
        self.z_dim, self.rnn_dim, self.dense_dim, self.quantile = z_dim, rnn_dim, dense_dim, float(quantile)
        self.dense = nn.Sequential(nn.Linear(self.hidden_mult * rnn_dim, dense_dim), Tanh())
        self.out = nn.Linear(dense_dim, num_bins)
        self.start = start
        with torch.no_grad():  # start at the anchor, v_n = exp(anchor), or at the mean level it implies
            self.out.weight.mul_(0.1)
            self.out.bias.fill_(0.0 if start == "anchor" else -math.log(exponential_quantile(self.quantile)))

    @property
    def config(self):
        return {"num_bins": self.num_bins, "z_dim": self.z_dim, "rnn_dim": self.rnn_dim,
                "dense_dim": self.dense_dim, "quantile": self.quantile, "smooth": self.smooth,
                "start": self.start}

    def _hidden(self, feats, z):
        raise NotImplementedError

    def inputs(self, power):
        """``(anchor (B, 1, F), features (B, T, F))`` of a noisy power; cached for the last tensor seen
        (per-utterance fitting passes the same one at every step)."""
        cache = self.__dict__.get("_inputs")
        if cache is not None and cache[0] is power and cache[1] == power._version:
            return cache[2]
        with torch.no_grad():
            lp = log_power(power)
            anchor = torch.quantile(lp, self.quantile, dim=-2, keepdim=True)
            out = anchor, (lp - anchor) / FEATURE_SCALE
        self.__dict__["_inputs"] = (power, power._version, out)
        return out

    def variance(self, power, z=None):
        self.check(power, z)
        anchor, feats = self.inputs(power)
        k = z.shape[0] // power.shape[0] if self.reads_z else 1
        if k > 1:  # several draws of z per utterance (particle-major rows)
            anchor, feats = anchor.repeat(k, 1, 1), feats.repeat(k, 1, 1)
        offset = self.out(self.dense(self._hidden(feats, z)))  # (B, T, F); averaged over time, trailing if it reads x
        offset = moving_average(offset.mT, self.smooth, causal=self.reads_x).mT
        return torch.exp((anchor + offset).clamp(-80.0, 80.0))


class LVNoise(DeepNoise):
    """LV: noise variance from the speech latents through a bidirectional LSTM."""

    name = "lv"
    reads_z = True
    hidden_mult = 2

    def __init__(self, num_bins, z_dim=16, rnn_dim=128, dense_dim=128, quantile=0.2, smooth=1, start="anchor"):
        super().__init__(num_bins, z_dim, rnn_dim, dense_dim, quantile, smooth, start)
        self.rnn_z = BiSeqLSTM(z_dim, rnn_dim)

    def _hidden(self, feats, z):
        return self.rnn_z(z)


class NONoise(DeepNoise):
    """NO: noise variance from the past noisy observations through a causal LSTM."""

    name = "no"
    reads_x = True
    hidden_mult = 1

    def __init__(self, num_bins, z_dim=16, rnn_dim=128, dense_dim=128, quantile=0.2, smooth=1, start="anchor"):
        super().__init__(num_bins, z_dim, rnn_dim, dense_dim, quantile, smooth, start)
        self.rnn_x = SeqLSTM(num_bins, rnn_dim)

    def _hidden(self, feats, z):
        return self.rnn_x(shift_right(feats))


class NOLVNoise(DeepNoise):
    """NOLV: a causal LSTM over the past noisy observations and a forward LSTM over the speech latents."""

    name = "nolv"
    reads_z = True
    reads_x = True
    hidden_mult = 2

    def __init__(self, num_bins, z_dim=16, rnn_dim=128, dense_dim=128, quantile=0.2, smooth=1, start="anchor"):
        super().__init__(num_bins, z_dim, rnn_dim, dense_dim, quantile, smooth, start)
        self.rnn_x = SeqLSTM(num_bins, rnn_dim)
        self.rnn_z = SeqLSTM(z_dim, rnn_dim)

    def _hidden(self, feats, z):
        return torch.cat([self.rnn_x(shift_right(feats)), self.rnn_z(z)], -1)
