# SPDX-License-Identifier: Apache-2.0
"""The MixDVAE tracking model: DVAE source trajectories, the assignment of detections, the box likelihood,
and the M-steps of its parameters."""

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from pyro.ops.indexing import Vindex

from pyro_dvae.assignment import assignment_probs
from pyro_dvae.inference import ClosedFormBlock, GradientBlock
from pyro_dvae.likelihoods import BroadClutter, GaussianBoxes
from pyro_dvae.smoothing import VAR_SCALE_RANGE, calibrate_var_scale

BOX = 4


#: the acceleration noise of the VKF baseline and the start of the ``"velocity"`` E-S step's EM estimate, per
#: coordinate, normalised image units per frame squared
ACCEL_VAR = 2e-6
DYNAMICS_SCALE_RANGE = VAR_SCALE_RANGE  # bounds of the EM estimate of the dynamics-variance factor


_checked = [None]  # the last validated (obs, obs_mask) pair: VEM re-checks the same tensors every iteration


def check_observations(obs, obs_mask):
    """Validate ``obs (B, T, K, 4)`` and ``obs_mask (B, T, K)``; returns them with padding zero-filled.

    The result for the last pair of tensors is reused while neither was modified in place (same objects,
    same versions)."""
    last = _checked[0]
    if (last is not None and last[0] is obs and last[1] is obs_mask and last[2] == obs._version
            and last[3] == obs_mask._version):
        return last[4]
    checked = _check_observations(obs, obs_mask)
    if torch.is_tensor(obs) and torch.is_tensor(obs_mask):
        _checked[0] = (obs, obs_mask, obs._version, obs_mask._version, checked)
    return checked


def _check_observations(obs, obs_mask):
    if not torch.is_tensor(obs) or obs.dim() != 4 or obs.shape[-1] != BOX:
        raise ValueError(f"obs must be shaped (B, T, K, 4), got {tuple(getattr(obs, 'shape', ()))}")
    obs_mask = torch.as_tensor(obs_mask, device=obs.device).bool()
    if obs_mask.shape != obs.shape[:-1]:
        raise ValueError(f"obs_mask must be shaped {tuple(obs.shape[:-1])}, got {tuple(obs_mask.shape)}")
    obs = obs.masked_fill(~obs_mask.unsqueeze(-1), 0.0)
    if not torch.isfinite(obs).all():
        raise ValueError("obs has NaN/inf at unmasked detections")
    w, h = obs[..., 2] - obs[..., 0], obs[..., 3] - obs[..., 1]
    if ((w <= 0) | (h <= 0))[obs_mask].any():
        raise ValueError("obs has boxes with non-positive width or height (expected x1 < x2, y1 < y2)")
    return obs, obs_mask


