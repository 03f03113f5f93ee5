# SPDX-License-Identifier: Apache-2.0
"""The MixDVAE separation blocks iterated by ``vem``: E-Z (:class:`LatentBlock`), E-S (:class:`SourceBlock`),
E-W (:class:`AssignmentBlock`), the M-steps, and the structured guide :class:`SeparationGuide` that holds
them. The model and the algorithm are described in :mod:`pyro_dvae.models.separation`."""

import math

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import kl_divergence

from pyro_dvae.assignment import entropy, responsibilities
from pyro_dvae.inference import ClosedFormBlock, StructuredGuide
from pyro_dvae.likelihoods import abs2, complex_normal_entropy, complex_normal_log_prob
from pyro_dvae.priors import SequentialNormal

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



# ------------------------------------------------------------------------------------------------- E-Z
def _renamed(gen, suffix):
    """Wrap a prior's site generator so that its sites are called ``<site>_<suffix>``."""
    value = None
    while True:
        try:
            name, d = gen.send(value)
        except StopIteration as stop:
            return stop.value
        value = yield f"{name}_{suffix}", d


def _encoder_draw(prior, power, sample, previous=None):
    """Run ``prior``'s encoder on ``power (B, k, T, F)``: ``(latents, kl (B, k))`` with ``kl`` the analytic
    per-step KL of ``q`` to ``p`` at the drawn path (``sample=False``: the noiseless path).

    ``previous``: a path ``(B, k, T, z_dim)`` (the last iteration's). An encoder with a recurrence on ``z``
    (``q(z_t | z_{t-1}, s)``, a :class:`~pyro_dvae.priors.SequentialNormal`) then has its step conditionals
    evaluated in one teacher-forced pass on ``previous`` and every step drawn at once: a Jacobi sweep of the
    step-by-step draw (its fixed point, reached within ``T`` sweeps without noise), no loop over time."""
    x, _, lengths = prior.prepare_input(power, None)
    gen, value, latents, kl = prior.guide_sites(x, lengths), None, {}, x.new_zeros(x.shape[:2])
    while True:
        try:
            name, d = gen.send(value)
        except StopIteration:
            break
        if isinstance(d, SequentialNormal) and previous is not None and previous.shape == d.like.shape:
            q_loc, q_scale = d.params_fn(previous)
            value = q_loc + q_scale * torch.randn_like(q_loc) if sample else q_loc
        else:
            if sample:
                value = d.rsample()
            else:
                value = d.noiseless() if isinstance(d, SequentialNormal) else d.mean
            q_loc, q_scale = d.bind(value) if isinstance(d, SequentialNormal) else (d.base_dist.loc,
                                                                                   d.base_dist.scale)
        latents[name] = value
        statics = {k: v for k, v in latents.items() if k != "z"}  # the encoder's w (site v), drawn before z
        p = prior.z_prior_params(value, x if prior.autoregressive else None, statics) if name == "z" else None
        p_loc, p_scale = p if p is not None else (torch.zeros_like(value), torch.ones_like(value))
        step_kl = kl_divergence(dist.Normal(q_loc, q_scale), dist.Normal(p_loc, p_scale))
        kl = kl + step_kl.reshape(*x.shape[:2], -1).sum(-1)
    if "z" not in latents:
        latents["z"] = x.new_zeros(*x.shape[:-1], prior.z_dim)
    return latents, kl


