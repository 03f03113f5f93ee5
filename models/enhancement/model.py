# SPDX-License-Identifier: Apache-2.0
"""The enhancement model: a DVAE speech prior plus a noise model, as a Pyro model and amortised guide.

See :mod:`pyro_dvae.models.enhancement` for the model, its plates and references."""

import copy

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites
from torch import nn

from pyro_dvae import noise as noise_models
from pyro_dvae.masks import scale_mixture_gain
from pyro_dvae.nmf import gain_step
from pyro_dvae.priors import DVAE, SequentialNormal
from pyro_dvae.priors.rvae import RVAEPathSampler

from .config import TRANSIENT_SPREAD
from .guide import NMFMStep


def check_power(power, num_bins):
    """Validate noisy power spectrograms ``(B, T, F)``; returns them."""
    if not torch.is_tensor(power) or power.dim() != 3 or not power.is_floating_point():
        raise ValueError(f"power must be a real tensor (B, T, F), got {type(power).__name__} "
                         f"{tuple(getattr(power, 'shape', ()))}")
    if power.shape[-1] != num_bins:
        raise ValueError(f"the speech prior models {num_bins} frequency bins, the input has {power.shape[-1]}")
    if power.shape[-2] < 1:
        raise ValueError("the input has no STFT frame")
    if not torch.isfinite(power).all() or (power < 0).any():
        raise ValueError("power must be finite and nonnegative")
    return power


def kept_energy(mask, power):
    """The share of the energy of ``power`` (noisy power, any shape) that the Wiener estimate ``mask * x`` keeps:
    ``sum mask^2 |x|^2 / sum |x|^2``. A no-reference measure of how much the noise model left to the speech."""
    return float((mask**2 * power).sum() / power.sum().clamp_min(torch.finfo(power.dtype).tiny))


def log_power_spread(power, bins=None):
    """How far the input's per-bin power is from a stationary noise: the median over bins of the log-ratio of the
    0.5- and 0.2-quantiles of each bin's power over time (``power`` ``(..., T, F)``; ``bins``: the live bins).
    Stationary noise, whose power is exponential in each bin, gives ``log(log 2 / -log 0.8) = 1.13``; speech on it
    lifts the upper quantile a little; noise made of loud events with quiet gaps (impacts, clatter) lifts it much
    more, at any SNR (the threshold :data:`TRANSIENT_SPREAD` was chosen on the dev split; see BENCHMARKS.md)."""
    return _spread(_live_log_power(power, bins)[1])


def _live_log_power(power, bins):
    """``(p, log p)``: ``power`` as ``(N, T, F)`` on the live ``bins`` (``None``: all), its log floored at ``tiny``."""
    p = power.reshape(-1, *power.shape[-2:])
    if bins is not None:
        p = p[..., bins.to(p.device)]
    return p, p.clamp_min(torch.finfo(p.dtype).tiny).log()


def _spread(lp):
    q = torch.quantile(lp, torch.tensor([0.2, 0.5], dtype=lp.dtype, device=lp.device), dim=-2)
    return float((q[1] - q[0]).median())


def speech_share(power, bins=None, quantile=None):
    """A no-reference estimate of the share of the energy of ``power`` (noisy power ``(..., T, F)``) that is speech:
    one minus the share of a noise floor, whose mean per bin is the ``quantile`` of the bin's power over time
    divided by ``-log(1 - quantile)`` (the ``quantile`` of an exponential law of mean 1). ``bins``: the live bins
    (:meth:`EnhancementModel.set_band`); ``None``: all. In [0, 1].

    ``quantile=None`` chooses it from the input: 0.2 (a stationary floor) unless :func:`log_power_spread` exceeds
    :data:`TRANSIENT_SPREAD`, then 0.5 (the median, as in quantile-based noise estimation). Speech present in
    most frames lifts the floor (an under-estimate); noise that is not stationary is not all floor (an
    over-estimate): with loud events and quiet gaps the 0.2-quantile floor is near zero at any SNR, which the
    median corrects in part.

    References: V. Stahl, A. Fischer, R. Bippus, "Quantile based noise estimation for spectral subtraction and
    Wiener filtering", ICASSP 2000."""
    p, lp = _live_log_power(power, bins)
    if quantile is None:
        quantile = 0.5 if _spread(lp) > TRANSIENT_SPREAD else 0.2
    if not 0.0 < float(quantile) < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    floor = torch.quantile(lp, float(quantile), dim=-2).exp() / noise_models.exponential_quantile(quantile)
    noise = floor.sum() * p.shape[-2]
    return float((1.0 - noise / p.sum().clamp_min(torch.finfo(p.dtype).tiny)).clamp(0.0, 1.0))


