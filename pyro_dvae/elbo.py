# SPDX-License-Identifier: Apache-2.0
"""The training loss of a DVAE prior: the negative ELBO per valid time step (used by
:mod:`pyro_dvae.training` and by the engine's task :mod:`pyro_dvae.prior_task`; imports go one way, from them
to here).

The ELBO is that of :meth:`DVAE.model` / :meth:`DVAE.guide` under :class:`~pyro.infer.TraceMeanField_ELBO`
(per-step analytic KL, see :mod:`pyro_dvae.priors.distributions`); the latent sites alone are scaled by
``kl_scale`` (:func:`pyro_dvae.handlers.scale_sites`: the KL warm-up).
"""

from pyro.infer import TraceMeanField_ELBO

from .handlers import scale_sites


def elbo_loss(prior, x, mask=None, kl_scale=1.0, ss_prob=0.0):
    """Negative ELBO per valid time step (a differentiable scalar).

    :param DVAE prior: the prior.
    :param x: ``(N, T, x_dim)`` sequences; ``mask (N, T)`` their valid steps (``None``: all).
    :param float kl_scale: weight of the latent sites (the KL warm-up).
    :param float ss_prob: scheduled-sampling probability of autoregressive priors.
    """
    sites = prior.latent_sites
    model = scale_sites(prior.model, scale=kl_scale, sites=sites)
    guide = scale_sites(prior.guide, scale=kl_scale, sites=sites)
    loss = TraceMeanField_ELBO().differentiable_loss(model, guide, x, mask, ss_prob)
    steps = mask.sum() if mask is not None else x.shape[:-1].numel()
    return loss / steps
