# SPDX-License-Identifier: Apache-2.0
"""The MixDVAE separation model (:class:`SeparationModel`, described in :mod:`pyro_dvae.models.separation`)."""

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.nn import PyroModule
from pyro.ops.indexing import Vindex

from pyro_dvae.assignment import assignment_probs
from pyro_dvae.likelihoods import ComplexGaussianBins, complex_normal_log_prob
from pyro_dvae.priors import DVAE, SequentialNormal
from pyro_dvae.priors.base import standard_normal_steps

from .guide import GainMStep, NoiseMStep, WeightMStep, check_mixture


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
        return prior.expected(*prior.emission_params(z, power, latents))[1]

    # ------------------------------------------------------------------------------------------- Pyro model
    def _latent_sites(self, n, prior, power_like, cell, joint):
        B, _, T, _ = power_like.shape
        out = {}
        if "v" in prior.latent_sites:
            zeros = power_like.new_zeros(B, 1, prior.v_dim)
            out["v"] = pyro.sample(f"v_{self.names[n]}", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
        z_like = power_like.new_zeros(B, 1, T, prior.z_dim)
        if "z" not in prior.latent_sites:
            out["z"] = z_like
            return out
        if type(prior).z_prior_params is DVAE.z_prior_params:
            z_dist = standard_normal_steps(z_like)
        else:
            statics = {k: v for k, v in out.items() if k != "z"}  # this source's w (site v), if any

            def params(z, prior=prior, n=n):
                if not prior.autoregressive:
                    return prior.z_prior_params(z, None, statics)
                if "power" not in cell:
                    raise ValueError(f"the {prior.name} prior of z reads the source spectra: draw z and s through "
                                     "a guide")
                return prior.z_prior_params(z, cell["power"][:, n:n + 1], statics)

            # p(z_t | z_<t, s_<t): without a guide, z and the source are drawn together
            draw = self._joint_draw(n, prior, power_like, out, joint) if prior.autoregressive else None
            z_dist = SequentialNormal(params, z_like, draw)
            cell.setdefault("z_dists", {})[n] = z_dist
        out["z"] = pyro.sample(f"z_{self.names[n]}", z_dist.to_event(1))
        return out

    def _joint_draw(self, n, prior, power_like, statics, joint):
        """The ``sample_fn`` of source ``n``'s ``z`` site when its prior of ``z`` reads the source: ``z`` and the
        source's STFT drawn together, step by step (:meth:`~pyro_dvae.priors.DVAE.joint_stepwise`), under this
        model's densities; the source's draw waits in ``joint[n]`` for the ``s`` site."""
        def sample(eps):
            B, _, T, F = power_like.shape
            g = self.source_gain(power_like.new_zeros(B, self.num_sources, 1, 1))[:, n:n + 1]
            draws = []

            def feed(t, _, var_t):
                s_t = torch.randn(*var_t.shape, 2, dtype=var_t.dtype, device=var_t.device)
                draws.append(s_t * (0.5 * g[..., 0] * var_t).sqrt().unsqueeze(-1))
                return draws[-1].pow(2).sum(-1)

            if "v" in prior.latent_sites:  # this model's z prior is z_prior_params, its emission reads the statics
                moments = lambda z, x: prior.expected(*prior.emission_params(z, x, statics))  # noqa: E731
                z, loc, scale, _, _ = prior.joint_teacher_forced(
                    eps, feed, lambda z, x: prior.z_prior_params(z, x, statics), moments)
            else:
                z, loc, scale, _, _ = prior.joint_stepwise(eps, feed, statics)
            joint[n] = (z, torch.stack(draws, -3))
            return z, loc, scale

        return sample

    def group_latents(self, latents, idx):
        """The latents of the sources ``idx`` (a group sharing a prior, ``groups``) stacked along the source
        dimension: ``(z (B, k, T, z_dim), statics)`` with ``statics`` the static latents by site name
        ``(B, k, dim)``; ``latents`` holds one dict per source."""
        z = torch.cat([latents[n]["z"] for n in idx], 1)
        statics = {k: torch.cat([latents[n][k] for n in idx], 1) for k in latents[idx[0]] if k != "z"}
        return z, statics

    def variance_fn(self, latents):
        """The function ``power (B, N, T, F) -> g v_theta (B, N, T, F)`` giving every source's decoder variance,
        scaled by its gain and teacher forced on ``power``, at the given latents (one dict per source): the
        ``variance_fn`` of :class:`SourceSpectra`."""
        def variance(power):
            out = torch.empty_like(power)
            for prior, idx in self.groups:
                z, statics = self.group_latents(latents, idx)
                out[:, idx] = self.decoder_variance(prior, z, power[:, idx], statics)
            return self.source_gain(out) * out
        return variance

    def _sample_fn(self, latents, like, joint, used):
        def sample():
            out = torch.empty_like(like)
            gain = self.source_gain(like[..., 0])
            for prior, idx in self.groups:
                if all(n in joint and joint[n][0] is latents[n]["z"] for n in idx):  # drawn with z
                    out[:, idx] = torch.cat([joint[n][1] for n in idx], 1)
                    used.setdefault("sources", set()).update(idx)
                    continue
                z, statics = self.group_latents(latents, idx)
                g = gain[:, idx]
                if prior.autoregressive:
                    draws = []

                    def feed(t, _, var_t):
                        s_t = torch.randn(*var_t.shape, 2, dtype=var_t.dtype, device=var_t.device)
                        draws.append(s_t * (0.5 * g[..., 0] * var_t).sqrt().unsqueeze(-1))
                        return draws[-1].pow(2).sum(-1)

                    prior.decode_stepwise(z, feed, latents=statics)
                    out[:, idx] = torch.stack(draws, -3)
                else:
                    v = g * self.decoder_variance(prior, z, None, statics)
                    out[:, idx] = torch.randn_like(out[:, idx]) * (0.5 * v).sqrt().unsqueeze(-1)
            used["draw"] = out
            return out
        return sample

    def sources(self, mix):
        """Sample the latents and the source STFTs (real view ``(B, N, T, F, 2)``). Without a guide, a source
        whose prior of ``z`` reads it is drawn together with its ``z``; the densities are always those at the
        values the sites end up with."""
        B, T, F = mix.shape
        power_like = mix.real.new_zeros(B, 1, T, F)
        cell, joint, used = {}, {}, {}
        with pyro.plate("batch", B, dim=-2):
            latents = [self._latent_sites(n, p, power_like, cell, joint) for n, p in enumerate(self.priors)]
            like = mix.real.new_zeros(B, self.num_sources, T, F, 2)
            with pyro.plate("sources", self.num_sources, dim=-1):
                s = pyro.sample("s", SourceSpectra(self.variance_fn(latents), like,
                                                   self._sample_fn(latents, like, joint, used)))
            cell["power"] = s.pow(2).sum(-1)
        for n, (z, _) in joint.items():  # a z drawn with a source that the s site did not keep: recompute p(z)
            if latents[n]["z"] is z and not (used.get("draw") is s and n in used["sources"]):
                cell["z_dists"][n].unbind()
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