def encoder_parameter_names(prior):
    """Names of the parameters of ``prior`` that only its encoder ``q(z | x)`` uses.

    Found by autograd on a small random input: parameters reached from the encoder's draw of ``z`` and not
    from the generative model (decoder and latent prior). Parameters shared by both (e.g. SRNN's forward
    LSTM on ``x``) count as generative, so they stay frozen in enhancement.
    """
    params = dict(prior.named_parameters())
    x = torch.rand(1, 3, prior.x_dim, dtype=prior.x_loc.dtype, device=prior.x_loc.device) + 0.1

    def reached(out):
        names = list(params)
        grads = torch.autograd.grad(out, [params[n] for n in names], allow_unused=True)
        return {n for n, g in zip(names, grads) if g is not None}

    with torch.enable_grad():
        q, statics = prior.encode(x, with_statics=True)
        z = q.rsample()
        enc = reached(z.sum() + sum(v.sum() for v in statics.values()))
        zz = z.detach().requires_grad_(True)
        latents = {"z": zz, **{k: v.detach() for k, v in statics.items()}}
        out = prior.expected(*prior.emission_params(zz, x, latents))[1].sum()
        z_prior = prior.z_prior_params(zz, x, latents)
        if z_prior is not None:
            out = out + z_prior[0].sum() + z_prior[1].sum()
        gen = reached(out)
    names = sorted(enc - gen)
    if not names:
        raise ValueError(f"the {prior.name} prior has no encoder parameter apart from its generative model")
    return names


class PathNormal(dist.Normal):
    """A :class:`~pyro.distributions.Normal` whose reparameterised draw is a given ``value`` (carrying its own
    gradient): the one-step-truncated draw of :meth:`EnhancementModel.guide`. Densities and KL divergences
    are those of the Normal."""

    def __init__(self, loc, scale, value):
        super().__init__(loc, scale, validate_args=False)
        self._value = value

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) == self.batch_shape:
            return self
        raise NotImplementedError("PathNormal cannot be expanded")

    def rsample(self, sample_shape=torch.Size()):
        if len(sample_shape):
            raise NotImplementedError("PathNormal has one draw (sample_shape=())")
        return self._value


