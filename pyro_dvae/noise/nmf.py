# SPDX-License-Identifier: Apache-2.0
"""NMF noise model of the RVAE-VEM speech enhancement of Leglaive et al. (2020) / Bie et al. (2022).

``v_n,ft = (W H)_ft`` with a nonnegative dictionary ``W (B, F, K)`` and activations ``H (B, K, T)``, fitted
per utterance (no noise training data). :meth:`NMFNoise.m_step` is the VEM M-step: with ``R`` posterior
samples of the speech variance ``v_s^(r)`` and the per-frame gain ``g_t`` of the speech model, one
multiplicative Itakura-Saito update of ``H``, of ``W`` (columns then normalised) and of ``g`` for the
model ``|x_ft|^2 ~ Exp(mean g_t v_s,ft + (W H)_ft)``, averaged over the samples
(:func:`pyro_dvae.nmf.is_nmf_step`, :func:`pyro_dvae.nmf.gain_step`: majorise-minimise updates, each of
which never increases the sample-averaged IS divergence).

**References:**

[1] S. Leglaive, X. Alameda-Pineda, L. Girin, R. Horaud (2020), "A Recurrent Variational Autoencoder for
    Speech Enhancement", ICASSP.
[2] X. Bie, S. Leglaive, X. Alameda-Pineda, L. Girin (2022), "Unsupervised Speech Enhancement Using
    Dynamical Variational Autoencoders", IEEE/ACM TASLP 30.
[3] C. Fevotte, J. Idier (2011), "Algorithms for Nonnegative Matrix Factorization with the
    Beta-Divergence", Neural Computation 23(9).
"""

import torch

from pyro_dvae.nmf import EPS, gain_step, is_divergence, is_nmf_step

from .base import NoiseModel, exponential_quantile, moving_average, noise_anchor