class TrackingModel(PyroModule):
    """The MixDVAE tracking model.

    :param DVAE prior: a Gaussian-emission prior with ``x_dim=4`` (boxes ``x1, y1, x2, y2``).
    :param int num_sources: N.
    :param likelihood: a :class:`~pyro_dvae.likelihoods.BoxLikelihood` (default Gaussian, ratio 0.04).
    :param float clutter_prob: prior probability of the clutter class (0: no clutter class).
    :param clutter: the clutter density (default :class:`~pyro_dvae.likelihoods.BroadClutter`).
    :param bool dynamics_noise_m_step: estimate a per-coordinate factor ``alpha_d`` on the prior's
        dynamics variance, ``p(s_t | ...) = N(mu_t, alpha * v_t)``, by EM (:class:`DynamicsNoiseMStep`).
        A prior pre-trained on synthetic motion is over-confident on real motion; with the observation
        noise M-step alone, EM then explains the prior's errors as observation noise, the noise estimate
        grows, the detections lose weight and the tracks drift away. Calibrating both variances by EM removes
        that loop. ``svi`` / ``enum-svi`` (:func:`~pyro_dvae.models.tracking.run.run_tracking`) fit ``alpha``
        once, by :meth:`calibrate_dynamics` on the initial tracks: a prior trained on slower motion is otherwise
        over-confident on a fast scene, and a heavy-tailed likelihood lets it pull the sources off their
        detections.

    **Learnable likelihoods.** The trainable parameters of ``likelihood`` and ``clutter`` (``nn.Parameter`` s,
    ``PyroParam`` s of a ``PyroModule``: :meth:`learnable_parameters`) are model parameters: :meth:`model`
    registers each module with ``pyro.module("likelihood", ...)`` / ``pyro.module("clutter", ...)``, so ``svi`` and
    ``enum-svi`` optimise them with the guide, and ``vem`` runs a gradient M-step over them
    (:class:`LikelihoodMStep`). The :class:`~pyro_dvae.likelihoods.GaussianBoxes` ratio is a buffer with its own
    closed-form M-step (:class:`ObservationNoiseMStep`). The prior's weights are never registered here.
    """

    def __init__(self, prior, num_sources, likelihood=None, clutter_prob=0.0, clutter=None,
                 dynamics_noise_m_step=True):
        super().__init__()
        if prior is not None:
            if prior.x_dim != BOX or prior.emission != "gaussian":
                raise ValueError(f"a tracking prior must be gaussian with x_dim=4; got x_dim={prior.x_dim}, "
                                 f"emission={prior.emission!r}")
        self.prior = prior
        self.num_sources = int(num_sources)
        assignment_probs(self.num_sources, clutter_prob)  # validates
        self.clutter_prob = float(clutter_prob)
        self.likelihood = likelihood if likelihood is not None else GaussianBoxes()
        self.clutter = (clutter if clutter is not None else BroadClutter()) if clutter_prob > 0 else None
        closed = isinstance(self.likelihood, GaussianBoxes) and "ratio" in dict(self.likelihood.named_buffers())
        self.m_steps = [ObservationNoiseMStep()] if closed else []
        if self.learnable_parameters():
            self.m_steps.append(LikelihoodMStep(self.learnable_parameters))
        # per-coordinate factor on the prior's dynamics variance, estimated by DynamicsNoiseMStep
        self.register_buffer("dynamics_scale", torch.ones(BOX))
        # acceleration noise of the E-S step's constant-velocity chain in "velocity" mode (AccelerationNoiseMStep)
        self.register_buffer("accel_var", torch.full((BOX,), ACCEL_VAR))
        if prior is not None and dynamics_noise_m_step:
            self.m_steps += [DynamicsNoiseMStep(), AccelerationNoiseMStep()]

    @property
    def num_classes(self):
        return self.num_sources + (1 if self.clutter is not None else 0)

    def log_pi(self, like):
        return assignment_probs(self.num_sources, self.clutter_prob, like).log()

    def learnable_parameters(self):
        """The trainable parameters (``requires_grad``) of the likelihood and the clutter density: what
        ``svi`` / ``enum-svi`` and the ``vem`` M-step (:class:`LikelihoodMStep`) fit."""
        return [p for m in (self.likelihood, self.clutter) if m is not None for p in m.parameters() if p.requires_grad]

    def sources(self, like):
        """Sample the source sequences ``s (B, N, T, 4)`` under the prior, its dynamics variance scaled by
        :attr:`dynamics_scale`."""
        B, N, T = like.shape[0], self.num_sources, like.shape[1]
        with pyro.plate("batch", B, dim=-2), pyro.plate("sources", N, dim=-1):
            s_like = like.new_zeros(B, N, T, BOX)
            return self.prior.latent_sequence("s", s_like, var_scale=self.dynamics_scale)["s"]

    @torch.no_grad()
    def calibrate_dynamics(self, s, z):
        """Set :attr:`dynamics_scale` to the maximiser of ``log p(s | z)`` over ``alpha``: ``alpha_d`` is
        the mean of ``(s - mu)^2 / v`` (autoregressive priors: over ``t >= 1``), with ``mu, v`` the prior's
        decoder teacher-forced on the sources ``s (B, N, T, 4)``. The closed-form M-step of
        :class:`DynamicsNoiseMStep` for point estimates, used to start ``svi`` / ``enum-svi``
        (:func:`pyro_dvae.smoothing.calibrate_var_scale`, the same estimate for a model of your own)."""
        self.dynamics_scale = calibrate_var_scale(self.prior, s, z)
        return self.dynamics_scale

    def model(self, obs, obs_mask, enumerate_w=True):
        """:param obs: ``(B, T, K, 4)`` normalised detections; :param obs_mask: ``(B, T, K)``."""
        obs, obs_mask = check_observations(obs, obs_mask)
        B, T, K, _ = obs.shape
        for name, module in (("likelihood", self.likelihood), ("clutter", self.clutter)):
            if module is not None and any(p.requires_grad for p in module.parameters()):
                pyro.module(name, module)  # its parameters are model parameters: svi fits them
        s = self.sources(obs)
        probs = self.log_pi(obs).exp()
        b = torch.arange(B, device=obs.device).view(B, 1, 1)
        t = torch.arange(T, device=obs.device).view(1, T, 1)
        infer = {"enumerate": "parallel"} if enumerate_w else {}
        with pyro.plate("batch_det", B, dim=-3), pyro.plate("time", T, dim=-2), pyro.plate("detections", K, dim=-1):
            w = pyro.sample("w", dist.Categorical(probs), infer=infer)
            loc = Vindex(s)[b, w.clamp(max=self.num_sources - 1), t, :]
            d = self.likelihood.dist(loc, obs)
            if self.clutter is not None:
                d = dist.MaskedMixture(w == self.num_sources, d, self.clutter.dist(loc, obs))
            with poutine.mask(mask=obs_mask):
                pyro.sample("o", d, obs=obs)


