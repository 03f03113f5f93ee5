# SPDX-License-Identifier: Apache-2.0
"""Swapping guides: the same Pyro model under four variational families.

A prior of the zoo is a Pyro model (``prior.model``) with its own amortised guide (``prior.guide``, the
encoder). :func:`pyro_dvae.inference.run` takes any guide: a callable, or an autoguide by name. Here the
shipped SRNN trajectory prior explains four synthetic trajectories, and the negative ELBO of each guide after
the same number of SVI steps tells how good a posterior each family finds.

Two things to keep in mind when doing this with a trained prior:

- freeze it (``requires_grad_(False)``) unless you mean to fine-tune it: SVI would otherwise train the
  prior's decoder (and, with ``prior.guide``, its encoder) together with the guide;
- work on a copy (``copy.deepcopy``): ``pretrained.load()`` returns a new module each call, but a module you
  share with other code is changed in place by training.
"""

import copy

import pyro
import torch

from pyro_dvae import inference, pretrained
from pyro_dvae.data.synthetic import synthetic_trajectories


def main(num_steps=100):
    prior = copy.deepcopy(pretrained.load()).requires_grad_(False)  # the shipped SRNN, frozen
    x = torch.tensor(synthetic_trajectories(4, T=30, seed=3))       # (4, 30, 4) boxes
    guides = {"auto-delta": "auto-delta", "auto-normal": "auto-normal",
              "auto-lowrank-multivariate-normal": "auto-lowrank-multivariate-normal", "amortised": prior.guide}
    losses = {}
    for name, guide in guides.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        result = inference.run("svi", prior.model, guide, x, num_steps=num_steps, lr=0.02)
        losses[name] = sum(result.losses[-10:]) / 10  # the negative ELBO, averaged over the last 10 steps
        print(f"{name:34s} -ELBO {losses[name]:10.1f}   {1000 * result.seconds_per_iter:.1f} ms per step")
    return losses


if __name__ == "__main__":
    main()