class NMFNoise(NoiseModel):
    """Per-utterance IS-NMF noise variance (module docstring).

    :param int num_bins: frequency bins ``F``.
    :param int rank: NMF rank ``K``.
    :param int seed: seed of the uniform initialisation.
    :param float power: exponent of the multiplicative updates (0.5: the provably monotone MM updates).
    :param int smooth: after each update, average the activations ``H`` over this many frames (odd; 1: off).
        A stationarity constraint: the noise level may only vary slowly, so the noise model cannot follow the
        syllable-rate energy changes of speech and take speech over (the update is then no longer monotone).
    :param bool learn_dictionary: update ``W`` in the M-step (the reference's). ``False`` keeps the dictionary
        of :meth:`initialise` and updates ``H`` (and the gain) only: with the ``"floor"`` start the noise
        spectra stay those of the noisy input's quiet frames, so the noise model cannot turn into a speech
        spectrum, however long the fit runs.
    :param float quantile: the per-bin quantile over time of the noisy power that the ``"floor"`` start takes
        as the noise spectrum.
    """

    name = "nmf"

    def __init__(self, num_bins, rank=8, seed=0, power=0.5, smooth=1, learn_dictionary=True, quantile=0.2):
        super().__init__(num_bins)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1 or smooth % 2 == 0:
            raise ValueError(f"smooth must be a positive odd int (frames), got {smooth!r}")
        if not 0.0 < float(quantile) < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
        self.rank, self.seed, self.exponent, self.smooth = rank, int(seed), float(power), smooth
        self.learn_dictionary, self.quantile = bool(learn_dictionary), float(quantile)
        self.start_quantile = None  # the quantile the last "floor" start read (initialise)
        self.register_buffer("W", torch.zeros(0))
        self.register_buffer("H", torch.zeros(0))

    @property
    def config(self):
        return {"num_bins": self.num_bins, "rank": self.rank, "seed": self.seed, "power": self.exponent,
                "smooth": self.smooth, "learn_dictionary": self.learn_dictionary, "quantile": self.quantile}

    @torch.no_grad()
    def initialise(self, power, init="uniform", quantile=None, mean_level=False):
        """Random positive ``W``, ``H`` (seeded; ``W`` columns summing to 1).

        ``init="uniform"`` (the reference's): entries uniform in ``[0.5, 1.5]`` times a scale giving ``W H``
        half the mean noisy power; ``"floor"``: each column of ``W`` is the per-bin ``quantile`` (default: the
        model's) over time of the noisy power (:func:`~pyro_dvae.noise.noise_anchor`, a minimum-statistics-like
        noise estimate) times uniform noise in ``[0.5, 1.5]``, and ``W H`` starts at that floor's level, or with
        ``mean_level=True`` at the *mean* noise level the floor implies: the floor divided by ``-log(1 - quantile)``,
        the ``quantile`` of an exponential law of mean 1 (the power of stationary noise in one bin). That is right
        for a low quantile, which sits under most speech; a median of noisy power that holds speech in many frames
        is above the noise mean already.
        """
        quantile = self.quantile if quantile is None else quantile
        self.start_quantile = float(quantile) if init == "floor" else None  # what the start read (None: uniform)
        B, T, F = power.shape
        if F != self.num_bins:
            raise ValueError(f"the NMF noise model has {self.num_bins} bins, power has {F}")
        if init not in ("uniform", "floor"):
            raise ValueError(f"init must be 'uniform' or 'floor', got {init!r}")
        gen = torch.Generator().manual_seed(self.seed)
        W = torch.rand(F, self.rank, generator=gen, dtype=torch.float64).to(power) + 0.5
        if init == "floor":
            floor = noise_anchor(power, quantile).exp().squeeze(-2)  # (B, F)
            level = floor.mean(-1)
            W, target = floor.unsqueeze(-1) * W, level / exponential_quantile(quantile) if mean_level else level
        else:
            W, target = W.expand(B, F, self.rank), 0.5 * power.mean((-2, -1))
        W = W / W.sum(-2, keepdim=True)
        H = torch.rand(self.rank, T, generator=gen, dtype=torch.float64).to(power) + 0.5
        self.W, self.H = W, H * (target / (W @ H).mean((-2, -1))).view(B, 1, 1)
        return self

    def variance(self, power=None, z=None):
        if self.W.numel() == 0:
            raise RuntimeError("NMFNoise.initialise(power) must run before variance()")
        return (self.W @ self.H).mT.clamp_min(EPS)

    def cost(self, power, v_s, gain):
        """Sample-averaged ``D_IS(|x|^2 | g v_s + W H)`` (``v_s (R, B, T, F)``, ``gain (B, T)``)."""
        v = gain.unsqueeze(-1) * v_s + self.variance()
        return is_divergence(power, v.clamp_min(EPS)) / v_s.shape[0]

    @torch.no_grad()
    def m_step(self, power, v_s, gain, update_gain=True, bins=None, gain_floor=None):
        """One multiplicative update of ``H``, ``W`` (if ``learn_dictionary``) and (``update_gain``) ``gain``;
        returns the new gain.

        :param power: noisy power ``(B, T, F)``.
        :param v_s: posterior samples of the unscaled speech variance ``(R, B, T, F)``.
        :param gain: per-frame speech gain ``(B, T)``.
        :param bins: optional ``(F,)`` boolean mask of the frequency bins that count (e.g. the band of a
            narrowband input); the others are left out of the cost.
        :param float gain_floor: no frame's gain may fall below this share of the utterance's mean gain (the
            mean of ``gain`` as it comes in; :func:`~pyro_dvae.nmf.gain_step`'s ``floor``). A zero gain is a fixed
            point of the multiplicative update: without a floor the noise model can take a stretch of speech
            over for good. ``None``: no floor. The gain update stays monotone only where every incoming gain is
            at or above the floor; the floor follows the mean gain from one M-step to the next.
        """
        V, Vs = power.mT, v_s.mT  # NMF layout (..., F, T)
        mask = None if bins is None else bins.view(-1, 1)
        self.W, self.H = is_nmf_step(V, gain.unsqueeze(-2) * Vs, self.W, self.H, update_W=self.learn_dictionary,
                                     power=self.exponent, mask=mask)
        self.H = moving_average(self.H, self.smooth)  # averaged over `smooth` frames: a slowly varying noise level
        if update_gain:
            floor = None if gain_floor is None else float(gain_floor) * gain.mean(-1, keepdim=True)
            gain = gain_step(V, Vs, gain, self.W @ self.H, power=self.exponent, mask=mask, floor=floor)
        return gain
