# SPDX-License-Identifier: Apache-2.0
"""MixDVAE for multi-object tracking.

Model, for ``B`` sequences of ``T`` frames with ``N`` sources and up to ``K`` detections per frame:

- each source ``n``: a DVAE prior over its box sequence, ``p(z_n) p(s_{1:T,n} | z_n)`` (any prior of the
  zoo, see :meth:`~pyro_dvae.priors.base.DVAE.latent_sequence`), its dynamics variance scaled by a
  per-coordinate factor ``alpha`` fitted to the data (:class:`TrackingModel`);
- each detection: ``w_tk ~ Categorical(pi)`` over the ``N`` sources plus, optionally, a clutter class
  for detections no source produced;
- ``o_tk | w_tk = n, s ~ likelihood(s_tn)`` (default :class:`~pyro_dvae.likelihoods.GaussianBoxes`),
  ``o_tk | w_tk = clutter ~`` a broad density; missing detections are masked.

Plates: ``batch`` x ``sources`` for the sequences, ``batch_det`` x ``time`` x ``detections`` for the
assignments (``w`` is marked for parallel enumeration, so ``svi`` picks ``TraceEnum_ELBO``).

The structured guide :class:`TrackingGuide` has the MixDVAE blocks, iterated by the registry's ``vem``:
E-W (closed-form responsibilities), E-Z (the DVAE encoder on the current source means), E-S (closed-form
Gaussian: forward pass + backward smoothing, :mod:`pyro_dvae.smoothing`), and the model's M-step for the
observation noise. Replacing the dynamics by a constant-velocity Kalman smoother gives the VKF baseline.

**References:**

[1] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for
    Multi-Source Trajectory Modeling and Separation", TMLR.
[2] Y. Ban, X. Alameda-Pineda, L. Girin, R. Horaud (2021), "Variational Bayesian Inference for
    Audio-Visual Tracking of Multiple Speakers", IEEE TPAMI (VKF).
"""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from pyro.ops.indexing import Vindex
from scipy.optimize import linear_sum_assignment

from pyro_dvae.assignment import assignment_probs, entropy, responsibilities
from pyro_dvae.data.mot import iou_xyxy
from pyro_dvae.inference import ClosedFormBlock, StructuredGuide
from pyro_dvae.likelihoods import BroadClutter, GaussianBoxes
from pyro_dvae.priors.distributions import SequentialNormal
from pyro_dvae.smoothing import cv_kalman_smoother, dvae_parallel_smoother, dvae_smoother