class LatentBlock(ClosedFormBlock):
    """E-Z: ``q(z_n)`` = prior ``n``'s encoder on the expected source power ``E|s_n|^2``, one
    reparameterised draw (``sample=False``: the noiseless path). Holds ``latents`` (one dict per source)
    and ``kl (B, N)``.

    ``parallel=True``: encoders with a recurrence on ``z`` are evaluated in one teacher-forced pass on the
    previous iteration's path (a Jacobi sweep per VEM iteration, as in the tracking model) instead of a loop
    over time; the first draw (:meth:`SeparationGuide.initialise`) is always sequential.
    """

    def __init__(self, sample=True, parallel=False):
        super().__init__("z")
        self.sample, self.parallel, self.latents, self.kl = sample, parallel, None, None

    @torch.no_grad()
    def encode(self, model, powers, sample=None, parallel=None):
        """Draw every source's latents from its prior's encoder on ``powers``: one ``(B, k, T, F)`` tensor per
        group of sources sharing a prior (``model.groups``)."""
        sample = self.sample if sample is None else sample
        parallel = self.parallel if parallel is None else parallel
        latents, kl = [None] * model.num_sources, powers[0].new_zeros(powers[0].shape[0], model.num_sources)
        for (prior, idx), power in zip(model.groups, powers):
            previous = None
            if parallel and self.latents is not None:
                previous = torch.cat([self.latents[n]["z"] for n in idx], 1)
            lat, kl[:, idx] = _encoder_draw(prior, power, sample, previous)
            for j, n in enumerate(idx):
                latents[n] = {k: v[:, j:j + 1] for k, v in lat.items()}
        self.latents, self.kl = latents, kl

    def update(self, model, guide, mix, **kw):
        self.encode(model, guide.group_powers(model))

    def sites(self, model, power):
        """Sample the latent sites ``v_<name>`` / ``z_<name>`` from the encoders on ``power (B, N, T, F)``
        (call inside the ``batch`` plate)."""
        for n, (name, prior) in enumerate(zip(model.names, model.priors)):
            x, _, lengths = prior.prepare_input(power[:, n:n + 1], None)
            prior.run_sites(_renamed(prior.guide_sites(x, lengths), name), None, x.shape[:-1])


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
        self._real = None  # (mean1, r, |o|^2) when mean1 = r o with r real (mean-field E-S): |.|^2 without complex ops

    @property
    def shared(self):
        """Whether both components are the same (the mean-field family, or set so by hand)."""
        return self.mean0 is self.mean1 and self.var0 is self.var1

    def conditionals(self, v, obs, vx):
        """Structured family: ``(mean1, var1, mean0, var0)`` given the prior variance ``v``, the mixture ``obs``
        and the residual variance ``vx`` (broadcasting); the mean-field family uses :meth:`_meanfield`."""
        var1 = v / (1.0 + v / vx)
        return var1 / vx * obs, var1, torch.zeros_like(obs), v

    def real_ratio(self):
        """``(r, |o|^2)`` with ``mean1 = r o`` (``r`` real), as set by the last mean-field E-S, else ``None``."""
        if self._real is not None and self._real[0] is self.mean1:
            return self._real[1:]
        return None

    @staticmethod
    def _meanfield(v, eta, vx):
        """Mean-field ``(gamma, r)``: ``gamma = 1 / (1 / v + eta / v_x)`` and the mean is ``r o``, ``r = gamma eta
        / v_x``."""
        a = eta / vx
        var = v / torch.addcmul(torch.ones_like(v), v, a)
        return var, var * a

    def moments(self, eta):
        """Posterior mean ``E_q[s]`` and power ``E_q|s|^2`` ``(B, N, T, F)`` given ``eta (B, N, T, F)``."""
        if self.shared:
            real = self.real_ratio()
            if real is not None:
                r, o2 = real
                return self.mean1, torch.addcmul(self.var1, r * r, o2)
            return self.mean1, abs2(self.mean1) + self.var1
        mean = eta * self.mean1 + (1 - eta) * self.mean0
        power = eta * (abs2(self.mean1) + self.var1) + (1 - eta) * (abs2(self.mean0) + self.var0)
        return mean, power

    @torch.no_grad()
    def update(self, model, guide, mix, **kw):
        B, T, F = mix.shape
        N = model.num_sources
        eta = guide["w"].eta.permute(0, 3, 1, 2)  # (B, N, T, F)
        obs, vx = mix.unsqueeze(1), guide.residual_variance(model, mix).unsqueeze(1)
        gain = model.source_gain(eta)
        latents = guide["z"].latents
        prior_var = torch.empty(B, N, T, F, dtype=eta.dtype, device=mix.device) if len(model.groups) > 1 else None
        for (prior, idx), past in zip(model.groups, guide.group_powers(model)):
            z, statics = model.group_latents(latents, idx)
            if prior.autoregressive and self.mode == "sequential":
                g, e = gain[:, idx, :, 0], eta[:, idx]
                if self.family == "meanfield":  # E|s|^2 = var + (var a)^2 |o|^2 with a = eta / v_x, all real
                    a = (e / vx).movedim(2, 0).contiguous()
                    c = (a * a * abs2(obs).movedim(2, 0)).contiguous()

                    def feed(t, _, v_t):  # the posterior power of step t, fed back to the decoder
                        gv = g * v_t
                        var = gv / torch.addcmul(torch.ones_like(gv), gv, a[t])
                        return var * torch.addcmul(torch.ones_like(var), var, c[t])
                else:
                    def feed(t, _, v_t):
                        m1, v1, m0, v0 = self.conditionals(g * v_t, obs[:, :, t], vx[:, :, t])
                        return e[:, :, t] * (abs2(m1) + v1) + (1 - e[:, :, t]) * (abs2(m0) + v0)

                v = prior.decode_stepwise(z, feed, latents=statics)[1]
            else:
                v = model.decoder_variance(prior, z, past, statics)
            if prior_var is None:
                prior_var = v
            else:
                prior_var[:, idx] = v
        # the step-wise feed computed the same conditionals; recomputed here for all sources at once
        self.prior_var = prior_var
        if self.family == "meanfield":
            self.var1, r = self._meanfield(gain * prior_var, eta, vx)
            self.mean1 = self.mean0 = r * obs
            self.var0 = self.var1
            self._real = (self.mean1, r, guide.mix_power(mix).unsqueeze(1))
        else:
            self.mean1, self.var1, self.mean0, self.var0 = self.conditionals(gain * prior_var, obs, vx)

    def source_terms(self, model, eta=None, power=None):
        """``sum E_q[log p(s_n)] + H(q(s_n))`` per mixture and source ``(B, N)``, over the ``w = n`` component
        weighted by ``eta (B, N, T, F)`` and the other by ``1 - eta`` (mean field: the one component, whose
        ``E|s|^2`` may be given as ``power``)."""
        v = model.source_gain(self.prior_var) * self.prior_var

        def term(mean, var, power=None):  # log CN(E|s|^2; 0, v) + log(pi e var), elementwise
            return torch.log(var / v) - ((abs2(mean) + var) if power is None else power) / v + 1.0

        if self.shared:
            return term(self.mean1, self.var1, power).sum((-2, -1))
        return (eta * term(self.mean1, self.var1) + (1 - eta) * term(self.mean0, self.var0)).sum((-2, -1))

    def expected_terms(self, model):
        """``(s1, s0) (B, N, T, F)``: ``E[log p(s_n)] + H`` under the ``w = n`` component (``s1``) and the other
        one (``s0``), at the current parameters."""
        v = model.source_gain(self.prior_var) * self.prior_var
        s1 = complex_normal_log_prob(abs2(self.mean1) + self.var1, v) + complex_normal_entropy(self.var1)
        s0 = complex_normal_log_prob(abs2(self.mean0) + self.var0, v) + complex_normal_entropy(self.var0)
        return s1, s0

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
        qs = guide["s"]
        # (B, N, T, F) logits; -log(pi v_x) is the same for every source and cancels
        logits = -guide.residual_error(model, mix)
        if not qs.shared:
            s1, s0 = qs.expected_terms(model)
            logits = logits + (s1 - s0)
        if model.pi.dim():
            logits = logits + model.log_pi(mix).permute(0, 3, 1, 2)
        self.eta = torch.softmax(logits, 1).permute(0, 2, 3, 1)

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
        g = (guide.source_moments()[1] / qs.prior_var).mean((-2, -1))
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
    :param bool parallel_z: Jacobi E-Z (:class:`LatentBlock`), else a step-by-step draw every iteration.

    Quantities that several blocks read in one iteration (the posterior source moments, their per-prior
    slices, the residual variance and the expected residual error) are computed once and reused while the
    tensors they derive from are unchanged (the blocks assign new tensors, they never update in place). The
    E-Z encoder and a parallel E-S decoder thus read the very same power tensor, so the priors' input
    recurrence runs once per iteration (:meth:`pyro_dvae.priors.SRNN._h` memo).
    """

    def __init__(self, model, mode="sequential", family="meanfield", sample_z=True, parallel_z=True):
        super().__init__([LatentBlock(sample=sample_z, parallel=parallel_z), SourceBlock(mode, family),
                          AssignmentBlock()])
        self._model = [model]  # not a submodule: model parameters stay out of the guide
        self._memo = {}

    def _cached(self, name, keys, fn):
        """``fn()``, reused while every object of ``keys`` is the same (held here, so ids are not recycled)."""
        hit = self._memo.get(name)
        if hit is not None and len(hit[0]) == len(keys) and all(a is b for a, b in zip(hit[0], keys)):
            return hit[1]
        value = fn()
        self._memo[name] = (tuple(keys), value)
        return value

    def source_moments(self):
        """Posterior mean and power ``E_q[s]``, ``E_q|s|^2`` of every source, ``(B, N, T, F)``."""
        qs, eta = self["s"], self["w"].eta
        return self._cached("moments", (qs.mean1, qs.var1, qs.mean0, qs.var0, eta),
                            lambda: qs.moments(eta.permute(0, 3, 1, 2)))

    def group_powers(self, model):
        """The expected source powers (before the first E-S: the initial guess) as one ``(B, k, T, F)``
        tensor per group of sources sharing a prior (``model.groups``)."""
        qs = self["s"]
        if qs.mean1 is None:
            power, keys = qs.power_hint, (qs.power_hint,)
        else:
            power = self.source_moments()[1]
            keys = (power,)

        def split():
            if len(model.groups) == 1:
                return [power]
            return [power[:, idx[0]:idx[0] + 1] if len(idx) == 1 else power[:, idx] for _, idx in model.groups]

        return self._cached("group_powers", keys, split)

    def mix_power(self, mix):
        """``|o|^2 (B, T, F)``."""
        return self._cached("mix_power", (mix,), lambda: abs2(mix))

    def residual_variance(self, model, mix):
        """``v_x (B, T, F)`` of the model's likelihood for ``mix``."""
        return self._cached("vx", (mix, model.likelihood.scale), lambda: model.likelihood.variance(mix))

    def residual_error(self, model, mix):
        """``E_q(s | w = n)|o - s_n|^2 / v_x`` ``(B, N, T, F)``."""
        qs = self["s"]
        vx = self.residual_variance(model, mix)

        def error():
            real = qs.real_ratio()
            if real is None:
                return (abs2(mix.unsqueeze(1) - qs.mean1) + qs.var1) / vx.unsqueeze(1)
            r, o2 = real  # |o - r o|^2 = (1 - r)^2 |o|^2
            return torch.addcmul(qs.var1, (1 - r).square(), o2) / vx.unsqueeze(1)

        return self._cached("error", (mix, qs.mean1, qs.var1, vx), error)

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
        qs.mean1 = None
        qs.power_hint = power
        qz.encode(model, self.group_powers(model), sample=False, parallel=False)
        if masks is not None:
            qw.eta = masks.permute(0, 2, 3, 1).contiguous()
        elif init == "equal":
            qw.eta = torch.full((B, T, F, N), 1.0 / N, dtype=power.dtype, device=power.device)
        else:
            v = model.variance_fn(qz.latents)(power) + model.likelihood.variance(mix).unsqueeze(1)
            marginal = complex_normal_log_prob(mix.unsqueeze(1), v).permute(0, 2, 3, 1)
            qw.eta = responsibilities(marginal, model.log_pi(mix))
        qs.update(model, self, mix)
        return self

    def estimate(self, mix, output="wiener", moments=None):
        """Source STFT estimates ``(B, N, T, F)`` from the current posterior:

        - ``"mean"``: the posterior means ``E_q[s_n]`` (what the reference outputs; shrunk towards 0 in bins
          where the prior variance is far below the residual variance ``v_x``);
        - ``"mask"``: ``q(w = n) o``, the mixture split by the responsibilities;
        - ``"wiener"``: ``E_q|s_n|^2 / sum_k E_q|s_k|^2 o``, a Wiener post-filter with the posterior source
          powers (the estimates sum to the mixture).

        ``moments``: ``(mean, power, eta)`` to use instead of the current ones (e.g. averaged over iterations).
        """
        mean, power, eta = (self.source_moments() + (self["w"].eta,)) if moments is None else moments
        if output == "mean":
            return mean
        if output == "mask":
            return eta.permute(0, 3, 1, 2) * mix.unsqueeze(1)
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
        eta = qw.eta.permute(0, 3, 1, 2)  # (B, N, T, F)
        vx = self.residual_variance(model, mix)
        log_vx = self._cached("log_vx", (vx,), lambda: torch.log(math.pi * vx))
        lik = -(eta.sum(1) * log_vx).sum() - (eta * self.residual_error(model, mix)).sum()
        log_pi = model.log_pi(mix)
        log_pi = log_pi.permute(0, 3, 1, 2) if log_pi.dim() > 1 else log_pi.view(-1, 1, 1)
        power = self.source_moments()[1] if qs.shared else None
        elbo = lik + (eta * log_pi).sum() + entropy(qw.eta).sum() + qs.source_terms(model, eta, power).sum()
        return elbo - (qz.kl.sum() if qz.kl is not None else 0.0)
