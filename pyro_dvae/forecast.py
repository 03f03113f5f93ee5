# SPDX-License-Identifier: Apache-2.0
"""Forecasting with a Gaussian DVAE prior: the mean of the sequence's next steps given its observed past, with no
observation in between (what a tracker's dynamics must do across an occlusion).

:func:`dvae_forecast` conditions on the past ``x_{1:C}`` and rolls the prior forward at its means:

- ``latents="posterior"`` (default): ``z_{1:C}`` is the encoder's noiseless path on the past (each ``z_t`` at the
  mean of ``q(z_t | z_{<t}, x_{1:C})``: the posterior of the past's latents); then for ``t > C``: ``z_t`` = the mean
  of ``p(z_t | z_{<t}, x_{<t})``
  (:meth:`~pyro_dvae.priors.base.DVAE.z_prior_params`) and ``x_t`` = the mean of ``p(x_t | z_{<=t}, x_{<t})``
  (:meth:`~pyro_dvae.priors.base.DVAE.decode`), fed back as the past of ``t + 1``;
- ``latents="prior"``: no encoder; ``z`` follows the prior's conditional means along the observed past too
  (:meth:`~pyro_dvae.priors.base.DVAE.joint_stepwise` with zero noise, fed the observations up to ``C``).

Both use the priors' public hooks only, so any autoregressive Gaussian prior forecasts; a prior whose ``z`` prior is
``N(0, I)`` rolls forward with ``z_t = 0``.
"""

import torch

from .priors.distributions import SequentialNormal

LATENTS = ("posterior", "prior")


@torch.no_grad()
def dvae_forecast(prior, past, horizon, latents="posterior"):
    """The prior's mean forecast of the ``horizon`` steps after ``past``.

    :param prior: a Gaussian-emission autoregressive DVAE (e.g. the shipped ``srnn_mot``).
    :param torch.Tensor past: ``(*batch, C, x_dim)`` observed steps (in the prior's units, e.g. image-normalised
        boxes), ``C >= 1``.
    :param int horizon: steps to forecast, ``>= 1``.
    :param str latents: ``"posterior"`` or ``"prior"`` (module docstring).
    :returns: ``(*batch, horizon, x_dim)`` forecast means.
    """
    if prior.emission != "gaussian" or not prior.autoregressive:
        raise ValueError(f"forecasting needs an autoregressive Gaussian prior, got {prior.name} ({prior.emission})")
    if latents not in LATENTS:
        raise ValueError(f"latents must be one of {LATENTS}, got {latents!r}")
    horizon = int(horizon)
    if horizon < 1 or past.dim() < 2 or past.shape[-2] < 1:
        raise ValueError(f"need horizon >= 1 and past shaped (*batch, C >= 1, x_dim), got {horizon}, "
                         f"{tuple(past.shape)}")
    ref = prior.x_loc
    past = torch.as_tensor(past, dtype=ref.dtype, device=ref.device)
    was_training = prior.training
    prior.eval()
    try:
        if latents == "prior":
            return _forecast_prior_latents(prior, past, horizon)
        return _forecast_posterior_latents(prior, past, horizon)
    finally:
        prior.train(was_training)


def _forecast_prior_latents(prior, past, horizon):
    C = past.shape[-2]
    eps = past.new_zeros(*past.shape[:-2], C + horizon, prior.z_dim)

    def feed(t, mean, var):
        return past[..., t, :] if t < C else mean

    means = prior.joint_stepwise(eps, feed)[3]
    return means[..., C:, :]


def _forecast_posterior_latents(prior, past, horizon):
    C = past.shape[-2]
    batch = past.shape[:-2]
    q = prior.encode(past)
    z_past = q.noiseless() if isinstance(q, SequentialNormal) else q.mean
    z = torch.cat([z_past, past.new_zeros(*batch, horizon, prior.z_dim)], -2)
    x = torch.cat([past, past.new_zeros(*batch, horizon, past.shape[-1])], -2)
    for t in range(C, C + horizon):
        params = prior.z_prior_params(z[..., : t + 1, :], x[..., : t + 1, :])
        z = z.clone()
        if params is not None:
            z[..., t, :] = params[0][..., t, :]
        mean = prior.decode(z[..., : t + 1, :], x[..., : t + 1, :])[0]
        x = x.clone()
        x[..., t, :] = mean[..., t, :]
    return x[..., C:, :]
