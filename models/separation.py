# SPDX-License-Identifier: Apache-2.0
"""MixDVAE for single-channel audio source separation (SC-ASS).

Model, for ``B`` mixtures of ``T`` STFT frames and ``F`` frequency bins with ``N`` sources, each source
``n`` with its own spectral DVAE prior (e.g. one trained on speech, one on flute):

- ``z_n ~ p_n(z)`` (prior ``n``'s latent sequence; DSAE adds a static ``v_n``);
- source STFT ``s_n,tf ~ CN(0, g_n v_n,tf)``, ``v_n,t`` from prior ``n``'s decoder given ``z_n`` and, for
  autoregressive priors (SRNN, VRNN, STORN), the past source power ``|s_n,<t|^2``; ``g_n`` is a gain (1
  unless the gain M-step is on);
- ``w_tf ~ Categorical(pi)`` assigns every TF bin to one source;
- ``o_tf | w_tf = n, s ~ CN(s_n,tf, v_x,tf)`` (:class:`~pyro_dvae.likelihoods.ComplexGaussianBins`;
  complex Gaussians are written as two real Gaussians of variance ``v / 2``, see there).

Plates: ``batch`` x ``sources`` for the source STFTs (site ``s``, real view ``(B, N, T, F, 2)``; the
latents are sites ``z_<name>`` / ``v_<name>`` in the ``batch`` plate), ``batch_tf`` x ``time`` x ``freq``
for the assignments (``w`` is marked for parallel enumeration, so ``svi`` picks ``TraceEnum_ELBO``).

The structured guide :class:`SeparationGuide` holds the MixDVAE blocks, iterated by the registry's
``vem`` (order E-Z, E-S, E-W, then the model's M-steps), for one of two variational families:
``"meanfield"`` ``q(z) q(s) q(w)`` (the reference's, default) or ``"structured"`` ``q(z) q(w) q(s | w)``.

- **E-Z** ``q(z_n) =`` prior ``n``'s encoder on the current expected source power ``E_q|s_n|^2``, one
  reparameterised Gaussian draw (the reference draws *uniform* noise);
- **E-S** mean field: ``q(s_n,tf) = CN(m, gamma)`` with ``1 / gamma = 1 / (g v) + eta / v_x`` and ``m =
  gamma eta o / v_x``, the exact optimum (a ``CN(0, g v)`` prior times the likelihood raised to the
  responsibility ``eta``); structured: ``q(s_n | w = n)`` is the exact conditional posterior and ``q(s_n | w
  != n)`` the prior. Autoregressive decoders either read the current posterior power step by step
  (``mode="sequential"``, MixDVAE's ``decoder_vem`` with the expected power fed back instead of a sample)
  or, teacher forced, the previous iteration's (``mode="parallel"``, one decoder pass, no time loop);
- **E-W** mean field: ``q(w_tf = n) ∝ pi_n exp(E_q[log CN(o_tf; s_n,tf, v_x,tf)])``; structured: ``q(w_tf =
  n) ∝ pi_n CN(o_tf; 0, g_n v_n,tf + v_x,tf)``, the posterior of ``w`` with ``s`` integrated out;
- **M-steps**: the residual variance scale (exact, per mixture; off by default, as in the reference: on real
  audio it grows until the residual explains what the priors miss, and the estimates fade) and the source
  gains ``g_n`` (exact; on by default in :func:`run_separation`).

:meth:`SeparationGuide.exact_elbo` is the ELBO in closed form given the latents (exact for
non-autoregressive priors; for autoregressive ones it uses the decoder variances of the last E-S), minus the
analytic per-step KL of ``q(z)`` to ``p(z)`` at the drawn path. With ``z`` held fixed every E-S / E-W /
M step is an exact coordinate ascent step (tested). The structured family is tighter (it is exact given
``z``), but with priors that do not fit the test sources well its exact assignment posterior is worse than
the mean-field fixed point (measured on real speech + flute), hence the default.

Initialisation (:meth:`SeparationGuide.initialise`): ``"prior"`` (default) encodes and decodes the mixture
power with every prior and sets the responsibilities to the posterior of ``w`` with ``s`` integrated out,
``q(w = n) ∝ pi_n CN(o; 0, g_n v_n + v_x)``; ``"equal"`` is the reference's ``eta = 1 / N``; a tensor of
masks (e.g. NMF Wiener masks) sets both the responsibilities and the initial source powers.

Estimates (:meth:`SeparationGuide.estimate`): the posterior means (the reference's output), the mixture
split by ``q(w)``, or (default) a Wiener post-filter with the posterior source powers ``E_q|s_n|^2``.

:func:`run_separation` runs it (or the baselines: mixture, oracle IBM / Wiener masks, IS-NMF, temporal
NMF) on waveforms or STFTs, through :func:`pyro_dvae.inference.run`.

**References:**

[1] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for
    Multi-Source Trajectory Modeling and Separation", TMLR.
[2] L. Girin, S. Leglaive, X. Bie, J. Diard, T. Hueber, X. Alameda-Pineda (2021), "Dynamical Variational
    Autoencoders: A Comprehensive Review", Foundations and Trends in Machine Learning.
[3] C. Fevotte, N. Bertin, J.-L. Durrieu (2009), "Nonnegative Matrix Factorization with the Itakura-Saito
    Divergence: With Application to Music Analysis", Neural Computation 21(3).
"""

import time
from dataclasses import dataclass, field

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import TorchDistribution, constraints
from pyro.nn import PyroModule
from pyro.ops.indexing import Vindex
from torch.distributions import kl_divergence

