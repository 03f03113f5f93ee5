# SPDX-License-Identifier: Apache-2.0
"""The U-ND training loss and the no-reference measure of its stopping rule, shared by
:func:`~pyro_dvae.models.enhancement.training.train_noise` and its engine task
(:class:`~pyro_dvae.models.enhancement.task.NoiseTask`)."""

import torch
from pyro.infer import TraceMeanField_ELBO

from .config import PLATES


def noise_loss(model, power, elbo=None):
    """Negative ELBO per time-frequency bin of noisy power ``(B, T, F)`` (a differentiable scalar)."""
    elbo = elbo or TraceMeanField_ELBO(max_plate_nesting=PLATES)
    return elbo.differentiable_loss(model.model, model.guide, power) / power.numel()


@torch.no_grad()
def kept_parts(model, x, seed=1234):
    """``[sum mask^2 x, sum x]`` of a validation batch (:func:`~pyro_dvae.models.enhancement.kept_energy`'s
    parts, fixed posterior draws that leave the validation loss's random stream alone)."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        mask = model.wiener_gain(x, 2)
    return torch.stack([(mask**2 * x).sum(), x.sum()]).double()


def kept_share(parts):
    """The share of the validation energy the speech estimate keeps, from the summed :func:`kept_parts`."""
    return float(parts[0] / parts[1].clamp_min(1e-300))
