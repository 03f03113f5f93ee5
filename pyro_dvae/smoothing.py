# SPDX-License-Identifier: Apache-2.0
"""Closed-form Gaussian posteriors of a source sequence given weighted observations (E-S steps).

Observations enter in information form: for each step a diagonal precision ``J_t`` and an information
vector ``h_t`` (``J_t = sum_k eta_tk / Phi_tk``, ``h_t = sum_k eta_tk o_tk / Phi_tk`` for a mixture of
assigned detections). Dynamics:

- :func:`dvae_smoother` — a DVAE prior ``p(s_t | z, s_{<t}) = N(mu_t, v_t)``. The decoder runs step by
  step fed with the filtered mean (the MixDVAE forward pass). For autoregressive decoders a backward
  Rauch-Tung-Striebel pass follows, using the first-order linearisation ``d mu_t / d s_{t-1} ≈ I``
  around the filtered mean (the prior's prediction moves with the previous position; the LSTM state
  carries velocity): predicted variance ``P_t = Sigma_{t-1} + v_t``. For non-autoregressive decoders
  ``p(s_t | z_t)`` the steps are independent and the update is the exact posterior.
- :func:`cv_kalman_smoother` — linear constant-velocity dynamics (the VKF baseline): an exact Kalman
  filter and RTS smoother with a (position, velocity) state per coordinate.

- :func:`cv_velocity_smoother` — the constant-velocity chain with the velocity observed as well: the tracker's
  ``"velocity"`` E-S step, where the DVAE prior's one-step displacement along the current estimate is that
  observation (with the prior's own variance times a factor), so that the learned dynamics steer a smoother
  whose velocity is a state of its own.

- :func:`dvae_parallel_smoother` — the same prior linearised around the previous estimate ``m_old``:
  the decoder runs once, teacher-forced on ``m_old`` (one parallel pass), giving ``mu_t`` and ``v_t``;
  for autoregressive decoders ``s_t = s_{t-1} + (mu_t - m_old_{t-1}) + N(0, v_t)`` (drift linearisation,
  ``d mu_t / d s_{t-1} ≈ I``), a linear-Gaussian chain solved exactly by an elementwise Kalman filter and
  RTS pass, computed as parallel scans over time (:func:`chain_posterior`: no network call and no
  Python loop over ``T``). Repeated every VEM iteration, this is an iterated
  smoother in the spirit of the iterated extended Kalman smoother.

The DVAE smoothers take an optional ``var_scale`` (per coordinate) multiplying the decoder variance
``v_t`` (for autoregressive priors from ``t = 1`` on: the first step's variance is the prior's
position spread, not a dynamics noise): the dynamics-noise calibration that
:class:`~pyro_dvae.models.tracking.DynamicsNoiseMStep` estimates by EM.

All functions are vectorised over leading batch dims.

**References:**

[1] H. E. Rauch, F. Tung, C. T. Striebel (1965), "Maximum likelihood estimates of linear dynamic
    systems", AIAA Journal.
[2] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for
    Multi-Source Trajectory Modeling and Separation", TMLR.
"""

import warnings
import weakref
from typing import NamedTuple

import torch

#: Bounds of a dynamics-variance factor fitted to data (:func:`calibrate_var_scale`, the tracker's EM M-step).
VAR_SCALE_RANGE = (1e-2, 1e4)


class UncalibratedPriorWarning(UserWarning):
    """A Gaussian autoregressive prior used as the dynamics of a model (``latent_sequence``) without ``var_scale``."""


_warned = weakref.WeakSet()  # priors already warned about (warn_uncalibrated: once per prior object)


