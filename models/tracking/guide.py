# SPDX-License-Identifier: Apache-2.0
"""The MixDVAE tracking blocks (E-W, E-Z, E-S), the structured guide that holds them, and the guide's
initialisation by :func:`greedy_tracks`."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from scipy.optimize import linear_sum_assignment

from pyro_dvae import checks
from pyro_dvae.assignment import entropy, responsibilities
from pyro_dvae.data.mot import iou_xyxy
from pyro_dvae.inference import ClosedFormBlock, StructuredGuide
from pyro_dvae.priors.distributions import SequentialNormal
from pyro_dvae.smoothing import (
    chain_sq_err,
    cv_kalman_smoother,
    cv_velocity_smoother,
    dvae_parallel_smoother,
    dvae_smoother,
    scale_dynamics_var,
)

from .config import LATENTS, MODES
from .model import ACCEL_VAR, BOX, check_observations


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
    """E-Z: the ``z`` path that the decoder of the next E-S step reads, from one of two sources.

    ``source="posterior"`` (MixDVAE): ``q(z | s)`` is the prior's encoder run on the current source means; its
    draw (or its noiseless path, ``sample=False``). The encoder reads every step of ``s``, so each ``z_t`` carries
    what ``s_t`` itself is, and the decoder's mean ``E[s_t | s_{<t}, z_t]`` follows the current estimate, noise
    included.

    ``source="prior"``: ``z`` follows the prior's own conditionals ``p(z_t | z_{<t}, s_{<t})`` along the current
    means (:meth:`~pyro_dvae.priors.base.DVAE.joint_stepwise` fed the means): at their means (``sample=False``) or
    drawn. Each ``z_t`` then reads only the past, so the E-S step's prior mean is the prior's one-step forecast and
    the smoother weighs a prediction against the detections, as a Kalman smoother does with its motion model.

    ``parallel=True`` (posterior only): for encoders with a recurrence on ``z`` (``q(z_t | z_{<t}, s)``), the step
    conditionals are evaluated in one teacher-forced pass on the previous iteration's path (a Jacobi
    sweep per VEM iteration, converging to the sequential draw as the iterations proceed) instead of a
    loop over time. The first update always draws sequentially.
    """

    def __init__(self, sample=True, parallel=True, prior=None, source="posterior"):
        super().__init__("z")
        checks.choice("latents", source, LATENTS)
        if source == "prior" and prior is not None and set(prior.latent_sites) - {"z"}:
            raise ValueError(f"latents='prior' needs a prior without static latents, got {prior.name!r}")
        self.sample, self.parallel, self.z, self.latents = sample, parallel, None, {}
        self.source = source
        self._prior = [prior]  # the model's prior, kept out of the module tree

    @property
    def prior(self):
        """The DVAE prior whose encoder this block runs (the tracking model's, given by :class:`TrackingGuide`)."""
        return self._prior[0]

    @torch.no_grad()
    def update(self, model, guide, obs, obs_mask, **kw):
        prior, mean = model.prior, guide["s"].mean
        if self.source == "prior":
            shape = (*mean.shape[:-1], prior.z_dim)
            eps = torch.randn(shape, dtype=mean.dtype, device=mean.device) if self.sample else mean.new_zeros(shape)
            self.z, self.latents = prior.joint_stepwise(eps, lambda t, m, v: mean[..., t, :])[0], {}
            return
        q, self.latents = prior.encode(mean, with_statics=True)
        if self.parallel and isinstance(q, SequentialNormal) and self.z is not None and self.z.shape == q.like.shape:
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
            prior.run_sites(prior.guide_sites(s, None), None, s.shape[:-1])
        return {}


class SourceBlock(ClosedFormBlock):
    """E-S: closed-form Gaussian ``q(s_n) = prod_t N(mean_tn, diag(var_tn))`` from the responsibility-
    weighted detections and the dynamics (``"dvae"``: the prior's decoder, in one of the ``mode`` s below;
    ``"cv"``: a constant-velocity Kalman smoother, the VKF baseline).

    DVAE modes: ``"parallel"`` (MixDVAE's chain ``s_t = s_{t-1} + drift_t + noise``, the decoder teacher-forced on
    the previous estimate: :func:`~pyro_dvae.smoothing.dvae_parallel_smoother`), ``"sequential"`` (the decoder fed
    step by step, then a backward pass) or ``"velocity"``: a constant-velocity smoother whose velocity is also
    *observed* through the prior: the decoder teacher-forced on the previous estimate gives the one-step
    displacement ``u_t = mu_t - m_{t-1}`` with variance ``velocity_scale * v_t``
    (:func:`~pyro_dvae.smoothing.cv_velocity_smoother`). The velocity is then a state of its own, corrected by the
    detections, so that errors of the learned drift do not add up along a window, and the acceleration noise
    ``model.accel_var`` is fitted by EM (:class:`~pyro_dvae.models.tracking.model.AccelerationNoiseMStep`).

    ``init_var`` (parallel DVAE mode): variance of the first position, in normalised image units. The
    pre-trained prior's own first step is whatever it learnt about *synthetic* start positions; the
    default 1.0 is flat over the image whatever that was (``None`` keeps the prior's).

    :param float accel_var: the VKF baseline's acceleration noise (fixed).
    :param float vel_var: prior variance of the first velocity (``"cv"`` and ``"velocity"``).
    :param float velocity_scale: ``"velocity"`` mode: the factor on the prior's variance ``v_t`` that gives the
        variance of its velocity observation (larger: the detections and constant velocity weigh more).

    :attr:`camera` (``"velocity"`` mode; set by :meth:`TrackingGuide.initialise`): the image motion common to the
    scene at each step, ``(B, T, 4)`` displacements of the box coordinates (a moving camera's), or ``None``. The
    prior then reads each track relative to it (the track minus the camera's path) and its displacement is added
    back: a prior learnt on static cameras sees walkers, not the camera's motion.
    """

    def __init__(self, dynamics="dvae", mode="parallel", accel_var=ACCEL_VAR, vel_var=1e-4, smooth=True, init_var=1.0,
                 velocity_scale=5.0):
        super().__init__("s")
        checks.choice("dynamics", dynamics, ("dvae", "cv"))
        checks.choice("mode", mode, MODES)
        self.dynamics, self.mode, self.accel_var, self.vel_var, self.smooth = dynamics, mode, accel_var, vel_var, smooth
        self.init_var = init_var
        self.velocity_scale = checks.positive("velocity_scale", velocity_scale)
        self.mean = self.var = self.prior_mean = self.prior_var = self.sq_err = self.accel = None
        self.camera = None

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
        if self.dynamics == "dvae" and self.mode == "velocity":
            self._velocity_update(model, guide["z"], J, h)
        elif self.dynamics == "dvae" and self.mode == "parallel":
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

    def _velocity_update(self, model, zb, J, h):
        """The ``"velocity"`` E-S step (class docstring)."""
        prior, m_old = model.prior, self.mean
        camera = path = 0.0
        if self.camera is not None:  # the prior reads the track relative to the camera's path
            camera = self.camera.unsqueeze(1).to(m_old)  # (B, 1, T, 4) against (B, N, T, 4)
            path = torch.cumsum(camera, -2)
        m_rel = m_old - path
        loc, logvar = prior.emission_params(zb.z, m_rel, zb.latents or {})
        mu, v = prior.expected(loc, logvar)
        prev = torch.cat([m_rel[..., :1, :], m_rel[..., :-1, :]], -2)
        drift = mu - prev + camera  # the prior's one-step displacement, plus the camera's (unused at t = 0)
        mu = mu + path
        Jv = torch.cat([torch.zeros_like(v[..., :1, :]), 1.0 / (self.velocity_scale * v[..., 1:, :])], -2)
        init_var = (self.var[..., 0, :] * 4).clamp_min(1e-6)
        out = cv_velocity_smoother(J, h, Jv, Jv * drift, model.accel_var, m_old[..., 0, :], init_var, self.vel_var)
        self.mean, self.var, self.accel = out.mean, out.var, out.accel
        # the MixDVAE chain's moments at this posterior, for the ELBO and the dynamics-noise M-step
        v = scale_dynamics_var(v, model.dynamics_scale, prior.autoregressive)
        if self.init_var is not None:
            v = torch.cat([torch.full_like(v[..., :1, :], self.init_var), v[..., 1:, :]], -2)
        self.prior_mean, self.prior_var = mu, v
        self.sq_err = chain_sq_err(out.mean, out.var, out.cross, mu, drift)

    def expected_sq_err(self):
        """``E_q[(s_t - E_p[s_t | s_{t-1}])^2]`` of the last E-S step (parallel and velocity modes: the MixDVAE
        chain's innovation; sequential mode: ``(m - mu)^2 + var`` around the forward pass's predictions)."""
        if self.sq_err is not None and self.mode in ("parallel", "velocity"):
            return self.sq_err
        return (self.mean - self.prior_mean) ** 2 + self.var

    def guide(self, obs, obs_mask, values, **kw):
        B, N = self.mean.shape[:2]
        with pyro.plate("batch", B, dim=-2), pyro.plate("sources", N, dim=-1):
            s = pyro.sample("s", dist.Normal(self.mean, self.var.sqrt()).to_event(2))
        return {"s": s}


class TrackingGuide(StructuredGuide):
    """Structured guide for :class:`TrackingModel`: blocks ``w`` (E-W), ``z`` (E-Z, DVAE only), ``s`` (E-S).

    The update order is E-W, E-Z, E-S (then the model's M-step), as in MixDVAE. The guide samples
    ``s``, then ``z | s`` with the prior's encoder, then ``w``. :meth:`exact_elbo` is the ELBO
    conditional on the current ``z`` (exact for non-autoregressive priors; it omits the ``z`` terms,
    which these closed-form steps do not change).
    """

    def __init__(self, model, dynamics="dvae", mode="parallel", sample_z=True, latents="posterior",
                 **dynamics_options):
        self.dynamics = dynamics
        blocks = [AssignmentBlock()]
        if dynamics == "dvae":
            if model.prior is None:
                raise ValueError("dynamics='dvae' needs a model with a prior")
            blocks.append(LatentBlock(sample=sample_z, parallel=mode in ("parallel", "velocity"), prior=model.prior,
                                      source=latents))
        blocks.append(SourceBlock(dynamics, mode=mode, **dynamics_options))
        super().__init__(blocks)
        self._model = [model]  # not a submodule: model parameters stay out of the guide

    def initialise(self, obs, obs_mask, init_var=1e-4, seeds=None, camera=None):
        """Start from a greedy IoU tracker (:func:`greedy_tracks`, optionally seeded with the first-frame
        boxes ``seeds (B, N, 4)``) and the matching responsibilities.

        :param camera: ``(B, T, 4)`` image motion common to the scene per step (:class:`SourceBlock`), read by the
            ``"velocity"`` E-S step; ``None``: none."""
        obs, obs_mask = check_observations(obs, obs_mask)
        model = self._model[0]
        mean = greedy_tracks(obs, obs_mask, model.num_sources, seeds=seeds)
        qs = self["s"]
        if camera is not None:
            camera = torch.as_tensor(camera, dtype=obs.dtype, device=obs.device)
            if camera.shape != (*obs.shape[:2], BOX):
                raise ValueError(f"camera must be shaped (B, T, 4) = {(*obs.shape[:2], BOX)}, got "
                                 f"{tuple(camera.shape)}")
            if qs.dynamics != "dvae" or qs.mode != "velocity":
                raise ValueError("camera motion is read by the 'velocity' E-S step of DVAE dynamics only, got "
                                 f"dynamics={qs.dynamics!r}, mode={qs.mode!r}")
        qs.camera = camera
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


#: the initial box of a source never seen in its window (normalised ``x1, y1, x2, y2``: the image centre)
UNSEEN_BOX = np.array([0.45, 0.35, 0.5, 0.6])


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
    if N == 1 and K == 1:  # one source, at most one detection per frame: the same rule for every window at once
        out = _greedy_single(o[:, :, 0], m[:, :, 0], min_iou, gate, velocity_decay, seeds, centre)
        return torch.as_tensor(out, dtype=obs.dtype, device=obs.device)
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
                out[b, n] = UNSEEN_BOX
    return torch.as_tensor(out, dtype=obs.dtype, device=obs.device)


def _greedy_single(o, m, min_iou, gate, velocity_decay, seeds, centre):
    """:func:`greedy_tracks` for one source and at most one detection per frame (``o (B, T, 4)``, ``m (B, T)``),
    vectorised over the ``B`` windows: the same matches, velocities and boxes as its per-window loop."""
    B, T, _ = o.shape
    pos = np.full((B, BOX), np.nan) if seeds is None else seeds[:, 0].copy()
    vel, last = np.zeros((B, BOX)), np.zeros(B)
    seeded_at = np.full(B, -1) if seeds is None else np.zeros(B, int)
    out = np.zeros((B, 1, T, BOX))
    for t in range(T):
        det, has = o[:, t], m[:, t]
        known = ~np.isnan(pos[:, 0])
        pred = pos + vel * (t - last)[:, None]
        iou = iou_xyxy(pred[:, None], det[:, None])[:, 0, 0]
        dist_ = np.linalg.norm(centre(pred) - centre(det), axis=-1)
        hit = has & known & ((iou >= min_iou) | (dist_ < gate))
        step = (det - pos) / np.maximum(t - last, 1)[:, None]
        vel = np.where(hit[:, None], velocity_decay * vel + (1 - velocity_decay) * step, vel)
        seed = has & ~known
        take = hit | seed
        pos = np.where(take[:, None], det, pos)
        last = np.where(take, t, last)
        seeded_at = np.where(seed, t, seeded_at)
        out[:, 0, t] = np.nan_to_num(pos, nan=0.5)
    first = out[np.arange(B), 0, np.maximum(seeded_at, 0)]  # each window's box at its seed
    before = np.arange(T)[None, :] < seeded_at[:, None]  # the frames before a late seed take the seed box
    out[:, 0] = np.where(before[..., None], first[:, None], out[:, 0])
    out[seeded_at < 0, 0] = UNSEEN_BOX
    return out
