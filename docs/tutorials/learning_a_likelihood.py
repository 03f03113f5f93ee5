# SPDX-License-Identifier: Apache-2.0
"""Learning a likelihood, and a model of your own around a prior.

A likelihood may carry parameters of its own, registered the Pyro / torch way: a ``PyroParam`` of a
``PyroModule`` (as here) or an ``nn.Parameter``. :func:`~pyro_dvae.models.tracking.run_tracking` registers the
likelihood with ``pyro.module("likelihood", ...)``, so ``svi`` / ``enum-svi`` fit its parameters with the guide
(``vem`` by a gradient M-step, for likelihoods with closed-form E-steps). Here a Laplace box likelihood learns
its noise scale from detections simulated with a known one.

The same likelihood then goes into a model of your own around the shipped trajectory prior:
``prior.latent_sequence`` gives the sources, the likelihood scores their detections. The prior's dynamics
variance is that of its training motion, much too small for the fast crossing scenes (a warning says so when
``latent_sequence`` gets no ``var_scale``); :func:`~pyro_dvae.smoothing.calibrate_var_scale` fits it to rough
tracks of the data (the detections interpolated over their gaps). The trajectory RMSE shows what it buys against
linear interpolation of the detections.
"""

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoNormal, init_to_value
from pyro.nn import PyroModule, PyroParam
from torch.distributions import constraints

from pyro_dvae import inference, pretrained
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
from pyro_dvae.likelihoods import BoxLikelihood, box_size
from pyro_dvae.models.tracking import run_tracking
from pyro_dvae.smoothing import calibrate_var_scale

TRUE_RATIO = 0.05  # the Laplace scale of the simulated detections, as a fraction of the box width / height


class LaplaceBoxes(PyroModule[BoxLikelihood]):
    """Laplace box noise whose scale-to-size ratio is learnt (a positive ``PyroParam``)."""

    def __init__(self, ratio=0.15):
        super().__init__()
        self.ratio = PyroParam(torch.tensor(ratio), constraints.positive)

    def dist(self, loc, obs):
        return dist.Laplace(loc, self.ratio * box_size(obs)).to_event(1)


def laplace_detections(gt, seed=0, **options):
    """Detections of ``gt (B, T, N, 4)`` with Laplace noise of scale ``TRUE_RATIO`` x box size (plus drops and
    occlusions: :func:`~pyro_dvae.data.synthetic.simulate_detections` ``options``)."""
    w, h = gt[..., 2] - gt[..., 0], gt[..., 3] - gt[..., 1]
    noise = np.random.default_rng(seed).laplace(size=gt.shape) * TRUE_RATIO * np.stack([w, h, w, h], -1)
    return simulate_detections(gt + noise, noise=0.0, seed=seed + 1, **options)


def interpolate(obs, mask):
    """Each source's detections ``(..., T, 4)`` linearly interpolated over its gaps (held at the ends)."""
    out, t = obs.copy(), np.arange(obs.shape[-2])
    for idx in np.ndindex(mask.shape[:-1]):
        seen = mask[idx]
        for d in range(obs.shape[-1]):
            out[idx][:, d] = np.interp(t, t[seen], obs[idx][seen, d])
    return out


def own_model(prior, likelihood, var_scale):
    """A model of your own: one source per track (identities known), its detections scored by ``likelihood``."""

    def model(obs, mask):  # (B, N, T, 4) detections of each source, (B, N, T) which were seen
        pyro.module("likelihood", likelihood)  # trainable parameters would be fitted with the guide's
        with pyro.plate("windows", obs.shape[0], dim=-2), pyro.plate("sources", obs.shape[1], dim=-1):
            s = prior.latent_sequence("s", obs, var_scale=var_scale)["s"]
            pyro.sample("o", likelihood.dist(s, obs).mask(mask).to_event(1), obs=obs)

    return model


def fit_own_model(model, obs, mask, rough, z0, num_steps=500):
    """Fit a model of :func:`own_model` by SVI from the rough tracks and their encoding; returns the median of
    ``s``. (Box coordinates vary by 1e-3 from frame to frame: Adam's step size must be as small.)"""
    guide = AutoNormal(model, init_scale=1e-3, init_loc_fn=init_to_value(values={"s": rough, "z": z0}))
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    inference.run("svi", model, guide, obs, mask, num_steps=num_steps, lr=1e-3)
    return guide.median(obs, mask)["s"].detach()


def main():
    prior = pretrained.load().requires_grad_(False)  # the shipped SRNN trajectory prior, frozen
    results = {"true_ratio": TRUE_RATIO}

    # 1. the tracker learns the likelihood's noise scale (three crossing scenes, unordered detections)
    gt = np.stack([crossing_scene(T=30, seed=s) for s in range(3)])
    obs, mask, _ = laplace_detections(gt, drop=0.1)
    likelihood = LaplaceBoxes(0.15)  # starts at three times the truth
    run_tracking(torch.tensor(obs, dtype=torch.float32), torch.tensor(mask), num_sources=3, prior=prior,
                 algo="enum-svi", num_iters=300, lr=0.005, likelihood=likelihood)
    results["tracker_ratio"] = float(likelihood.ratio.detach())
    print(f"noise ratio: true {TRUE_RATIO:.3f}, learnt by run_tracking (enum-svi) {results['tracker_ratio']:.3f}")

    # 2. a model of your own around the prior, with that likelihood (its ratio now fixed), on the crossing scenes
    # with occlusions; the identities are known
    likelihood.requires_grad_(False).eval()  # frozen (in eval mode pyro.module skips it without a warning)
    gt = np.stack([crossing_scene(T=60, seed=s) for s in range(4)])
    obs, mask, source = laplace_detections(gt, drop=0.1, occlusions=1.0, max_occlusion=20)
    order = np.argsort(source, -1)  # slot -> track: put each track's detections in its own row
    obs = np.take_along_axis(obs, order[..., None], 2).transpose(0, 2, 1, 3)  # (B, N, T, 4)
    mask = np.take_along_axis(mask, order, 2).transpose(0, 2, 1)  # (B, N, T)
    truth = gt.transpose(0, 2, 1, 3)
    rough = torch.tensor(interpolate(obs, mask), dtype=torch.float32)
    obs, mask = torch.tensor(obs, dtype=torch.float32), torch.tensor(mask)
    rmse = lambda est: float(np.sqrt(((np.asarray(est) - truth) ** 2).mean()))  # noqa: E731
    results["rmse"] = {"linear interpolation": rmse(rough)}
    var_scale = calibrate_var_scale(prior, rough)
    print(f"calibrate_var_scale: the prior's dynamics variance x {np.round(var_scale.numpy(), 1)}")
    with torch.no_grad():
        z0 = prior.encode(rough).noiseless()
    for name, scale in (("prior's own variance", 1.0), ("calibrated", var_scale)):  # 1.0: no warning
        results["rmse"][name] = rmse(fit_own_model(own_model(prior, likelihood, scale), obs, mask, rough, z0))
    for name, value in results["rmse"].items():
        print(f"trajectory RMSE, {name:22s} {value:.5f}")
    return results


if __name__ == "__main__":
    main()