def warn_uncalibrated(prior, var_scale):
    """Warn, once per prior object, when a Gaussian autoregressive ``prior`` is used in
    :meth:`~pyro_dvae.priors.base.DVAE.latent_sequence` without ``var_scale``: its dynamics variance is then that of
    its training motion, typically 20-70x too small for faster motion (a model built around it then does no better
    than linear interpolation of the detections). The warning says how to calibrate it (:func:`calibrate_var_scale`);
    ``var_scale=1.0`` keeps the prior's variance and silences it."""
    if var_scale is not None or prior.emission != "gaussian" or not prior.autoregressive or prior in _warned:
        return
    _warned.add(prior)
    warnings.warn(f"the {prior.name} prior's dynamics variance is uncalibrated (often 20-70x over-confident on faster "
                  "motion than its training data): pass latent_sequence(..., var_scale=pyro_dvae.smoothing."
                  "calibrate_var_scale(prior, tracks)) with rough tracks (e.g. the detections interpolated), or "
                  "var_scale=1.0 to keep it", UncalibratedPriorWarning, stacklevel=3)


@torch.no_grad()
def calibrate_var_scale(prior, tracks, z=None):
    """The per-coordinate factor ``alpha`` on a Gaussian prior's dynamics variance that makes sequences like
    ``tracks`` typical: the maximiser of ``log p(tracks | z)`` under ``p(x_t | z, x_{<t}) = N(mu_t, alpha v_t)``,
    ``alpha_d = mean (x - mu)^2 / v`` over the batch and the steps (autoregressive priors: ``t >= 1``, the steps
    that carry dynamics), with ``mu, v`` the prior's decoder teacher-forced on ``tracks``; clamped to
    :data:`VAR_SCALE_RANGE`. Pass it as ``var_scale`` of :meth:`~pyro_dvae.priors.base.DVAE.latent_sequence` (or
    of the smoothers here).

    A prior trained on one kind of motion is over-confident on faster motion (the shipped trajectory prior by
    20-70x on the crossing scenes of :func:`~pyro_dvae.data.synthetic.crossing_scene`); rough tracks of the data
    to be explained are enough, e.g. the detections of each source linearly interpolated over their gaps (their
    noise makes the factor a little large: the prior is then slightly under-confident, the safe side).

    Example::

        var_scale = calibrate_var_scale(prior, rough_tracks)  # (x_dim,)
        s = prior.latent_sequence("s", like, var_scale=var_scale)["s"]

    :param DVAE prior: a Gaussian-emission prior.
    :param torch.Tensor tracks: ``(*batch, T, x_dim)`` complete sequences.
    :param torch.Tensor z: ``(*batch, T, z_dim)`` latents to decode with; default: the prior's encoder on
        ``tracks``, its noiseless path (each ``z_t`` at its conditional mean).
    :returns: ``(x_dim,)`` tensor.
    """
    if prior.emission != "gaussian":
        raise ValueError(f"calibrate_var_scale needs a gaussian-emission prior, got {prior.emission!r}")
    tracks = torch.as_tensor(tracks).to(prior.x_loc.device, prior.x_loc.dtype)
    if tracks.dim() < 2 or tracks.shape[-1] != prior.x_dim:
        raise ValueError(f"tracks must be shaped (*batch, T, {prior.x_dim}), got {tuple(tracks.shape)}")
    if z is None:
        q = prior.encode(tracks)
        z = q.noiseless() if hasattr(q, "noiseless") else q.mean
    mean, var = prior.decode(z, tracks)
    start = 1 if prior.autoregressive else 0
    ratio = ((tracks - mean) ** 2 / var)[..., start:, :].reshape(-1, prior.x_dim).mean(0)
    return ratio.clamp(*VAR_SCALE_RANGE)


def scale_dynamics_var(v, var_scale, autoregressive):
    """``v * var_scale`` (all steps, or from ``t = 1`` on for autoregressive priors); ``v`` if no scale."""
    if var_scale is None:
        return v
    if not autoregressive:
        return v * var_scale
    return torch.cat([v[..., :1, :], v[..., 1:, :] * var_scale], -2)