BOX = 4
DYNAMICS_SCALE_RANGE = (1e-2, 1e4)  # bounds of the EM estimate of the dynamics-variance factor


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
        grows, the detections lose weight and the tracks drift away (measured on MOT15: the x noise ratio
        rose from 0.04 to 1.0 in 20 iterations). Calibrating both variances by EM removes that loop.
        ``svi`` / ``enum-svi`` (:func:`run_tracking`) fit ``alpha`` once, by
        :meth:`calibrate_dynamics` on the initial tracks. Without it the shipped prior, trained on slower
        motion, is 20-70x over-confident on a fast scene and a heavy-tailed likelihood lets it pull the
        sources off their detections (``crossing_scene(T=30)``, Student-t: MOTA 0.56 after 30 steps,
        -0.51 after 300).
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
        self.m_steps = [ObservationNoiseMStep()] if isinstance(self.likelihood, GaussianBoxes) else []
        # per-coordinate factor on the prior's dynamics variance, estimated by DynamicsNoiseMStep
        self.register_buffer("dynamics_scale", torch.ones(BOX))
        if prior is not None and dynamics_noise_m_step:
            self.m_steps.append(DynamicsNoiseMStep())

    @property
    def num_classes(self):
        return self.num_sources + (1 if self.clutter is not None else 0)

    def log_pi(self, like):
        return assignment_probs(self.num_sources, self.clutter_prob, like).log()

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
        :class:`DynamicsNoiseMStep` for point estimates, used to start ``svi`` / ``enum-svi``."""
        mean, var = self.prior.decode(z, s)
        start = 1 if self.prior.autoregressive else 0
        ratio = ((s - mean) ** 2 / var)[..., start:, :].reshape(-1, BOX).mean(0)
        self.dynamics_scale = ratio.clamp(*DYNAMICS_SCALE_RANGE)
        return self.dynamics_scale

    def model(self, obs, obs_mask, enumerate_w=True):
        """:param obs: ``(B, T, K, 4)`` normalised detections; :param obs_mask: ``(B, T, K)``."""
        obs, obs_mask = check_observations(obs, obs_mask)
        B, T, K, _ = obs.shape
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


# --------------------------------------------------------------------------------------------- guide blocks
class AssignmentBlock(ClosedFormBlock):
    """E-W: ``q(w_tk = n) ∝ pi_n exp(E_q(s)[log p(o_tk | s_tn)])``, clutter included."""

    def __init__(self):
        super().__init__("w")
        self.eta = None
        self._ell = None  # (key, value) of the last expected_log_lik without autograd

    def expected_log_lik(self, model, obs, mean, var):
        """``E_q(s)[log p(o_tk | w_tk = n, s)]``, ``(B, T, K, N [+ 1 clutter])``. Without autograd the last
        value is reused while its inputs are the same unmodified tensors and the likelihoods' parameters,
        buffers and number / string attributes are unchanged: the ELBO at the end of a VEM iteration and the
        next E-W step need the same values."""
        modules = [m for m in (model.likelihood, model.clutter) if m is not None]
        key = None
        if not torch.is_grad_enabled():
            key = tuple((id(t), t._version) for t in (obs, mean, var))
            key += tuple((id(t), t._version) for m in modules for t in (*m.parameters(), *m.buffers()))
            key += tuple((k, v) for m in modules for k, v in vars(m).items() if isinstance(v, (int, float, str)))
            if self._ell is not None and self._ell[0] == key:
                return self._ell[1]
        # mean, var: (B, N, T, 4) -> (B, T, 1, N, 4) against obs (B, T, K, 1, 4)
        m, v = mean.permute(0, 2, 1, 3).unsqueeze(2), var.permute(0, 2, 1, 3).unsqueeze(2)
        ell = model.likelihood.expected_log_lik(obs.unsqueeze(3), m, v)
        if model.clutter is not None:
            ell = torch.cat([ell, model.clutter.log_density(obs).unsqueeze(-1)], -1)
        # the key holds the tensors' ids; keeping the tensors alive keeps those ids unique
        self._ell = None if key is None else (key, ell, (obs, mean, var))
        return ell

    @torch.no_grad()
    def update(self, model, guide, obs, obs_mask, **kw):
        obs, obs_mask = check_observations(obs, obs_mask)
        qs = guide["s"]
        ell = self.expected_log_lik(model, obs, qs.mean, qs.var)
        log_pi = model.log_pi(obs)
        eta = responsibilities(ell, log_pi)
        self.eta = torch.where(obs_mask.unsqueeze(-1), eta, log_pi.exp())  # padded slots keep the prior

    def guide(self, obs, obs_mask, values, **kw):
        B, T, K, _ = obs.shape
        with pyro.plate("batch_det", B, dim=-3), pyro.plate("time", T, dim=-2), pyro.plate("detections", K, dim=-1):
            return {"w": pyro.sample("w", dist.Categorical(self.eta))}


class LatentBlock(ClosedFormBlock):
    """E-Z: ``q(z | s)`` is the prior's encoder run on the current source means; its draw (or its
    noiseless path, ``sample=False``) is what the decoder of the next E-S step reads.

    ``parallel=True``: for encoders with a recurrence on ``z`` (``q(z_t | z_{<t}, s)``), the step
    conditionals are evaluated in one teacher-forced pass on the previous iteration's path (a Jacobi
    sweep per VEM iteration, converging to the sequential draw as the iterations proceed) instead of a
    loop over time. The first update always draws sequentially.
    """

    def __init__(self, sample=True, parallel=True):
        super().__init__("z")
        self.sample, self.parallel, self.z, self.latents = sample, parallel, None, {}
        self._prior = None  # set by TrackingGuide (kept out of the module tree)

    @property
    def prior(self):
        return self._prior[0]

    @torch.no_grad()
    def update(self, model, guide, obs, obs_mask, **kw):
        prior, mean = model.prior, guide["s"].mean
        q, self.latents = prior.encode(mean, with_statics=True)
        if self.parallel and isinstance(q, SequentialNormal) and self.z is not None and self.z.shape == q._like.shape:
            loc, scale = q.params_fn(self.z)
            self.z = loc + scale * torch.randn_like(loc) if self.sample else loc
        elif self.sample:
            self.z = q.rsample()
        else:
            self.z = q.noiseless() if isinstance(q, SequentialNormal) else q.mean

    def guide(self, obs, obs_mask, values, **kw):
        prior, s = self.prior, values["s"]
        B, N = s.shape[:2]
        with pyro.plate("batch", B, dim=-2), pyro.plate("sources", N, dim=-1):
            prior._run_sites(prior._guide_sites(s, None), None, s.shape[:-1])
        return {}


class SourceBlock(ClosedFormBlock):
    """E-S: closed-form Gaussian ``q(s_n) = prod_t N(mean_tn, diag(var_tn))`` from the responsibility-
    weighted detections and the dynamics (``"dvae"``: the prior's decoder fed step by step, then a
    backward smoothing pass; ``"cv"``: a constant-velocity Kalman smoother, the VKF baseline).

    ``init_var`` (parallel DVAE mode): variance of the first position, in normalised image units. The
    pre-trained prior's own first step is whatever it learnt about *synthetic* start positions; the
    default 1.0 is flat over the image whatever that was (``None`` keeps the prior's).
    """

    def __init__(self, dynamics="dvae", mode="parallel", accel_var=2e-6, vel_var=1e-4, smooth=True, init_var=1.0):
        super().__init__("s")
        if dynamics not in ("dvae", "cv"):
            raise ValueError(f"dynamics must be 'dvae' or 'cv', got {dynamics!r}")
        if mode not in ("parallel", "sequential"):
            raise ValueError(f"mode must be 'parallel' or 'sequential', got {mode!r}")
        self.dynamics, self.mode, self.accel_var, self.vel_var, self.smooth = dynamics, mode, accel_var, vel_var, smooth
        self.init_var = init_var
        self.mean = self.var = self.prior_mean = self.prior_var = self.sq_err = None

    def information(self, model, guide, obs, obs_mask):
        eta = guide["w"].eta[..., : model.num_sources] * obs_mask.unsqueeze(-1)  # (B, T, K, N)
        prec = 1.0 / model.likelihood.variance(obs)  # (B, T, K, 4)
        J = torch.einsum("btkn,btkd->bntd", eta, prec)
        h = torch.einsum("btkn,btkd->bntd", eta, prec * obs)
        return J, h

    @torch.no_grad()
    def update(self, model, guide, obs, obs_mask, **kw):
        obs, obs_mask = check_observations(obs, obs_mask)
        J, h = self.information(model, guide, obs, obs_mask)
        if self.dynamics == "dvae" and self.mode == "parallel":
            zb = guide["z"]
            self.mean, self.var, self.prior_mean, self.prior_var, self.sq_err = dvae_parallel_smoother(
                model.prior, zb.z, J, h, self.mean, zb.latents, var_scale=model.dynamics_scale,
                init_var=self.init_var)
        elif self.dynamics == "dvae":
            zb = guide["z"]
            self.mean, self.var, self.prior_mean, self.prior_var = dvae_smoother(
                model.prior, zb.z, J, h, zb.latents, x_hint=self.mean, smooth=self.smooth,
                var_scale=model.dynamics_scale)
        else:
            init_var = (self.var[..., 0, :] * 4).clamp_min(1e-6)
            self.mean, self.var = cv_kalman_smoother(J, h, self.accel_var, self.mean[..., 0, :], init_var,
                                                     self.vel_var)

    def expected_sq_err(self):
        """``E_q[(s_t - E_p[s_t | s_{t-1}])^2]`` of the last E-S step (parallel mode: the linearised chain's
        innovation; sequential mode: ``(m - mu)^2 + var`` around the forward pass's predictions)."""
        if self.sq_err is not None and self.mode == "parallel":
            return self.sq_err
        return (self.mean - self.prior_mean) ** 2 + self.var

    def guide(self, obs, obs_mask, values, **kw):
        B, N = self.mean.shape[:2]
        with pyro.plate("batch", B, dim=-2), pyro.plate("sources", N, dim=-1):
            s = pyro.sample("s", dist.Normal(self.mean, self.var.sqrt()).to_event(2))
        return {"s": s}


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
        if qs.prior_var is None or qs.dynamics != "dvae" or qs.mode != "parallel":
            return
        start = 1 if model.prior.autoregressive else 0
        sl = (..., slice(start, None), slice(None))
        old = model.dynamics_scale
        ratio = qs.expected_sq_err()[sl] / qs.prior_var[sl]  # E[innovation^2] / (alpha v)
        new = (old * ratio.reshape(-1, BOX).mean(0)).clamp(self.min_scale, self.max_scale)
        qs.prior_var = torch.cat([qs.prior_var[..., :start, :], qs.prior_var[sl] * (new / old)], -2)
        model.dynamics_scale = new


class TrackingGuide(StructuredGuide):
    """Structured guide for :class:`TrackingModel`: blocks ``w`` (E-W), ``z`` (E-Z, DVAE only), ``s`` (E-S).

    The update order is E-W, E-Z, E-S (then the model's M-step), as in MixDVAE. The guide samples
    ``s``, then ``z | s`` with the prior's encoder, then ``w``. :meth:`exact_elbo` is the ELBO
    conditional on the current ``z`` (exact for non-autoregressive priors; it omits the ``z`` terms,
    which these closed-form steps do not change).
    """

    def __init__(self, model, dynamics="dvae", mode="parallel", sample_z=True, **dynamics_options):
        self.dynamics = dynamics
        blocks = [AssignmentBlock()]
        if dynamics == "dvae":
            if model.prior is None:
                raise ValueError("dynamics='dvae' needs a model with a prior")
            blocks.append(LatentBlock(sample=sample_z, parallel=mode == "parallel"))
            blocks[-1]._prior = [model.prior]
        blocks.append(SourceBlock(dynamics, mode=mode, **dynamics_options))
        super().__init__(blocks)
        self._model = [model]  # not a submodule: model parameters stay out of the guide

    def initialise(self, obs, obs_mask, init_var=1e-4, seeds=None):
        """Start from a greedy IoU tracker (:func:`greedy_tracks`, optionally seeded with the first-frame
        boxes ``seeds (B, N, 4)``) and the matching responsibilities."""
        obs, obs_mask = check_observations(obs, obs_mask)
        model = self._model[0]
        mean = greedy_tracks(obs, obs_mask, model.num_sources, seeds=seeds)
        qs = self["s"]
        qs.mean, qs.var = mean, torch.full_like(mean, init_var)
        self["w"].update(model, self, obs, obs_mask)
        return self

    def forward(self, obs, obs_mask, **kw):
        obs, obs_mask = check_observations(obs, obs_mask)
        values = {}
        values.update(self["s"].guide(obs, obs_mask, values))
        if self.dynamics == "dvae":
            self["z"].guide(obs, obs_mask, values)
        values.update(self["w"].guide(obs, obs_mask, values))
        return values

    def exact_elbo(self, model, obs, obs_mask, **kw):
        obs, obs_mask = check_observations(obs, obs_mask)
        qw, qs = self["w"], self["s"]
        if qs.prior_mean is None and self.dynamics == "dvae":
            return None
        eta = qw.eta
        ell = qw.expected_log_lik(model, obs, qs.mean, qs.var)
        per_det = (eta * (ell + model.log_pi(obs))).sum(-1) + entropy(eta)
        elbo = (per_det * obs_mask).sum()
        h_s = 0.5 * torch.log(2 * math.pi * math.e * qs.var).sum()
        if self.dynamics == "dvae":
            P = qs.prior_var
            e_log_p = -0.5 * (torch.log(2 * math.pi * P) + qs.expected_sq_err() / P).sum()
            elbo = elbo + e_log_p + h_s
        return elbo


def greedy_tracks(obs, obs_mask, num_sources, min_iou=0.1, gate=0.05, velocity_decay=0.5, seeds=None):
    """A deterministic tracking-by-detection initialisation, ``(B, N, T, 4)``.

    Sources are seeded by the detections of the first frame (a source with no detection there takes
    the first unclaimed detection of a later frame). Each source keeps a velocity (exponentially
    smoothed displacement per frame); every later frame matches detections to the sources' *predicted*
    boxes (last matched box + velocity x frames since) by the Hungarian algorithm on
    ``-IoU + 0.1 * centre distance``, accepting a pair when the IoU reaches ``min_iou`` or the centres
    are closer than ``gate``. Unmatched sources keep their last matched box; the frames before a late
    seed take the seed box. No identity information is used, unless ``seeds`` ``(B, N, 4)`` gives the
    sources' boxes in the first frame (a single-target-tracking style start, which makes windows with
    clutter well posed: there, other pedestrians' detections are indistinguishable from the sources').
    """
    o = obs.detach().cpu().numpy().astype(np.float64)
    m = obs_mask.detach().cpu().numpy()
    B, T, K, _ = o.shape
    N = num_sources
    out = np.zeros((B, N, T, BOX))
    centre = lambda x: (x[..., :2] + x[..., 2:]) / 2  # noqa: E731
    seeds = None if seeds is None else torch.as_tensor(seeds).detach().cpu().numpy().astype(np.float64)
    if seeds is not None and seeds.shape != (B, N, BOX):
        raise ValueError(f"seeds must be shaped {(B, N, BOX)}, got {seeds.shape}")
    for b in range(B):
        pos = np.full((N, BOX), np.nan) if seeds is None else seeds[b].copy()
        vel = np.zeros((N, BOX))
        last = np.zeros(N)
        seeded_at = np.full(N, -1) if seeds is None else np.zeros(N, int)
        for t in range(T):
            dets = o[b, t][m[b, t]]
            free = np.ones(len(dets), bool)
            known = np.where(~np.isnan(pos[:, 0]))[0]
            pred = pos + vel * (t - last)[:, None]
            if len(known) and len(dets):
                iou = iou_xyxy(pred[known], dets)
                dist_ = np.linalg.norm(centre(pred[known])[:, None] - centre(dets)[None], axis=-1)
                r, c = linear_sum_assignment(-iou + 0.1 * dist_)
                for i, j in zip(r, c):
                    if iou[i, j] >= min_iou or dist_[i, j] < gate:
                        n = known[i]
                        step = (dets[j] - pos[n]) / max(t - last[n], 1)
                        vel[n] = velocity_decay * vel[n] + (1 - velocity_decay) * step
                        pos[n], last[n], free[j] = dets[j], t, False
            for n in np.where(np.isnan(pos[:, 0]))[0]:
                idx = np.where(free)[0]
                if len(idx):
                    pos[n], free[idx[0]], seeded_at[n], last[n] = dets[idx[0]], False, t, t
            out[b, :, t] = np.nan_to_num(pos, nan=0.5)
        for n in range(N):
            if seeded_at[n] > 0:
                out[b, n, : seeded_at[n]] = out[b, n, seeded_at[n]]
            elif seeded_at[n] < 0:  # never seen: a default box in the image centre
                out[b, n] = np.array([0.45, 0.35, 0.5, 0.6])
    return torch.as_tensor(out, dtype=obs.dtype, device=obs.device)


# --------------------------------------------------------------------------------------------- running
METHODS = ("mixdvae", "vkf", "deepar")


def windows_to_tensors(windows, dtype=torch.float32, device=None):
    """Stack :class:`~pyro_dvae.data.mot.MOTWindow` s into ``obs (B, T, K, 4)``, ``obs_mask (B, T, K)``
    and ``gt (B, T, N, 4)`` (K padded to the largest window)."""
    if not windows:
        raise ValueError("no windows to track")
    T = {w.gt.shape[0] for w in windows}
    N = {w.gt.shape[1] for w in windows}
    if len(T) != 1 or len(N) != 1:
        raise ValueError(f"windows differ in length or sources: T={sorted(T)}, N={sorted(N)}")
    K = max(w.obs.shape[1] for w in windows)
    B, (T,), (N,) = len(windows), T, N
    obs = np.zeros((B, T, K, BOX))
    mask = np.zeros((B, T, K), bool)
    for i, w in enumerate(windows):
        obs[i, :, : w.obs.shape[1]] = w.obs
        mask[i, :, : w.obs.shape[1]] = w.obs_mask
    gt = np.stack([w.gt for w in windows])
    as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    return as_t(obs), torch.as_tensor(mask, device=device), as_t(gt)


def run_tracking(obs, obs_mask, num_sources, method="mixdvae", prior=None, algo="vem", num_iters=20, lr=0.01,
                 clutter_prob=0.0, ratio=0.04, seed=0, sample_z=True, likelihood=None, mode="parallel",
                 seeds=None):
    """Track the sources of a batch of windows.

    :param obs: ``(B, T, K, 4)`` normalised detections; :param obs_mask: ``(B, T, K)``.
    :param str method: ``"mixdvae"`` (DVAE dynamics), ``"vkf"`` (constant-velocity Kalman dynamics, the
        same assignment model) or ``"deepar"`` (a deterministic LSTM autoregressive motion model,
        :class:`~pyro_dvae.priors.DeepAR`, in place of the DVAE; the same blocks with an empty ``z``).
    :param prior: the DVAE prior (``mixdvae``) or the Deep AR model (``deepar``).
    :param str algo: ``"vem"`` (the structured guide) or ``"svi"`` / ``"enum-svi"`` (an ``AutoNormal``
        guide over ``s`` and ``z``, ``w`` enumerated exactly, the dynamics variance calibrated once on the
        greedy initial tracks by :meth:`TrackingModel.calibrate_dynamics`), all through
        :mod:`pyro_dvae.inference`.
    :param likelihood: a :class:`~pyro_dvae.likelihoods.BoxLikelihood`; default Gaussian with ``ratio``.
    :param str mode: ``"parallel"`` (iterated drift-linearised smoother, one decoder pass) or
        ``"sequential"`` (the MixDVAE forward pass fed with filtered means, then a backward pass).
        Likelihoods without closed-form Gaussian moments run with ``svi`` / ``enum-svi``.
    :param seeds: optional first-frame boxes of the sources ``(B, N, 4)`` for the initialisation.
    :returns: ``(estimates (B, T, N, 4), InferenceResult)``.
    """
    from pyro_dvae import inference

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if algo not in ("vem", "svi", "enum-svi"):
        raise ValueError(f"algo must be 'vem', 'svi' or 'enum-svi', got {algo!r}")
    if method == "vkf" and algo != "vem":
        raise ValueError("the VKF baseline runs with algo='vem' (its dynamics are a closed-form smoother)")
    if method != "vkf":
        if prior is None:
            raise ValueError(f"method {method!r} needs a prior")
        if (method == "deepar") != (not prior.latent_sites):
            want = "a deepar model (no latent variables)" if method == "deepar" else "a DVAE prior with latents"
            raise ValueError(f"method {method!r} needs {want}, got a {prior.name!r} prior")
    obs, obs_mask = check_observations(obs, obs_mask)
    pyro.set_rng_seed(seed)
    likelihood = likelihood if likelihood is not None else GaussianBoxes(ratio)
    model = TrackingModel(prior if method != "vkf" else None, num_sources, likelihood=likelihood,
                          clutter_prob=clutter_prob).to(obs.device)  # the likelihood's buffers too (CUDA alike)
    if algo == "vem":
        if not likelihood.closed_form:
            raise ValueError(f"{type(likelihood).__name__} has no closed-form E-steps: use algo='svi' or 'enum-svi'")
        guide = TrackingGuide(model, dynamics="cv" if method == "vkf" else "dvae", sample_z=sample_z, mode=mode)
        guide.initialise(obs, obs_mask, seeds=seeds)
        with torch.no_grad():
            res = inference.run("vem", model, guide, obs, obs_mask, num_iters=num_iters)
        est = guide["s"].mean
    else:
        from pyro.infer.autoguide import AutoNormal, init_to_value

        init_s = greedy_tracks(obs, obs_mask, num_sources, seeds=seeds)
        with torch.no_grad():
            z0 = model.prior.encode(init_s).sample()
        if any(isinstance(step, DynamicsNoiseMStep) for step in model.m_steps):
            model.calibrate_dynamics(init_s, z0)
        auto = AutoNormal(poutine.block(model.model, hide=["w"]), init_scale=1e-3,
                          init_loc_fn=init_to_value(values={"s": init_s, "z": z0}))
        pyro.clear_param_store()
        res = inference.run(algo, model.model, auto, obs, obs_mask, num_steps=num_iters, lr=lr)
        with torch.no_grad():
            est = auto.median(obs, obs_mask)["s"]
    return est.detach().permute(0, 2, 1, 3), res