class ObservationNoiseMStep(ClosedFormBlock):
    """M-step for the Gaussian box noise ratio: ``ratio_d^2 = sum eta ((o - m)^2 + var) / size^2 / sum eta``."""

    def __init__(self, min_ratio=1e-3):
        super().__init__("phi", kind="m")
        self.min_ratio = min_ratio

    @torch.no_grad()
    def update(self, model, guide, obs, obs_mask, **kw):
        obs, obs_mask = check_observations(obs, obs_mask)
        qs = guide["s"]
        eta = guide["w"].eta[..., : model.num_sources] * obs_mask.unsqueeze(-1)  # (B, T, K, N)
        m = qs.mean.permute(0, 2, 1, 3).unsqueeze(2)  # (B, T, 1, N, 4)
        v = qs.var.permute(0, 2, 1, 3).unsqueeze(2)
        model.likelihood.m_step(obs.unsqueeze(3).expand(*eta.shape, BOX), eta, m, v)
        model.likelihood.ratio.clamp_(min=self.min_ratio)


def _neg_expected_log_lik(model, guide, obs, obs_mask, **kw):
    """``-sum_{t,k} sum_n eta_tkn E_q(s)[log p(o_tk | w_tk = n, s)]`` per detection, differentiable in the
    likelihood's (and clutter's) parameters: the loss of :class:`LikelihoodMStep`."""
    obs, obs_mask = check_observations(obs, obs_mask)
    qw, qs = guide["w"], guide["s"]
    with torch.enable_grad():
        ell = qw.expected_log_lik(model, obs, qs.mean, qs.var)
        per_det = (qw.eta * ell).sum(-1).masked_fill(~obs_mask, 0.0)
        return -per_det.sum() / obs_mask.sum().clamp_min(1)


class LikelihoodMStep(GradientBlock):
    """``vem`` M-step of the trainable parameters of the box likelihood and the clutter density
    (:meth:`TrackingModel.learnable_parameters`): ``num_steps`` Adam steps per iteration on the part of the ELBO
    they enter, ``-sum eta E_q(s)[log p(o | w, s)]`` (per detection), the other blocks held fixed. The likelihood
    needs the closed-form pieces of the E-steps (``variance``, ``expected_log_lik``: ``closed_form = True``), as
    ``vem`` itself does; parametrise positive quantities on the log scale (or as a ``PyroParam`` with a positive
    constraint), for which ``lr`` is a step in nepers.

    A parameter that the closed-form pieces do not read (one that only ``dist()`` uses) would be ignored: the
    first update raises a one-line :class:`ValueError` naming it.

    :param params: a callable returning the tensors to fit.
    :param int num_steps: Adam steps per VEM iteration.
    :param float lr: Adam's step size.
    """

    def __init__(self, params, num_steps=5, lr=0.02):
        super().__init__("likelihood", params, num_steps=num_steps, lr=lr, loss=_neg_expected_log_lik, kind="m")
        self.checked = False

    def update(self, model, guide, *args, **kwargs):
        if not self.checked:
            modules = (("likelihood", model.likelihood), ("clutter", model.clutter))
            named = [(f"{owner}.{name}", p) for owner, m in modules if m is not None
                     for name, p in m.named_parameters() if p.requires_grad]
            loss = self.loss(model, guide, *args, **kwargs)
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            unused = [name for (name, _), g in zip(named, grads) if g is None]
            if unused:
                raise ValueError(f"vem would not fit {', '.join(unused)}: its M-step reads the likelihood through "
                                 "variance() / expected_log_lik(), which do not use it; use algo='svi' or 'enum-svi'")
            self.checked = True
        super().update(model, guide, *args, **kwargs)