def dvae_smoother(prior, z, J, h, latents=None, x_hint=None, smooth=True, var_scale=None):
    """E-S with a DVAE prior.

    :param DVAE prior: a Gaussian-emission prior.
    :param torch.Tensor z: ``(*batch, T, z_dim)`` latent sequence.
    :param torch.Tensor J: ``(*batch, T, D)`` observation precision (0 where nothing is observed).
    :param torch.Tensor h: ``(*batch, T, D)`` observation information vector.
    :param dict latents: other latents of the prior (DSAE ``v``).
    :param torch.Tensor x_hint: current sequence estimate for priors whose decoder reads a summary.
    :param bool smooth: run the backward pass (autoregressive priors).
    :param torch.Tensor var_scale: optional ``(D,)`` factor on the decoder variance (module docstring).
    :returns: ``(mean, var, prior_mean, prior_var)``, each ``(*batch, T, D)``; the prior moments are
        those of the forward pass.
    """
    T = z.shape[-2]
    f_mean, f_var, p_mean, p_var = [], [], [], []
    state = {"prev_var": None}

    def update(t, mu, v):
        if var_scale is not None and (t > 0 or not prior.autoregressive):
            v = v * var_scale
        P = v if state["prev_var"] is None or not prior.autoregressive else v + state["prev_var"]
        prec = 1.0 / P + J[..., t, :]
        var = 1.0 / prec
        mean = var * (mu / P + h[..., t, :])
        state["prev_var"] = var
        f_mean.append(mean), f_var.append(var), p_mean.append(mu), p_var.append(P)
        return mean

    if prior.autoregressive:
        prior.decode_stepwise(z, update, latents=latents)
    else:
        loc, logvar = prior.emission_params(z, x_hint, latents or {})
        mean_all, var_all = prior.expected(loc, logvar)
        for t in range(T):
            update(t, mean_all[..., t, :], var_all[..., t, :])
    mu, P = torch.stack(p_mean, -2), torch.stack(p_var, -2)
    if not (prior.autoregressive and smooth):
        return torch.stack(f_mean, -2), torch.stack(f_var, -2), mu, P
    return (*rts_identity(f_mean, f_var, p_mean, p_var), mu, P)


def cv_kalman_smoother(J, h, accel_var, init_mean, init_var, vel_var):
    """E-S with constant-velocity linear dynamics per coordinate (exact Kalman filter + RTS smoother).

    State ``(position, velocity)`` per coordinate, ``A = [[1, 1], [0, 1]]``, process noise of a white
    acceleration of spectral density ``accel_var`` integrated over one frame (``Q = q [[1/3, 1/2], [1/2, 1]]``).

    :param J: ``(*batch, T, D)`` observation precisions; :param h: information vectors.
    :param accel_var: process noise ``q`` (a float, or a tensor broadcasting to ``(D,)``).
    :param init_mean: ``(*batch, D)`` prior mean of the first position; ``init_var`` its variance;
        ``vel_var`` the prior variance of the first velocity.
    :returns: ``(mean, var)`` of the positions, ``(*batch, T, D)``.
    """
    zero = torch.zeros_like(J)
    out = cv_velocity_smoother(J, h, zero, zero, accel_var, init_mean, init_var, vel_var)
    return out.mean, out.var


class CVSmoothed(NamedTuple):
    """Moments of :func:`cv_velocity_smoother`, each ``(*batch, T, D)``."""

    #: positions' posterior means and variances
    mean: torch.Tensor
    var: torch.Tensor
    #: velocities' posterior means and variances
    vel_mean: torch.Tensor
    vel_var: torch.Tensor
    #: ``Cov(s_t, s_{t-1})`` of the positions (0 at ``t = 0``)
    cross: torch.Tensor
    #: ``tr(Q0^{-1} E[w_t w_t^T]) / 2`` with ``w_t = x_t - A x_{t-1}`` the process noise of step ``t`` (0 at
    #: ``t = 0``): its mean over the steps is the maximiser of the expected log-density in ``q``
    accel: torch.Tensor