from pyro_dvae.assignment import assignment_probs, entropy, responsibilities
from pyro_dvae.data.audio import HOP, N_FFT, SAMPLE_RATE, istft, stft
from pyro_dvae.inference import ClosedFormBlock, StructuredGuide
from pyro_dvae.likelihoods import ComplexGaussianBins, abs2, complex_normal_entropy, complex_normal_log_prob
from pyro_dvae.masks import nmf_masks, oracle_masks
from pyro_dvae.priors import DVAE, SequentialNormal
from pyro_dvae.priors.base import standard_normal_steps

MODES = ("sequential", "parallel")
FAMILIES = ("meanfield", "structured")
OUTPUTS = ("wiener", "mean", "mask")


def check_mixture(mix, num_bins=None):
    """Validate a complex mixture STFT ``(B, T, F)``; returns it."""
    if not torch.is_tensor(mix) or not mix.is_complex() or mix.dim() != 3:
        raise ValueError(f"mix must be a complex STFT shaped (B, T, F), got "
                         f"{type(mix).__name__} {tuple(getattr(mix, 'shape', ()))}")
    if num_bins is not None and mix.shape[-1] != num_bins:
        raise ValueError(f"the priors model {num_bins} frequency bins but the mixture STFT has {mix.shape[-1]}")
    if mix.shape[1] < 1:
        raise ValueError("the mixture has no STFT frame")
    if not torch.isfinite(torch.view_as_real(mix)).all():
        raise ValueError("the mixture STFT contains NaN or inf")
    return mix


def check_priors(priors, names=None):
    """Validate a list of spectral priors (one per source) and their names; returns ``(priors, names)``."""
    priors = list(priors)
    if not priors:
        raise ValueError("give one spectral prior per source")
    for i, p in enumerate(priors):
        if not isinstance(p, DVAE):
            raise TypeError(f"priors[{i}] is a {type(p).__name__}, not a DVAE prior")
        if p.emission != "spectral":
            raise ValueError(f"priors[{i}] ({p.name}) has a {p.emission!r} emission; separation needs priors "
                             "trained on power spectra (emission='spectral')")
        if p.x_dim != priors[0].x_dim:
            raise ValueError(f"priors disagree on the number of frequency bins: {[q.x_dim for q in priors]}")
    names = [f"source{i}" for i in range(len(priors))] if names is None else [str(n) for n in names]
    if len(names) != len(priors) or len(set(names)) != len(names):
        raise ValueError(f"need {len(priors)} distinct source names, got {names}")
    return priors, names


def _renamed(gen, suffix):
    """Wrap a prior's site generator so that its sites are called ``<site>_<suffix>``."""
    value = None
    while True:
        try:
            name, d = gen.send(value)
        except StopIteration as stop:
            return stop.value
        value = yield f"{name}_{suffix}", d