class DynamicsNoiseMStep(ClosedFormBlock):
    """M-step for the dynamics-variance factor ``alpha_d`` of the DVAE prior (see :class:`TrackingModel`).

    With ``alpha v_t`` the prior variances of the last E-S step and ``e_t`` its expected squared
    innovations (:meth:`SourceBlock.expected_sq_err`), the ELBO term
    ``-1/2 sum [log(2 pi alpha v) + e / (alpha v)]`` is maximised by ``alpha_d = mean_{b,n,t} e / v``
    per coordinate (autoregressive priors: over
    ``t >= 1``, the steps that carry dynamics). The stored prior variances are rescaled, so
    :meth:`TrackingGuide.exact_elbo` sees the new value. Sequential-mode E-S steps mix ``alpha v_t``
    with the filtered variance; there the update is skipped.
    """

    def __init__(self, min_scale=DYNAMICS_SCALE_RANGE[0], max_scale=DYNAMICS_SCALE_RANGE[1]):
        super().__init__("alpha", kind="m")
        self.min_scale, self.max_scale = min_scale, max_scale

    @torch.no_grad()
    def update(self, model, guide, obs, obs_mask, **kw):
        qs = guide["s"]
        if qs.prior_var is None or qs.dynamics != "dvae" or qs.mode not in ("parallel", "velocity"):
            return
        start = 1 if model.prior.autoregressive else 0
        sl = (..., slice(start, None), slice(None))
        old = model.dynamics_scale
        ratio = qs.expected_sq_err()[sl] / qs.prior_var[sl]  # E[innovation^2] / (alpha v)
        new = (old * ratio.reshape(-1, BOX).mean(0)).clamp(self.min_scale, self.max_scale)
        qs.prior_var = torch.cat([qs.prior_var[..., :start, :], qs.prior_var[sl] * (new / old)], -2)
        model.dynamics_scale = new


class AccelerationNoiseMStep(ClosedFormBlock):
    """M-step for the acceleration noise ``q_d`` of the constant-velocity chain of the ``"velocity"`` E-S step
    (:class:`~pyro_dvae.models.tracking.guide.SourceBlock`): with process noise ``q Q0`` per step, the expected
    log-density ``-1/2 sum_t [2 log q + tr((q Q0)^{-1} E_t)]`` (``E_t`` the posterior second moment of the step's
    noise) is maximised by ``q_d = mean_t tr(Q0^{-1} E_t) / 2`` (:attr:`pyro_dvae.smoothing.CVSmoothed.accel`),
    over the batch, the sources and the steps ``t >= 1``; clamped to ``[min_var, max_var]``. Other modes: no-op."""

    def __init__(self, min_var=1e-8, max_var=1e-2):
        super().__init__("accel_var", kind="m")
        self.min_var, self.max_var = min_var, max_var

    @torch.no_grad()
    def update(self, model, guide, obs, obs_mask, **kw):
        qs = guide["s"]
        if qs.mode != "velocity" or qs.accel is None or qs.accel.shape[-2] < 2:
            return
        stat = qs.accel[..., 1:, :].reshape(-1, BOX).mean(0)
        model.accel_var = stat.clamp(self.min_var, self.max_var).to(model.accel_var)