def cv_velocity_smoother(J, h, Jv, hv, accel_var, init_mean, init_var, vel_var):
    """:func:`cv_kalman_smoother` with observations of the velocity as well: the exact posterior of a
    constant-velocity chain per coordinate given position observations ``(J, h)`` and velocity observations
    ``(Jv, hv)`` in information form (``Jv_t = 1 / r_t``, ``hv_t = u_t / r_t`` for a velocity ``u_t`` observed with
    variance ``r_t``; 0 where none is). The E-S step of the tracker's ``"velocity"`` mode, where ``u_t`` is the
    DVAE prior's one-step displacement (:class:`~pyro_dvae.models.tracking.guide.SourceBlock`).

    The 2x2 algebra is written out elementwise (the two observations of a step enter as two scalar updates), so a
    step costs a few dozen elementwise operations on ``(*batch, D)`` tensors whatever the batch.

    :param accel_var: ``q`` of the process noise ``q Q0``, ``Q0 = [[1/3, 1/2], [1/2, 1]]``: a float or a tensor
        broadcasting to ``(D,)``.
    :returns: :class:`CVSmoothed`; its ``accel`` is the statistic of the closed-form M-step of ``q``.
    """
    T = J.shape[-2]
    q = torch.as_tensor(accel_var, dtype=J.dtype, device=J.device)
    m0, m1 = init_mean, torch.zeros_like(init_mean)
    a = torch.as_tensor(init_var, dtype=J.dtype, device=J.device).expand_as(init_mean)
    b, c = torch.zeros_like(init_mean), torch.full_like(init_mean, vel_var)
    filt, pred = [], []  # (m0, m1, a, b, c) per step: filtered, and predicted (before the step's observations)
    for t in range(T):
        if t:  # x <- A x, P <- A P A^T + q Q0
            m0, m1 = m0 + m1, m1
            a, b, c = a + 2 * b + c + q / 3, b + c + q / 2, c + q
        pred.append((m0, m1, a, b, c))
        for i, (j, hh) in enumerate(((J[..., t, :], h[..., t, :]), (Jv[..., t, :], hv[..., t, :]))):
            # scalar observation of component i, information (j, hh): m += P e_i (hh - j m_i) / (1 + j P_ii),
            # P -= j P e_i e_i^T P / (1 + j P_ii) (nothing where j = 0)
            pi, pk = (a, b) if i == 0 else (b, c)  # P e_i = (pi, pk), P_ii = a or c
            g = 1 / (1 + j * (a if i == 0 else c))
            r = (hh - j * (m0 if i == 0 else m1)) * g
            m0, m1 = m0 + pi * r, m1 + pk * r
            jg = j * g
            a, b, c = a - jg * pi * pi, b - jg * pi * pk, c - jg * pk * pk
        filt.append((m0, m1, a, b, c))
    s0, s1, sa, sb, sc = filt[-1]
    out = [(s0, s1, sa, sb, sc)]
    gains = []
    for t in range(T - 2, -1, -1):
        f0, f1, fa, fb, fc = filt[t]
        p0, p1, pa, pb, pc = pred[t + 1]
        # G = F A^T P^{-1}, F A^T = [[fa + fb, fb], [fb + fc, fc]]
        det = pa * pc - pb * pb
        u11, u12, u21, u22 = fa + fb, fb, fb + fc, fc
        g11, g12 = (u11 * pc - u12 * pb) / det, (u12 * pa - u11 * pb) / det
        g21, g22 = (u21 * pc - u22 * pb) / det, (u22 * pa - u21 * pb) / det
        d0, d1 = s0 - p0, s1 - p1
        s0, s1 = f0 + g11 * d0 + g12 * d1, f1 + g21 * d0 + g22 * d1
        # S = F + G (S_next - P) G^T
        ea, eb, ec = sa - pa, sb - pb, sc - pc
        r11, r12 = g11 * ea + g12 * eb, g11 * eb + g12 * ec  # G E
        r21, r22 = g21 * ea + g22 * eb, g21 * eb + g22 * ec
        sa, sb, sc = fa + r11 * g11 + r12 * g12, fb + r11 * g21 + r12 * g22, fc + r21 * g21 + r22 * g22
        out.append((s0, s1, sa, sb, sc))
        gains.append((g11, g12, g21, g22))
    out, gains = out[::-1], gains[::-1]
    M0, M1, Sa, Sb, Sc = (torch.stack([o[k] for o in out], -2) for k in range(5))
    zero = torch.zeros_like(M0[..., :1, :])
    if T < 2:
        return CVSmoothed(M0, Sa, M1, Sc, zero, zero)
    G11, G12, G21, G22 = (torch.stack([g[k] for g in gains], -2) for k in range(4))
    # C = Cov(x_t, x_{t-1}) = S_t G_{t-1}^T, t >= 1
    a1, b1, c1 = Sa[..., 1:, :], Sb[..., 1:, :], Sc[..., 1:, :]
    C11, C12 = a1 * G11 + b1 * G12, a1 * G21 + b1 * G22
    C21, C22 = b1 * G11 + c1 * G12, b1 * G21 + c1 * G22
    # E = E[w w^T], w = x_t - A x_{t-1}: d d^T + S_t - A C^T - C A^T + A S_{t-1} A^T
    a0, b0, c0 = Sa[..., :-1, :], Sb[..., :-1, :], Sc[..., :-1, :]
    d0 = M0[..., 1:, :] - M0[..., :-1, :] - M1[..., :-1, :]
    d1 = M1[..., 1:, :] - M1[..., :-1, :]
    AC11, AC12, AC22 = C11 + C12, C21 + C22, C22  # (C A^T): [[C11 + C12, C12], [C21 + C22, C22]]
    E11 = d0 * d0 + a1 - 2 * AC11 + (a0 + 2 * b0 + c0)
    E12 = d0 * d1 + b1 - AC12 - C12 + (b0 + c0)
    E22 = d1 * d1 + c1 - 2 * AC22 + c0
    # Q0^{-1} = [[12, -6], [-6, 4]]: tr(Q0^{-1} E) / 2
    accel = torch.cat([zero, 6 * E11 - 6 * E12 + 2 * E22], -2)
    return CVSmoothed(M0, Sa, M1, Sc, torch.cat([zero, C11], -2), accel)


