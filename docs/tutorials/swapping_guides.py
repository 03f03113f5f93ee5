# SPDX-License-Identifier: Apache-2.0
"""Swapping guides: the same Pyro model under several variational families, by name, then a task's guide
through its entry point.

A prior of the zoo is a Pyro model (``prior.model``) with its own amortised guide (``prior.guide``, the
encoder). :func:`pyro_dvae.inference.run` takes any guide: a callable, or an autoguide by name. Here the
shipped SRNN trajectory prior explains four synthetic trajectories, and the negative ELBO of each guide after
the same number of SVI steps tells how good a posterior each family finds.

A task model takes its guide the same way: ``run_tracking(..., algo="svi", guide=...)`` (and
``run_separation`` / ``enhance``, their configs' ``guide``) builds the named autoguide on the tracking model with
the assignment ``w`` summed out exactly, starts it where the default guide starts (the greedy tracks) and reads
the tracks from its posterior median; the second part scores each guide on the crossing scene (MOTA).

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
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections, synthetic_trajectories
from pyro_dvae.metrics import tracking_metrics
from pyro_dvae.models.tracking import run_tracking


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

    # the tracking model, its guide swapped through run_tracking (None: the default AutoNormal guide)
    gt = crossing_scene(T=30)[None]  # one window: (1, T, N=3, 4) boxes
    obs, mask, _ = simulate_detections(gt, noise=0.05, drop=0.1, seed=1)
    obs, mask = torch.tensor(obs, dtype=torch.float32), torch.tensor(mask)
    mota = {}
    for name in (None, "auto-delta", "auto-diagonal-normal", "auto-lowrank-multivariate-normal"):
        est, result = run_tracking(obs, mask, 3, prior=prior, algo="enum-svi", num_iters=30, guide=name)
        mota[name or "default"] = tracking_metrics(list(gt), list(est.numpy()))["mota"]
        print(f"tracking, {name or 'default':32s} MOTA {mota[name or 'default']:.3f}   "
              f"{1000 * result.seconds_per_iter:.1f} ms per step")
    return {"elbo": losses, "mota": mota}


if __name__ == "__main__":
    main()