class EnhancementModel(nn.Module):
    """The enhancement model (module docstring). A plain :class:`torch.nn.Module`: call :meth:`model`
    (also its ``forward``) and :meth:`guide` as the Pyro model / amortised guide.

    :param DVAE prior: a spectral speech prior; it is *copied* (fine-tuning touches the copy's encoder only,
        every other parameter of the copy is frozen).
    :param noise: a :class:`~pyro_dvae.noise.NoiseModel` (not copied).
    :param str param_prefix: prefix of the Pyro parameter names used under ``svi``.
    :param bool parallel: draw ``z`` without autograd and differentiate one teacher-forced pass (:meth:`guide`;
        priors with the single latent site ``z``: DSAE always differentiates through the sequential draw).
    """

    def __init__(self, prior, noise, param_prefix="enhancement", parallel=True):
        super().__init__()
        if not isinstance(prior, DVAE) or prior.emission != "spectral":
            raise ValueError("speech enhancement needs a spectral DVAE prior (emission='spectral', trained on "
                             f"power spectra), got {getattr(prior, 'name', type(prior).__name__)}")
        if not prior.latent_sites or prior.z_dim < 1:
            raise ValueError(f"the {prior.name} prior has no latent variables to infer")
        if not isinstance(noise, noise_models.NoiseModel):
            raise TypeError(f"noise must be a pyro_dvae.noise.NoiseModel, got {type(noise).__name__}")
        if noise.num_bins != prior.x_dim:
            raise ValueError(f"noise model has {noise.num_bins} bins, the speech prior {prior.x_dim}")
        if noise.reads_z and noise.z_dim != prior.z_dim:
            raise ValueError(f"the {noise.name} noise model reads z_dim={noise.z_dim}, the prior has {prior.z_dim}")
        self.prior = copy.deepcopy(prior).eval().requires_grad_(True)  # a frozen prior's copy too: see the names below
        self.noise = noise.to(prior.x_loc.device)  # the speech prior's device, CPU or CUDA
        self.encoder_names = encoder_parameter_names(self.prior)
        for name, p in self.prior.named_parameters():
            p.requires_grad_(name in self.encoder_names)
        self.register_buffer("gain", torch.ones(()))  # per-frame (B, T) for nmf, per-utterance (B, 1) otherwise
        self.log_gain = None  # deep noise models under svi: the per-utterance gain as a fitted parameter
        self.speech_hint = None
        self.bins = None  # (F,) bool: the bins that count in the likelihood (None: all); see set_band
        self.selected_mask = self.selected_iter = None  # fit_vem's max-kept selection
        self.gain_floor = None  # fit_vem: the NMF M-step's floor on the per-frame gain (a share of its mean)
        self.speech_shape = None  # the output's speech model: Gaussian (None) or a Gamma scale mixture (wiener_gain)
        self.param_prefix = param_prefix
        self.register_params = False  # True while svi runs (see fit_svi)
        self.posterior_guide = None  # a guide fitted instead of the encoder (fit_svi's guide=): posterior draws z
        self.parallel = bool(parallel) and tuple(self.prior.latent_sites) == ("z",)
        self._fast = RVAEPathSampler.build(self.prior) if self.parallel else None
        like = self.prior.x_loc.new_ones(1, 2, self.prior.x_dim)
        self._iid_z = self.prior.z_prior_params(like.new_zeros(1, 2, self.prior.z_dim), like) is None
        self.m_steps = [NMFMStep()] if noise.name == "nmf" else []

    # ------------------------------------------------------------------------------------------ parameters
    def encoder_parameters(self):
        params = dict(self.prior.named_parameters())
        return [params[n] for n in self.encoder_names]

    def encoder_state(self):
        """The encoder's weights by name (what a noise checkpoint stores)."""
        params = dict(self.prior.named_parameters())
        return {n: params[n].detach().clone() for n in self.encoder_names}

    @torch.no_grad()
    def load_encoder_state(self, state):
        if sorted(state) != self.encoder_names:
            raise ValueError("encoder weights do not match this speech prior's encoder")
        params = dict(self.prior.named_parameters())
        for n, v in state.items():
            if params[n].shape != v.shape:
                raise ValueError(f"encoder weight {n}: shape {tuple(v.shape)}, expected {tuple(params[n].shape)}")
            params[n].copy_(v)

    def trainable_parameters(self):
        """Encoder weights plus the deep noise model's weights."""
        return self.encoder_parameters() + (list(self.noise.parameters()) if self.noise.deep else [])

    def _register(self, kind, named):
        if self.register_params:
            for n, p in named:
                pyro.param(f"{self.param_prefix}.{kind}.{n}", p)

    def clear_params(self):
        """Remove this model's entries from Pyro's global parameter store."""
        store = pyro.get_param_store()
        for key in [k for k in store.keys() if k.startswith(self.param_prefix + ".")]:
            del store[key]

    def set_band(self, power, floor_db=60.0):
        """Leave the empty top band of a band-limited input out of the likelihood, the M-steps and the gain
        (:func:`~pyro_dvae.data.audio.live_bins`): a speech prior trained on wideband speech predicts energy
        there, and an empty band otherwise pulls the speech gain, or the latents, towards silence. Returns the
        ``(F,)`` mask (``None``: every bin counts)."""
        from pyro_dvae.data.audio import live_bins

        live = live_bins(power, floor_db)
        self.bins = None if bool(live.all()) else live
        return self.bins

    # ------------------------------------------------------------------------------------------ densities
    def _run(self, gen, time_shape):
        """Run a prior's site generator as Pyro sites; returns ``(latents, value it returns)``."""
        value, latents = None, {}
        try:
            while True:
                name, d = gen.send(value)
                value = pyro.sample(name, self.prior.site_dist(d, None, time_shape))
                if isinstance(d, SequentialNormal):
                    d.bind(value)
                latents[name] = value
        except StopIteration as stop:
            return latents, stop.value

    def _hint(self, power):
        hint = self.speech_hint
        if not self.prior.autoregressive or hint is None or hint.shape != power.shape:
            return power
        return hint

    def speech_gain(self, rows, like):
        """The speech gain ``g`` (fitted ``log_gain`` under svi, else the ``gain`` buffer) broadcastable against
        ``(rows, T, F)`` tensors like ``like`` (``rows`` a multiple of the batch: particle-major copies); a 0-d
        tensor before :meth:`init_gain`."""
        g = (self.log_gain.exp() if self.log_gain is not None else self.gain).to(like.dtype)
        if not g.dim():
            return g
        return g.repeat(rows // g.shape[0], 1).unsqueeze(-1)

    def model(self, power, particles=1):
        """Pyro model of the noisy power ``(B, T, F)`` (module docstring); ``particles`` independent copies of
        the batch (``R B`` rows, particle-major) for an ``R``-sample estimate in one pass. Returns
        ``(v_s, v_n)`` (unscaled speech variance and noise variance, ``(R B, T, F)``)."""
        power = check_power(power, self.prior.x_dim)
        R, (B, T, F) = int(particles), power.shape
        P = power.repeat(R, 1, 1) if R > 1 else power
        if self.noise.deep:
            self._register("noise", self.noise.named_parameters())
        if self.log_gain is not None:
            self._register("speech", [("log_gain", self.log_gain)])
        with pyro.plate("batch", R * B, dim=-1):
            hint = self._hint(power)
            latents, (_, logvar) = self._run(self.prior.model_sites(hint.repeat(R, 1, 1) if R > 1 else hint,
                                                                    None, 0.0), (R * B, T))
        v_s = torch.exp(logvar)
        v_n = self.noise.variance(power, latents["z"]).reshape(-1, B, T, F).expand(R, B, T, F).reshape(R * B, T, F)
        v = (self.speech_gain(R * B, power) * v_s + v_n).clamp_min(torch.finfo(power.dtype).tiny)
        lik = dist.Exponential(1.0 / v)
        if self.bins is not None:
            lik = lik.mask(self.bins.to(v.device))
        with pyro.plate("batch_tf", R * B, dim=-3), pyro.plate("time", T, dim=-2), pyro.plate("freq", F, dim=-1):
            pyro.sample("x", lik, obs=P)
        return v_s, v_n

    forward = model

    def guide(self, power, particles=1):
        """The speech encoder ``q(z | x)`` on the noisy power (the amortised guide of every mode).

        Encoders with a recurrence on ``z`` (``q(z_t | z_{<t}, x)``: RVAE, DKF, SRNN, VRNN) draw ``z`` step by
        step. With ``parallel=True`` that draw runs without autograd and the gradient flows through the
        conditionals ``mu_t, sigma_t`` evaluated in one teacher-forced pass on the drawn path: the value and
        the density are exactly those of the sequential draw, the reparameterised gradient is truncated to one
        step of the ``z`` recurrence (``z_{<t}`` held fixed in ``z_t = mu_t(z_{<t}) + sigma_t(z_{<t}) eps_t``).
        This takes the step-by-step loop out of the backward pass; ``parallel=False`` differentiates through
        it (the reference's estimator).
        """
        power = check_power(power, self.prior.x_dim)
        R, (B, T, _) = int(particles), power.shape
        self._register("encoder", zip(self.encoder_names, self.encoder_parameters()))
        P = power.repeat(R, 1, 1) if R > 1 else power
        with pyro.plate("batch", R * B, dim=-1):
            if not self.parallel:
                return self._run(self.prior.guide_sites(P, None), (R * B, T))[0]
            if self._fast is not None:
                path, loc, scale = self._fast.draw(P)
            else:
                q = self.prior.encode(P)
                if not isinstance(q, SequentialNormal):
                    return {"z": pyro.sample("z", q.to_event(1))}
                with torch.no_grad():
                    path = q.rsample()
                loc, scale = q.params_fn(path)
            eps = ((path - loc) / scale).detach()
            d = PathNormal(loc, scale, loc + scale * eps).to_event(1)
            # the same nesting as the model's z site, so that TraceMeanField_ELBO finds the analytic KL
            d = d.to_event(1) if self._iid_z else dist.Independent(d, 1)
            return {"z": pyro.sample("z", d)}

    # ------------------------------------------------------------------------------------------ posterior
    def posterior(self, power, num_samples=8):
        """``(v_s, v_n, elbo)``: the scaled speech and noise variances ``g v_s``, ``v_n`` ``(R, B, T, F)`` at
        ``R = num_samples`` draws of ``z ~ q(z | x)``, and the ``R``-particle Monte-Carlo ELBO estimate."""
        R, shape = int(num_samples), (int(num_samples), *power.shape)
        if self.posterior_guide is not None:
            m_trace, log_q = self._guide_draws(power, R)
            elbo = float((m_trace.log_prob_sum() - log_q).detach()) / R
        else:
            g_trace = poutine.trace(self.guide).get_trace(power, R)
            m_trace = poutine.trace(poutine.replay(self.model, g_trace)).get_trace(power, R)
            elbo = float((m_trace.log_prob_sum() - g_trace.log_prob_sum()).detach()) / R
        v_s, v_n = m_trace.nodes["_RETURN"]["value"]
        return (self.speech_gain(R * power.shape[0], power) * v_s).reshape(shape), v_n.reshape(shape), elbo

    def _guide_draws(self, power, R):
        """:meth:`posterior`'s draws from :attr:`posterior_guide` (a guide of :meth:`model` on one copy of the
        batch, e.g. an autoguide): ``R`` runs of it stacked particle-major, and the model traced with its latents
        at those values; returns ``(model trace, sum of the R guide log-densities)``. The guide runs in a scope
        of its own in Pyro's parameter store (it reads its parameters from itself), which it leaves as it was."""
        with poutine.block(), pyro.get_param_store().scope():
            traces = [poutine.trace(self.posterior_guide).get_trace(power) for _ in range(R)]
        names = [k for k, v in prune_subsample_sites(traces[0]).nodes.items()
                 if v["type"] == "sample" and not v["is_observed"] and not v["infer"].get("is_auxiliary")]
        data = {k: torch.cat([t.nodes[k]["value"] for t in traces], 0) for k in names}
        m_trace = poutine.trace(poutine.condition(self.model, data=data)).get_trace(power, R)
        return m_trace, sum(t.log_prob_sum() for t in traces)

    @torch.no_grad()
    def wiener_gain(self, power, num_samples=8):
        """The speech estimate's gain ``E[s | x] / x`` ``(B, T, F)``, averaged over ``num_samples`` posterior draws
        of ``z``: ``E_q(z)[g v_s / (g v_s + v_n)]`` (the Wiener gain) with ``speech_shape=None``; with a
        ``speech_shape`` the speech variance of each bin carries a ``Gamma(speech_shape, speech_shape)`` scale of its
        own, integrated out given the bin's power (:func:`~pyro_dvae.masks.scale_mixture_gain`)."""
        v_s, v_n, _ = self.posterior(power, num_samples)
        return self.output_gain(v_s, v_n, power)

    def output_gain(self, v_s, v_n, power):
        """:meth:`wiener_gain` from given variances ``(R, B, T, F)`` (``power`` ``(B, T, F)``)."""
        return scale_mixture_gain(v_s, v_n, power, self.speech_shape)

    @torch.no_grad()
    def refresh_hint(self, power, num_samples=4, variances=None):
        """Autoregressive priors: set the decoder's past to ``E[|s|^2 | x] = w^2 |x|^2 + w v_n`` (the posterior
        speech power under the current fit, ``w = g v_s / (g v_s + v_n)``). A no-op for other priors."""
        if not self.prior.autoregressive:
            return
        v_s, v_n = variances if variances is not None else self.posterior(power, num_samples)[:2]
        w = v_s / (v_s + v_n)
        self.speech_hint = (w**2 * power + w * v_n).mean(0)

    @torch.no_grad()
    def init_gain(self, power, num_samples=4, iters=20):
        """Closed-form speech gain for the current encoder and noise model: ``iters`` multiplicative
        (majorise-minimise) updates of ``g`` in ``|x|^2 ~ Exp(g v_s + v_n)`` with ``R`` posterior draws of
        ``v_s`` and ``v_n`` held fixed (:func:`pyro_dvae.nmf.gain_step`), from ``g = 1``: per frame ``(B, T)``
        for nmf (the reference's gain), one per utterance ``(B, 1)`` for the deep noise models. The speech
        prior was trained on peak-normalised clean speech, whose level the speech in a normalised noisy
        input does not have; without this the first iterations spend themselves on the level."""
        B, T, _ = power.shape
        self.log_gain = None
        self.gain = torch.ones(B, T if self.noise.name == "nmf" else 1, dtype=power.dtype, device=power.device)
        v_s, v_n, _ = self.posterior(power, num_samples)
        g, V, Vs, Vn = self.gain, power.mT, v_s.mT, v_n.mT
        mask = None if self.bins is None else self.bins.view(-1, 1)
        for _ in range(iters):  # draws and, for one gain per utterance, frames are summed by gain_step
            g = gain_step(V, Vs, g, Vn, eps=torch.finfo(power.dtype).tiny, mask=mask)
        self.gain = g.clamp(1e-6, 1e6)
        return self.gain