def _affine_scan_(a, b):
    """``y_t = a_t y_{t-1} + b_t`` with ``y_{-1} = 0`` along dim 0 (time-major), as a Hillis-Steele scan
    (log2(T) levels of elementwise ops instead of a loop over ``T``). Overwrites ``a`` and ``b`` (contiguous,
    time first) and returns ``b``, which then holds ``y``."""
    k, T = 1, a.shape[0]
    while k < T:
        b[k:].add_(a[k:] * b[:-k])  # (not ``+=``: that would copy the view onto itself afterwards)
        if 2 * k < T:
            a[k:].copy_(a[k:] * a[:-k])
        k *= 2
    return b


def _riccati_scan(F0, v, J):
    """Filtered variances of a scalar random walk, ``F_t = (F_{t-1} + v_t) / (1 + J_t (F_{t-1} + v_t))``
    for ``t >= 1`` from ``F_0`` (time-major ``(T, M)``): each step is the Moebius map of
    ``[[1, v], [J, 1 + J v]]``; their products come from a Hillis-Steele scan over the 2x2 matrices
    (stored ``(T, 2, 2, M)``), normalised at every level (the maps are scale-free; all entries are
    non-negative)."""
    T, M = v.shape
    X = torch.empty(T, 2, 2, M, dtype=v.dtype, device=v.device)
    X[:, 0, 0], X[:, 0, 1], X[:, 1, 0] = 1.0, v, J
    torch.addcmul(X[:, 0, 0], J, v, out=X[:, 1, 1])
    cols, rows = (X[:, :, :1], X[:, :, 1:]), (X[:, :1], X[:, 1:])  # fixed views: one slice per operand below
    k = 1
    while k < T:
        prod = torch.addcmul(cols[0][k:] * rows[0][:-k], cols[1][k:], rows[1][:-k])  # 2x2 products
        torch.div(prod, prod[:, 1:, 1:].clamp_min(1e-30), out=X[k:])
        k *= 2
    (p, q), (r, s) = (row.unbind(1) for row in X.unbind(1))
    return (p * F0 + q) / (r * F0 + s)