class SourceSpectra(TorchDistribution):
    """Joint density of the source STFTs (real view, batch ``(B, N)``, event ``(T, F, 2)``) given the
    latents: ``prod_t CN(s_n,t; 0, v_n,t)`` with ``v = variance_fn(|s|^2)`` (teacher forced on the value,
    so autoregressive decoders read the past of the very sequence being scored).

    :param callable variance_fn: ``(B, N, T, F)`` power -> ``(B, N, T, F)`` variances.
    :param torch.Tensor like: ``(B, N, T, F, 2)`` tensor giving shape, dtype and device.
    :param callable sample_fn: optional ``sample_fn() -> (B, N, T, F, 2)`` generative draw.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 3)

    def __init__(self, variance_fn, like, sample_fn=None):
        self.variance_fn, self.sample_fn = variance_fn, sample_fn
        super().__init__(like.shape[:-3], like.shape[-3:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) == self.batch_shape:
            return self
        raise NotImplementedError("SourceSpectra cannot be expanded (one draw per (batch, source))")

    def sample(self, sample_shape=torch.Size()):
        if self.sample_fn is None or len(sample_shape):
            raise NotImplementedError("SourceSpectra draws one set of sources per call, given sample_fn")
        with torch.no_grad():
            return self.sample_fn()

    def log_prob(self, value):
        power = value.pow(2).sum(-1)
        return complex_normal_log_prob(power, self.variance_fn(power)).sum((-2, -1))


class SeparationModel(PyroModule):
    """The MixDVAE separation model (module docstring).

    :param list priors: one spectral :class:`~pyro_dvae.priors.DVAE` per source (the same object may serve
        several sources; their decoders then run as one batch).
    :param list names: source names (default ``source0``, ...); latent sites are ``z_<name>``.
    :param likelihood: a :class:`~pyro_dvae.likelihoods.ComplexGaussianBins` (default: proportional, 0.03).
    :param bool learn_noise: add the M-step of the residual variance scale.
    :param bool learn_gain: add the M-step of per-source gains ``g_n`` (``v = g_n v_theta``).
    :param bool learn_weights: add the M-step of the assignment weights ``pi`` (one per mixture).
    """

    def __init__(self, priors, names=None, likelihood=None, learn_noise=False, learn_gain=True, learn_weights=False):
        super().__init__()
        priors, self.names = check_priors(priors, names)
        self.priors = torch.nn.ModuleList(priors)
        self.likelihood = likelihood if likelihood is not None else ComplexGaussianBins()
        self.register_buffer("gain", torch.ones(()))  # (B, N) once the gain M-step has run
        self.register_buffer("pi", torch.ones(()))  # (B, N) once the weight M-step has run; uniform before
        self.m_steps = ([NoiseMStep()] if learn_noise else []) + ([GainMStep()] if learn_gain else []) + \
            ([WeightMStep()] if learn_weights else [])
        groups = {}
        for n, p in enumerate(priors):
            groups.setdefault(id(p), (p, []))[1].append(n)
        self.groups = list(groups.values())  # (prior, source indices): sources sharing a prior run batched

    @property
    def num_sources(self):
        return len(self.names)

    @property
    def num_bins(self):
        return self.priors[0].x_dim

    def log_pi(self, like):
        """``log pi``: ``(N,)`` (uniform) or ``(B, 1, 1, N)`` once the weight M-step has run."""
        if self.pi.dim():
            return self.pi.to(like.real.dtype).log()[:, None, None, :]
        return assignment_probs(self.num_sources, 0.0, like.real).log()

    def source_gain(self, like):
        """``g (B, N, 1, 1)`` broadcasting against source tensors like ``(B, N, T, F)``."""
        g = self.gain.to(like.dtype)
        return (g if g.dim() else g.expand(like.shape[:2])).reshape(*like.shape[:2], 1, 1)

    def decoder_variance(self, prior, z, power, latents):
        """``v_theta`` of one group, teacher forced on ``power`` ``(B, k, T, F)`` (ignored when the
        decoder does not read the past)."""
        return prior.expected(*prior._emission(z, power, latents))[1]

    # ------------------------------------------------------------------------------------------- Pyro model
    def _latent_sites(self, n, prior, power_like, cell):
        B, _, T, _ = power_like.shape
        out = {}
        if "v" in prior.latent_sites:
            zeros = power_like.new_zeros(B, 1, prior.v_dim)
            out["v"] = pyro.sample(f"v_{self.names[n]}", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
        z_like = power_like.new_zeros(B, 1, T, prior.z_dim)
        if "z" not in prior.latent_sites:
            out["z"] = z_like
            return out
        if type(prior)._z_prior is DVAE._z_prior:
            z_dist = standard_normal_steps(z_like)
        else:
            def params(z, prior=prior, n=n):
                if not prior.autoregressive:
                    return prior._z_prior(z, None)
                if "power" not in cell:
                    raise ValueError(f"the {prior.name} prior of z reads the source spectra: draw z and s through "
                                     "a guide")
                return prior._z_prior(z, cell["power"][:, n:n + 1])

            z_dist = SequentialNormal(params, z_like)
        out["z"] = pyro.sample(f"z_{self.names[n]}", z_dist.to_event(1))
        return out

    def _group_latents(self, latents, idx):
        z = torch.cat([latents[n]["z"] for n in idx], 1)
        statics = {k: torch.cat([latents[n][k] for n in idx], 1) for k in latents[idx[0]] if k != "z"}
        return z, statics

    def _variance_fn(self, latents):
        def variance(power):
            out = torch.empty_like(power)
            for prior, idx in self.groups:
                z, statics = self._group_latents(latents, idx)
                out[:, idx] = self.decoder_variance(prior, z, power[:, idx], statics)
            return self.source_gain(out) * out
        return variance

    def _sample_fn(self, latents, like):
        def sample():
            out = torch.empty_like(like)
            gain = self.source_gain(like[..., 0])
            for prior, idx in self.groups:
                z, statics = self._group_latents(latents, idx)
                g = gain[:, idx]
                if prior.autoregressive:
                    draws = []

                    def feed(t, _, var_t):
                        s_t = torch.randn(*var_t.shape, 2, dtype=var_t.dtype, device=var_t.device)
                        draws.append(s_t * (0.5 * g[..., 0] * var_t).sqrt().unsqueeze(-1))
                        return draws[-1].pow(2).sum(-1)

                    prior.decode_stepwise(z, feed)
                    out[:, idx] = torch.stack(draws, -3)
                else:
                    v = g * self.decoder_variance(prior, z, None, statics)
                    out[:, idx] = torch.randn_like(out[:, idx]) * (0.5 * v).sqrt().unsqueeze(-1)
            return out
        return sample

    def sources(self, mix):
        """Sample the latents and the source STFTs (real view ``(B, N, T, F, 2)``)."""
        B, T, F = mix.shape
        power_like = mix.real.new_zeros(B, 1, T, F)
        cell = {}
        with pyro.plate("batch", B, dim=-2):
            latents = [self._latent_sites(n, p, power_like, cell) for n, p in enumerate(self.priors)]
            like = mix.real.new_zeros(B, self.num_sources, T, F, 2)
            with pyro.plate("sources", self.num_sources, dim=-1):
                s = pyro.sample("s", SourceSpectra(self._variance_fn(latents), like, self._sample_fn(latents, like)))
            cell["power"] = s.pow(2).sum(-1)
        return s

    def model(self, mix, enumerate_w=True):
        """:param mix: complex mixture STFT ``(B, T, F)``."""
        mix = check_mixture(mix, self.num_bins)
        B, T, F = mix.shape
        obs = torch.view_as_real(mix)
        s = self.sources(mix)
        probs = self.log_pi(mix).exp()
        b = torch.arange(B, device=mix.device).view(B, 1, 1)
        t = torch.arange(T, device=mix.device).view(T, 1)
        f = torch.arange(F, device=mix.device)
        infer = {"enumerate": "parallel"} if enumerate_w else {}
        with pyro.plate("batch_tf", B, dim=-3), pyro.plate("time", T, dim=-2), pyro.plate("freq", F, dim=-1):
            w = pyro.sample("w", dist.Categorical(probs), infer=infer)
            loc = Vindex(s)[b, w, t, f, :]
            pyro.sample("o", self.likelihood.dist(loc, obs), obs=obs)


# ------------------------------------------------------------------------------------------------- E-Z
def _encoder_draw(prior, power, sample):
    """Run ``prior``'s encoder on ``power (B, k, T, F)``: ``(latents, kl (B, k))`` with ``kl`` the analytic
    per-step KL of ``q`` to ``p`` at the drawn path (``sample=False``: the noiseless path)."""
    x, _, lengths = prior._prepare(power, None)
    gen, value, latents, kl = prior._guide_sites(x, lengths), None, {}, x.new_zeros(x.shape[:2])
    while True:
        try:
            name, d = gen.send(value)
        except StopIteration:
            break
        if sample:
            value = d.rsample()
        else:
            value = d.noiseless() if isinstance(d, SequentialNormal) else d.mean
        latents[name] = value
        q_loc, q_scale = d.bind(value) if isinstance(d, SequentialNormal) else (d.base_dist.loc, d.base_dist.scale)
        p = prior._z_prior(value, x if prior.autoregressive else None) if name == "z" else None
        p_loc, p_scale = p if p is not None else (torch.zeros_like(value), torch.ones_like(value))
        step_kl = kl_divergence(dist.Normal(q_loc, q_scale), dist.Normal(p_loc, p_scale))
        kl = kl + step_kl.reshape(*x.shape[:2], -1).sum(-1)
    if "z" not in latents:
        latents["z"] = x.new_zeros(*x.shape[:-1], prior.z_dim)
    return latents, kl


class LatentBlock(ClosedFormBlock):
    """E-Z: ``q(z_n)`` = prior ``n``'s encoder on the expected source power ``E|s_n|^2``, one
    reparameterised draw (``sample=False``: the noiseless path). Holds ``latents`` (one dict per source)
    and ``kl (B, N)``."""

    def __init__(self, sample=True):
        super().__init__("z")
        self.sample, self.latents, self.kl = sample, None, None

    @torch.no_grad()
    def encode(self, model, power, sample=None):
        sample = self.sample if sample is None else sample
        latents, kl = [None] * model.num_sources, power.new_zeros(power.shape[:2])
        for prior, idx in model.groups:
            lat, kl[:, idx] = _encoder_draw(prior, power[:, idx], sample)
            for j, n in enumerate(idx):
                latents[n] = {k: v[:, j:j + 1] for k, v in lat.items()}
        self.latents, self.kl = latents, kl

    def update(self, model, guide, mix, **kw):
        self.encode(model, guide.source_moments()[1])

    def sites(self, model, power):
        """Sample the latent sites ``v_<name>`` / ``z_<name>`` from the encoders on ``power (B, N, T, F)``
        (call inside the ``batch`` plate)."""
        for n, (name, prior) in enumerate(zip(model.names, model.priors)):
            x, _, lengths = prior._prepare(power[:, n:n + 1], None)
            prior._run_sites(_renamed(prior._guide_sites(x, lengths), name), None, x.shape[:-1])


# ------------------------------------------------------------------------------------------------- E-S
class SourceBlock(ClosedFormBlock):
    """E-S in closed form, for one of two variational families (module docstring):

    - ``"structured"``: ``q(s_n | w = n) = CN(m1, g1)`` with ``1 / g1 = 1 / (g v) + 1 / v_x`` and ``m1 = g1 o /
      v_x`` (the exact conditional posterior), ``q(s_n | w != n) = CN(0, g v)`` (the prior);
    - ``"meanfield"`` (the reference's ``q(s) q(w)``): ``q(s_n) = CN(m, gamma)`` with ``1 / gamma = 1 / (g v) +
      eta / v_x`` and ``m = gamma eta o / v_x``, whatever ``w``.

    Holds both components (``mean1, var1`` if ``w = n``, ``mean0, var0`` otherwise; equal in the mean-field
    family) and ``prior_var``, the decoder variances ``v_theta`` it used.
    """

    def __init__(self, mode="sequential", family="meanfield"):
        super().__init__("s")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        self.mode, self.family = mode, family
        self.mean1 = self.var1 = self.mean0 = self.var0 = self.prior_var = self.power_hint = None

    def conditionals(self, v, eta, obs, vx):
        """``(mean1, var1, mean0, var0)`` given the prior variance ``v``, the responsibilities ``eta`` of the
        source, the mixture ``obs`` and the residual variance ``vx`` (broadcasting)."""
        if self.family == "meanfield":
            var = 1.0 / (1.0 / v + eta / vx)
            mean = var * (eta / vx) * obs
            return mean, var, mean, var
        var1 = 1.0 / (1.0 / v + 1.0 / vx)
        return var1 / vx * obs, var1, torch.zeros_like(obs), v

    def moments(self, eta):
        """Posterior mean ``E_q[s]`` and power ``E_q|s|^2`` ``(B, N, T, F)`` given ``eta (B, N, T, F)``."""
        mean = eta * self.mean1 + (1 - eta) * self.mean0
        power = eta * (abs2(self.mean1) + self.var1) + (1 - eta) * (abs2(self.mean0) + self.var0)
        return mean, power

    @torch.no_grad()
    def update(self, model, guide, mix, **kw):
        B, T, F = mix.shape
        eta = guide["w"].eta.permute(0, 3, 1, 2)  # (B, N, T, F)
        obs, vx = mix.unsqueeze(1), model.likelihood.variance(mix).unsqueeze(1)
        past = self.moments(eta)[1] if self.mean1 is not None else self.power_hint
        gain = model.source_gain(eta)
        latents = guide["z"].latents
        out = [torch.empty(B, model.num_sources, T, F, dtype=d, device=mix.device)
               for d in (mix.dtype, eta.dtype, mix.dtype, eta.dtype, eta.dtype)]
        for prior, idx in model.groups:
            z, statics = model._group_latents(latents, idx)
            g, e = gain[:, idx], eta[:, idx]
            if prior.autoregressive and self.mode == "sequential":
                steps = []

                def feed(t, _, v_t):
                    steps.append(self.conditionals(g[..., 0] * v_t, e[:, :, t], obs[:, :, t], vx[:, :, t]))
                    m1, v1, m0, v0 = steps[-1]
                    return e[:, :, t] * (abs2(m1) + v1) + (1 - e[:, :, t]) * (abs2(m0) + v0)

                _, out[4][:, idx] = prior.decode_stepwise(z, feed)
                for k in range(4):
                    out[k][:, idx] = torch.stack([step[k] for step in steps], -2)
            else:
                out[4][:, idx] = model.decoder_variance(prior, z, past[:, idx], statics)
                for k, value in enumerate(self.conditionals(g * out[4][:, idx], e, obs, vx)):
                    out[k][:, idx] = value
        self.mean1, self.var1, self.mean0, self.var0, self.prior_var = out

    def expected_terms(self, model, mix):
        """``(lik (B, T, F, N), s1, s0 (B, N, T, F))``: ``E_q1[log CN(o; s_n, v_x)]``, and ``E[log p(s_n)] +
        H`` under the ``w = n`` component (``s1``) and the other one (``s0``), at the current parameters."""
        perm = (0, 2, 3, 1)
        lik = model.likelihood.expected_log_lik(mix, self.mean1.permute(perm), self.var1.permute(perm))
        v = model.source_gain(self.prior_var) * self.prior_var
        s1 = complex_normal_log_prob(abs2(self.mean1) + self.var1, v) + complex_normal_entropy(self.var1)
        s0 = complex_normal_log_prob(abs2(self.mean0) + self.var0, v) + complex_normal_entropy(self.var0)
        return lik, s1, s0

    def guide(self, mix, values, **kw):
        N = self.mean1.shape[1]
        mean, var = self.mean1, self.var1
        if self.family != "meanfield":  # s | w: the w = n component where w selects the source
            sel = torch.nn.functional.one_hot(values["w"], N).movedim(-1, 1).bool()
            mean, var = torch.where(sel, self.mean1, self.mean0), torch.where(sel, self.var1, self.var0)
        with pyro.plate("sources", N, dim=-1):
            loc, scale = torch.view_as_real(mean), (0.5 * var).sqrt().unsqueeze(-1)
            return {"s": pyro.sample("s", dist.Normal(loc, scale.expand_as(loc)).to_event(3))}


# ------------------------------------------------------------------------------------------------- E-W
class AssignmentBlock(ClosedFormBlock):
    """E-W: ``q(w_tf = n) ∝ pi_n exp(A_n - B_n)`` with ``A_n = E_q(s|w=n)[log CN(o; s_n, v_x) + log p(s_n)] +
    H(q(s_n | w = n))`` and ``B_n`` the same prior and entropy terms under ``q(s_n | w != n)``: the exact
    coordinate update of either family. Mean field (``B_n`` cancels the prior terms): ``pi_n
    exp(E_q[log CN(o; s_n, v_x)])``; structured (after E-S): the posterior of ``w`` with ``s`` integrated out,
    ``pi_n CN(o; 0, g_n v_n + v_x)``. Holds ``eta (B, T, F, N)``."""

    def __init__(self):
        super().__init__("w")
        self.eta = None

    @torch.no_grad()
    def update(self, model, guide, mix, **kw):
        lik, s1, s0 = guide["s"].expected_terms(model, mix)
        self.eta = responsibilities(lik + (s1 - s0).permute(0, 2, 3, 1), model.log_pi(mix))

    def guide(self, mix, values, **kw):
        B, T, F = mix.shape
        with pyro.plate("batch_tf", B, dim=-3), pyro.plate("time", T, dim=-2), pyro.plate("freq", F, dim=-1):
            return {"w": pyro.sample("w", dist.Categorical(self.eta))}


# ------------------------------------------------------------------------------------------------- M-steps
class NoiseMStep(ClosedFormBlock):
    """M-step of the residual variance scale (exact, per mixture; see
    :meth:`~pyro_dvae.likelihoods.ComplexGaussianBins.m_step`)."""

    def __init__(self):
        super().__init__("noise", kind="m")

    @torch.no_grad()
    def update(self, model, guide, mix, **kw):
        qs = guide["s"]
        model.likelihood.m_step(mix, guide["w"].eta, qs.mean1.permute(0, 2, 3, 1), qs.var1.permute(0, 2, 3, 1))


class GainMStep(ClosedFormBlock):
    """M-step of the source gains: ``g_n = mean_tf E_q|s_n,tf|^2 / v_theta,n,tf`` (exact given ``q`` and the
    decoder variances), clamped to ``[min_gain, max_gain]``."""

    def __init__(self, min_gain=1e-3, max_gain=1e3):
        super().__init__("gain", kind="m")
        self.min_gain, self.max_gain = min_gain, max_gain

    @torch.no_grad()
    def update(self, model, guide, mix, **kw):
        qs = guide["s"]
        g = (qs.moments(guide["w"].eta.permute(0, 3, 1, 2))[1] / qs.prior_var).mean((-2, -1))
        model.gain = g.clamp(self.min_gain, self.max_gain).to(model.gain.dtype)


class WeightMStep(ClosedFormBlock):
    """M-step of the assignment weights: ``pi_n = mean_tf q(w_tf = n)`` per mixture (exact), floored."""

    def __init__(self, min_weight=1e-3):
        super().__init__("pi", kind="m")
        self.min_weight = min_weight

    @torch.no_grad()
    def update(self, model, guide, mix, **kw):
        pi = guide["w"].eta.mean((1, 2)).clamp_min(self.min_weight)
        model.pi = (pi / pi.sum(-1, keepdim=True)).to(model.pi.dtype)


# ------------------------------------------------------------------------------------------------- guide
class SeparationGuide(StructuredGuide):
    """Structured guide for :class:`SeparationModel`: blocks ``z`` (E-Z), ``s`` (E-S), ``w`` (E-W).

    As a Pyro guide it samples ``w ~ q(w)``, then ``s ~ q(s | w)`` (independent of ``w`` in the mean-field
    family), then ``z_n`` (and DSAE's ``v_n``) from prior ``n``'s encoder on ``E_q|s_n|^2`` (so ``q(z)``
    does not depend on the draws).

    :param SeparationModel model: the model.
    :param str mode: ``"sequential"`` or ``"parallel"`` (autoregressive decoders in E-S; module docstring).
    :param str family: ``"structured"`` (``q(w) q(s | w)``) or ``"meanfield"`` (``q(w) q(s)``, the reference).
    :param bool sample_z: E-Z draws ``z`` (True) or takes the encoder's noiseless path.
    """

    def __init__(self, model, mode="sequential", family="meanfield", sample_z=True):
        super().__init__([LatentBlock(sample=sample_z), SourceBlock(mode, family), AssignmentBlock()])
        self._model = [model]  # not a submodule: model parameters stay out of the guide

    def source_moments(self):
        """Posterior mean and power ``E_q[s]``, ``E_q|s|^2`` of every source, ``(B, N, T, F)``."""
        return self["s"].moments(self["w"].eta.permute(0, 3, 1, 2))

    @torch.no_grad()
    def initialise(self, mix, init="prior"):
        """Set the starting point (module docstring): ``init`` is ``"prior"``, ``"equal"`` or masks
        ``(B, N, T, F)`` (nonnegative, normalised over sources here). Runs one E-S. Returns ``self``."""
        model = self._model[0]
        mix = check_mixture(mix, model.num_bins)
        B, T, F = mix.shape
        N = model.num_sources
        power = (abs2(mix)).unsqueeze(1).expand(B, N, T, F)
        masks = None
        if torch.is_tensor(init):
            if init.shape != (B, N, T, F) or not torch.isfinite(init).all() or (init < 0).any():
                raise ValueError(f"init masks must be finite, nonnegative and shaped {(B, N, T, F)}, "
                                 f"got {tuple(init.shape)}")
            masks = init.to(power.dtype).clamp_min(1e-6)
            masks = masks / masks.sum(1, keepdim=True)
            power = masks * power
        elif init not in ("prior", "equal"):
            raise ValueError(f"init must be 'prior', 'equal' or a tensor of masks, got {init!r}")
        qz, qs, qw = self["z"], self["s"], self["w"]
        qz.encode(model, power, sample=False)
        qs.mean1 = None
        qs.power_hint = power
        if masks is not None:
            qw.eta = masks.permute(0, 2, 3, 1).contiguous()
        elif init == "equal":
            qw.eta = torch.full((B, T, F, N), 1.0 / N, dtype=power.dtype, device=power.device)
        else:
            v = torch.empty_like(power)
            for prior, idx in model.groups:
                z, statics = model._group_latents(qz.latents, idx)
                v[:, idx] = model.decoder_variance(prior, z, power[:, idx], statics)
            v = model.source_gain(v) * v + model.likelihood.variance(mix).unsqueeze(1)
            marginal = complex_normal_log_prob(mix.unsqueeze(1), v).permute(0, 2, 3, 1)
            qw.eta = responsibilities(marginal, model.log_pi(mix))
        qs.update(model, self, mix)
        return self

    def estimate(self, mix, output="wiener"):
        """Source STFT estimates ``(B, N, T, F)`` from the current posterior:

        - ``"mean"``: the posterior means ``E_q[s_n]`` (what the reference outputs; shrunk towards 0 in bins
          where the prior variance is far below the residual variance ``v_x``);
        - ``"mask"``: ``q(w = n) o``, the mixture split by the responsibilities;
        - ``"wiener"``: ``E_q|s_n|^2 / sum_k E_q|s_k|^2 o``, a Wiener post-filter with the posterior source
          powers (the estimates sum to the mixture).
        """
        mean, power = self.source_moments()
        if output == "mean":
            return mean
        if output == "mask":
            return self["w"].eta.permute(0, 3, 1, 2) * mix.unsqueeze(1)
        if output == "wiener":
            return power / power.sum(1, keepdim=True) * mix.unsqueeze(1)
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")

    def forward(self, mix, **kw):
        model = self._model[0]
        mix = check_mixture(mix, model.num_bins)
        values = self["w"].guide(mix, {})
        with pyro.plate("batch", mix.shape[0], dim=-2):
            values.update(self["s"].guide(mix, values))
            self["z"].sites(model, self.source_moments()[1])
        return values

    def exact_elbo(self, model, mix, **kw):
        qs, qw, qz = self["s"], self["w"], self["z"]
        if qs.prior_var is None or qw.eta is None:
            return None
        eta = qw.eta
        lik, s1, s0 = qs.expected_terms(model, mix)
        eta_bn = eta.permute(0, 3, 1, 2)
        elbo = (eta * (lik + model.log_pi(mix))).sum() + entropy(eta).sum()
        elbo = elbo + (eta_bn * s1 + (1 - eta_bn) * s0).sum()
        return elbo - (qz.kl.sum() if qz.kl is not None else 0.0)




# ------------------------------------------------------------------------------------------------- running
METHODS = ("mixdvae", "mixture", "oracle_ibm", "oracle_wiener", "is_nmf", "temporal_nmf")


@dataclass
class SeparationResult:
    """The output of :func:`run_separation`.

    :ivar list names: source names, in the order of the source dim.
    :ivar torch.Tensor stft: estimated source STFTs ``(B, N, T, F)`` (``(N, T, F)`` for an unbatched input),
        in the units of the input.
    :ivar numpy.ndarray waveforms: ``(B, N, L)`` / ``(N, L)`` estimated source signals (waveform input only).
    :ivar result: the :class:`~pyro_dvae.inference.InferenceResult` (``None`` for mask baselines).
    :ivar dict info: method, algorithm, final residual scale and gains, seconds.
    """

    names: list
    stft: torch.Tensor
    waveforms: object = None
    result: object = None
    info: dict = field(default_factory=dict)


def _as_batch(x, what, dims):
    """``x`` as a tensor with a leading batch dim; ``dims`` is the unbatched rank."""
    x = torch.as_tensor(x)
    if x.dim() not in (dims, dims + 1):
        raise ValueError(f"{what} must have {dims} or {dims + 1} dims, got shape {tuple(x.shape)}")
    return (x.unsqueeze(0), False) if x.dim() == dims else (x, True)


def prepare_mixture(mix, n_fft=N_FFT, hop=HOP):
    """A waveform ``(L,)`` / ``(B, L)`` (peak-normalised per mixture here, as the priors' training files
    were) or a complex STFT ``(T, F)`` / ``(B, T, F)`` (used as given) -> ``(stft (B, T, F), length or None,
    scale (B,), batched)``. Silent, too short (under one frame of ``n_fft`` samples) or non-finite
    input is a :class:`ValueError`."""
    if torch.is_tensor(mix) and mix.is_complex():
        X, batched = _as_batch(mix, "a mixture STFT", 2)
        return check_mixture(X), None, torch.ones(X.shape[0]), batched
    x, batched = _as_batch(torch.as_tensor(mix, dtype=torch.float32), "a mixture waveform", 1)
    if x.shape[-1] < n_fft:
        raise ValueError(f"the mixture has {x.shape[-1]} samples, shorter than one STFT frame ({n_fft})")
    if not torch.isfinite(x).all():
        raise ValueError("the mixture contains NaN or inf samples")
    scale = x.abs().amax(-1)
    if not (scale > 0).all():
        raise ValueError("the mixture is silent (all samples are zero)")
    return stft(x / scale[:, None], n_fft, hop), x.shape[-1], scale, batched


def _prepare_refs(refs, X, length, scale, num_sources, n_fft, hop):
    if refs is None:
        return None
    refs = torch.as_tensor(np.asarray(refs) if not torch.is_tensor(refs) else refs)
    if refs.is_complex():
        R, _ = _as_batch(refs, "reference STFTs", 3)
    else:
        R, _ = _as_batch(refs.to(torch.float32), "reference waveforms", 2)
        if length is None or R.shape[-1] != length:
            raise ValueError(f"reference waveforms need a waveform mixture of the same length ({length}), got "
                             f"{R.shape[-1]} samples")
        if not torch.isfinite(R).all():
            raise ValueError("the references contain NaN or inf samples")
        R = stft(R / scale[:, None, None], n_fft, hop)
    if R.shape[0] != X.shape[0] or R.shape[1] != num_sources or R.shape[2:] != X.shape[1:]:
        raise ValueError(f"references must be {num_sources} sources matching the mixture, got shape "
                         f"{tuple(R.shape)} for a mixture STFT {tuple(X.shape)}")
    return R.to(X.dtype)


def run_separation(mix, priors=None, *, names=None, method="mixdvae", algo="vem", num_iters=30, refs=None, nmf=None,
                   init="prior", mode="sequential", family="meanfield", output="wiener", noise="proportional",
                   noise_ratio=0.01, learn_noise=False, learn_gain=True, learn_weights=False, sample_z=True, lr=0.02,
                   nmf_iters=100, nmf_alpha=None, nmf_beta=None, chunk=None, seed=0, n_fft=N_FFT, hop=HOP,
                   progress=False):
    """Separate the sources of one or a batch of mixtures.

    :param mix: waveform ``(L,)`` / ``(B, L)`` (peak-normalised here, outputs scaled back) or complex STFT
        ``(T, F)`` / ``(B, T, F)`` of a peak-normalised mixture (:func:`prepare_mixture`).
    :param list priors: one spectral prior per source (``mixdvae``); also gives the number of sources.
    :param list names: source names (default: ``source0``, ...; NMF dictionaries are looked up by name).
    :param str method: one of :data:`METHODS`: ``"mixdvae"``; ``"mixture"`` (every estimate is the
        mixture); ``"oracle_ibm"`` / ``"oracle_wiener"`` (need ``refs``); ``"is_nmf"`` / ``"temporal_nmf"``
        (need ``nmf``, an :class:`~pyro_dvae.nmf.NMFSeparator` with one dictionary per source name).
    :param str algo: ``"vem"`` (the structured guide), ``"svi"`` or ``"enum-svi"`` (an ``AutoNormal`` guide
        over ``s`` and the latents, ``w`` summed out exactly, started from the closed-form initialisation),
        all through :func:`pyro_dvae.inference.run`.
    :param int num_iters: VEM iterations or SVI steps.
    :param refs: reference sources (waveforms ``([B,] N, L)`` or STFTs ``([B,] N, T, F)``).
    :param init: ``"prior"``, ``"equal"``, ``"nmf"`` (IS-NMF Wiener masks from ``nmf``) or masks
        ``(B, N, T, F)`` (:meth:`SeparationGuide.initialise`).
    :param str mode: ``"sequential"`` or ``"parallel"`` E-S for autoregressive priors.
    :param str family: ``"structured"`` (``q(w) q(s | w)``) or ``"meanfield"`` (the reference's ``q(w) q(s)``).
    :param str output: how the source STFTs are read from the posterior (:meth:`SeparationGuide.estimate`).
    :param str noise: ``"proportional"`` or ``"global"`` residual variance
        (:class:`~pyro_dvae.likelihoods.ComplexGaussianBins`), initial scale ``noise_ratio``.
    :param bool learn_noise: M-step of the residual scale; ``learn_gain``: of the source gains;
        ``learn_weights``: of the assignment weights ``pi``.
    :param bool sample_z: E-Z draws ``z`` (else the encoder's noiseless path).
    :param float lr: SVI learning rate.
    :param int chunk: MixDVAE only: separate mixtures longer than ``chunk`` frames as independent chunks of
        ``chunk`` frames run as one batch (the priors are trained on short chunks; the time loop of a
        sequential E-S then runs ``chunk`` steps whatever the length), the last completed by mirroring.
        ``None``: the whole mixture at once.
    :returns: :class:`SeparationResult`.
    """
    from pyro_dvae import inference

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if algo not in ("vem", "svi", "enum-svi"):
        raise ValueError(f"algo must be 'vem', 'svi' or 'enum-svi', got {algo!r}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if method == "mixdvae" or priors is not None:
        priors, names = check_priors(priors, names)
    elif names is None:
        raise ValueError(f"method {method!r} without priors needs names=[...] (one per source)")
    names = list(names)
    X, length, scale, batched = prepare_mixture(mix, n_fft, hop)
    R = _prepare_refs(refs, X, length, scale, len(names), n_fft, hop)
    if method.startswith("oracle") and R is None:
        raise ValueError(f"method {method!r} needs the reference sources (refs=...)")
    if (method.endswith("nmf") or (isinstance(init, str) and init == "nmf")) and nmf is None:
        raise ValueError("NMF (method or init) needs nmf=NMFSeparator(...) fitted on each source's training audio")
    pyro.set_rng_seed(seed)
    start = time.perf_counter()
    result, info = None, {"method": method}
    if method == "mixture":
        S = X.unsqueeze(1).expand(-1, len(names), -1, -1)
    elif method.startswith("oracle"):
        S = oracle_masks(R, method[len("oracle_"):]) * X.unsqueeze(1)
    elif method.endswith("nmf"):
        kind = "is" if method == "is_nmf" else "temporal"
        S = nmf_masks(X, nmf, names, kind, nmf_iters, nmf_alpha, nmf_beta) * X.unsqueeze(1)
    else:
        dtype = next(priors[0].parameters()).dtype
        X = check_mixture(X.to(torch.complex128 if dtype == torch.float64 else torch.complex64), priors[0].x_dim)
        if isinstance(init, str) and init == "nmf":
            init = nmf_masks(X, nmf, names, "is", nmf_iters).to(X.real.dtype)
        frames = X.shape[1]
        if chunk is not None and frames > chunk:
            X = _split(X, chunk)
            init = _split(init.transpose(1, 2), chunk).transpose(1, 2) if torch.is_tensor(init) else init
        model = SeparationModel(priors, names, ComplexGaussianBins(noise_ratio, kind=noise), learn_noise=learn_noise,
                                learn_gain=learn_gain, learn_weights=learn_weights)
        guide = SeparationGuide(model, mode=mode, family=family, sample_z=sample_z).initialise(X, init)
        if algo == "vem":
            with torch.no_grad():
                result = inference.run("vem", model, guide, X, num_iters=num_iters, progress=progress)
            S = guide.estimate(X, output)
        else:
            S, result = _run_svi(model, guide, X, algo, num_iters, lr, progress, output)
        info.update(algo=algo, noise_scale=model.likelihood.scale.tolist(), gain=model.gain.tolist())
        if S.shape[2] != frames:  # chunked: (B * K, N, chunk, F) -> (B, N, T, F)
            S = S.unflatten(0, (scale.shape[0], -1)).movedim(1, 2).flatten(2, 3)[:, :, :frames]
    info["seconds"] = time.perf_counter() - start
    S = S.detach() * scale.to(S.real.dtype).view(-1, 1, 1, 1)
    waves = None
    if length is not None:
        waves = istft(S, length, n_fft, hop).numpy()
    if not batched:
        S, waves = S[0], (None if waves is None else waves[0])
    return SeparationResult(names, S, waves, result, info)


def _split(X, size):
    """``(B, T, ...)`` -> ``(B * K, size, ...)``, ``K = ceil(T / size)``; the last chunk is completed by
    mirroring the frames before the end (``T > size``)."""
    pad = -X.shape[1] % size
    if pad:
        X = torch.cat([X, X[:, -pad - 1:-1].flip(1)], 1)
    return X.unflatten(1, (-1, size)).flatten(0, 1)


def _run_svi(model, guide, X, algo, num_iters, lr, progress, output):
    from pyro.infer.autoguide import AutoNormal, init_to_value

    from pyro_dvae import inference

    values = {"s": torch.view_as_real(guide.source_moments()[0]).contiguous()}
    for n, lat in zip(model.names, guide["z"].latents):
        values.update({f"{k}_{n}": v for k, v in lat.items() if v.shape[-1] > 0})
    blocked = poutine.block(model.model, hide_types=["param"])  # the priors stay fixed
    auto = AutoNormal(poutine.block(model.model, hide=["w"]), init_scale=1e-2, init_loc_fn=init_to_value(values=values))
    pyro.clear_param_store()
    result = inference.run(algo, blocked, auto, X, num_steps=num_iters, lr=lr, progress=progress)
    with torch.no_grad():
        S = torch.view_as_complex(auto.median(X)["s"].contiguous())
    if output == "wiener":
        S = abs2(S) / (abs2(S)).sum(1, keepdim=True).clamp_min(1e-30) * X.unsqueeze(1)
    elif output == "mask":
        raise ValueError("output='mask' needs the closed-form q(w) of algo='vem'")
    return S, result


# ------------------------------------------------------------------------------------------------- files
def load_separation_prior(path, sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop=HOP):
    """Load a spectral prior checkpoint for separation, checking that it matches the front end.

    Checkpoints may carry ``sample_rate``, ``n_fft`` and ``hop`` entries (``prior.save(path, **extra)``);
    a checkpoint without them is taken to use the package's front end (16 kHz, 1024, 256: what
    ``pyro-dvae train-prior`` uses for audio). Another value, a Gaussian (trajectory) prior or a prior of
    another number of bins than ``n_fft // 2 + 1`` is a :class:`ValueError`.
    """
    from pyro_dvae import priors as zoo

    return zoo.load_spectral(path, sample_rate, n_fft, hop, task="separation")