def chain_posterior(J, h, mu0, v0, drift, v):
    """Posterior of a scalar random walk with drift per coordinate: an exact Kalman filter and RTS smoother,
    computed by parallel scans over time (no Python loop over ``T``; about a hundred elementwise ops on
    contiguous time-major tensors in all). Without autograd those ops run in inference mode (less work per
    op: the VEM of small batches is bound by per-op costs) and the results are copied out of it, so callers
    get ordinary tensors.

    ``s_0 ~ N(mu0, v0)``, ``s_t = s_{t-1} + drift_t + N(0, v_t)`` (``t >= 1``), and observations in
    information form ``(J_t, h_t)``. Tensors are ``(*batch, T, D)`` (``mu0, v0``: ``(*batch, D)``;
    ``drift[..., 0, :]`` and ``v[..., 0, :]`` are unused).

    :returns: ``(mean, var, cross)``, each ``(*batch, T, D)``: the marginals and the lag-one covariances
        ``Cov(s_t, s_{t-1})`` (0 at ``t = 0``).
    """
    if torch.is_grad_enabled() or torch.is_inference_mode_enabled():
        return _chain_posterior(J, h, mu0, v0, drift, v)
    with torch.inference_mode():
        out = _chain_posterior(J, h, mu0, v0, drift, v)
    return tuple(x.clone() for x in out)


def _chain_posterior(J, h, mu0, v0, drift, v):
    shape = torch.broadcast_shapes(J.shape, h.shape, drift.shape, v.shape)
    T = shape[-2]

    def time_major(x):
        return x.expand(shape).movedim(-2, 0).reshape(T, -1)

    J, h, drift, v = time_major(J), time_major(h), time_major(drift), time_major(v)
    mu0, v0 = (x.expand(*shape[:-2], shape[-1]).reshape(1, -1) for x in (mu0, v0))
    F0 = 1.0 / (1.0 / v0 + J[:1])
    F = torch.cat([F0, _riccati_scan(F0, v[1:], J[1:])])  # filtered variances
    P = torch.cat([v0, F[:-1] + v[1:]])  # predicted variances
    # filtered means: f_t = (F_t / P_t) (f_{t-1} + d_t) + F_t h_t, f_0 = F_0 (mu0 / v0 + h_0)
    a = F / P
    b = torch.addcmul(F * h, a, torch.cat([mu0, drift[1:]]))
    a[0] = 0.0
    f = _affine_scan_(a, b)
    pm = torch.cat([mu0, f[:-1] + drift[1:]])  # predicted means
    # RTS, backwards: G_t = F_t / P_{t+1}; m_t = G_t m_{t+1} + f_t - G_t pm_{t+1};
    # V_t = G_t^2 V_{t+1} + F_t - G_t^2 P_{t+1}: one scan over time reversed for the means and variances
    G = F[:-1] / P[1:]
    ga = torch.zeros(2, T, G.shape[-1], dtype=G.dtype, device=G.device)
    ga[0, 1:], ga[1, 1:] = G.flip(0), (G * G).flip(0)
    mv = torch.stack([f, F])
    mv[:, :-1] -= torch.stack([G * pm[1:], G * G * P[1:]])
    mean, var = _affine_scan_(ga.transpose(0, 1), mv.flip(1).transpose(0, 1)).transpose(0, 1).flip(1)
    cross = torch.cat([torch.zeros_like(F[:1]), G * var[1:]])

    def batch_major(x):
        return x.reshape(T, *shape[:-2], shape[-1]).movedim(0, -2)

    return batch_major(mean), batch_major(var), batch_major(cross)


def rts_identity(fm, fv, pm, pv):
    """Rauch-Tung-Striebel backward pass for a diagonal chain with identity transition.

    :param list fm, fv: filtered means / variances per step; :param list pm, pv: predicted ones.
    :returns: stacked smoothed ``(mean, var)``, time at dim -2.
    """
    ms, vs = [fm[-1]], [fv[-1]]
    for t in range(len(fm) - 2, -1, -1):
        G = fv[t] / pv[t + 1]
        ms.append(fm[t] + G * (ms[-1] - pm[t + 1]))
        vs.append(fv[t] + G * G * (vs[-1] - pv[t + 1]))
    return torch.stack(ms[::-1], -2), torch.stack(vs[::-1], -2)


def dvae_parallel_smoother(prior, z, J, h, m_old, latents=None, var_scale=None, init_var=None):
    """E-S with the DVAE prior linearised around ``m_old`` (see the module docstring).

    :param float init_var: autoregressive priors: replace the first step's variance (the prior's learnt
        spread of initial positions, e.g. of synthetic training data) by this value (a flat start).
    :returns: ``(mean, var, prior_mean, prior_var, sq_err)``: the prior moments are the decoder's
        teacher-forced ``mu_t`` and (scaled) ``v_t``; ``sq_err_t = E_q[(s_t - E_p[s_t | s_{t-1}])^2]`` is
        the expected squared innovation of the linearised chain (with the lag-one covariance of the
        smoother; ``(m_t - mu_t)^2 + var_t`` for non-autoregressive priors and at ``t = 0``), the
        quantity in ``E_q[log p(s)] = -1/2 sum log(2 pi v) + sq_err / v``.
    """
    loc, logvar = prior.emission_params(z, m_old, latents or {})
    mu, v = prior.expected(loc, logvar)
    v = scale_dynamics_var(v, var_scale, prior.autoregressive)
    if init_var is not None and prior.autoregressive:  # a flat prior on the first position
        v = torch.cat([torch.full_like(v[..., :1, :], init_var), v[..., 1:, :]], -2)
    if not prior.autoregressive:
        var = 1.0 / (1.0 / v + J)
        mean = var * (mu / v + h)
        return mean, var, mu, v, (mean - mu) ** 2 + var
    drift = mu - torch.cat([torch.zeros_like(m_old[..., :1, :]), m_old[..., :-1, :]], -2)
    mean, var, cross = chain_posterior(J, h, mu[..., 0, :], v[..., 0, :], drift, v)
    return mean, var, mu, v, chain_sq_err(mean, var, cross, mu, drift)


def chain_sq_err(mean, var, cross, mu, drift):
    """Expected squared innovations of the drift chain ``s_t = s_{t-1} + drift_t + noise`` under a Gaussian
    posterior with marginals ``(mean, var)`` and lag-one covariances ``cross``: ``E_q[(s_t - s_{t-1} - drift_t)^2]``
    for ``t >= 1`` and ``E_q[(s_0 - mu_0)^2]`` at ``t = 0``; ``(*batch, T, D)``. The quantity in the chain's
    ``E_q[log p(s)]`` (the ELBO and the dynamics-noise M-step)."""
    step = mean[..., 1:, :] - mean[..., :-1, :] - drift[..., 1:, :]
    later = step**2 + var[..., 1:, :] + var[..., :-1, :] - 2 * cross[..., 1:, :]
    first = (mean[..., :1, :] - mu[..., :1, :]) ** 2 + var[..., :1, :]
    return torch.cat([first, later.clamp_min(0)], -2)
