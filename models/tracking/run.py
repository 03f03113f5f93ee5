# SPDX-License-Identifier: Apache-2.0
"""Tracking a batch of windows: the :func:`run_tracking` entry point, and :func:`load_tracking_prior` (a
checkpoint or shipped name of a box-trajectory prior, checked before any work)."""

import os
from dataclasses import replace

import numpy as np
import pyro
import torch
from pyro import poutine

from pyro_dvae.handlers import frozen
from pyro_dvae.likelihoods import GaussianBoxes

from .config import TrackingConfig
from .guide import TrackingGuide, greedy_tracks
from .model import BOX, DynamicsNoiseMStep, TrackingModel, check_observations


# ----------------------------------------------------------------------------------------------- priors
def check_tracking_prior(prior, option="--prior", latents=True):
    """Fail unless ``prior`` models box trajectories: Gaussian emission, ``x_dim`` 4 and, with ``latents``, latent
    variables (a DVAE for MixDVAE, not the Deep AR baseline). The one-line :class:`ValueError` names ``option``.
    Returns ``prior``."""
    name = getattr(prior, "name", type(prior).__name__)
    x_dim, emission = getattr(prior, "x_dim", None), getattr(prior, "emission", None)
    if x_dim != BOX or emission != "gaussian":
        raise ValueError(f"{option}: a {emission!r}-emission {name} prior with x_dim={x_dim} cannot model box "
                         f"trajectories; tracking needs a gaussian prior with x_dim={BOX} (e.g. the shipped srnn_mot)")
    if latents and not getattr(prior, "latent_sites", True):
        raise ValueError(f"{option}: a {name!r} model has no latent variables; MixDVAE needs a DVAE prior (e.g. the "
                         "shipped srnn_mot)")
    return prior


def load_tracking_prior(prior, option="--prior", expect=None):
    """A box-trajectory prior, checked before any work (:func:`check_tracking_prior`; the messages name
    ``option``).

    :param prior: a loaded prior (kept), a checkpoint path, or the name of a shipped prior (``"srnn_mot"``,
        ``"deepar_mot"``: :func:`pyro_dvae.pretrained.resolve`).
    :param str option: the command-line option that gave it, for the messages.
    :param str expect: the prior name the checkpoint must hold (``"deepar"`` for the Deep AR baseline, which then
        needs no latent variables); ``None``: any DVAE with latent variables.
    """
    from pyro_dvae import pretrained, priors

    if isinstance(prior, (str, os.PathLike)):
        arg = os.fspath(prior)
        path = pretrained.resolve(arg)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{option} {arg}: no such checkpoint file and no shipped prior of that name "
                                    f"(shipped: {', '.join(pretrained.shipped())})")
        try:
            prior = priors.load(path, expect=expect)
        except ValueError as e:
            raise ValueError(f"{option} {arg}: {e}") from None
    return check_tracking_prior(prior, option, latents=expect != "deepar")


# --------------------------------------------------------------------------------------------- running
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


def run_tracking(obs, obs_mask, num_sources, *, prior=None, seeds=None, camera=None, config=None, **overrides):
    """Track the sources of a batch of windows.

    Example::

        est, result = run_tracking(obs, mask, 3, prior=pretrained.load(), num_iters=20)
        est, result = run_tracking(obs, mask, 3, config=TrackingConfig(method="vkf", num_iters=20))
        est, result = run_tracking(obs, mask, 3, prior=pretrained.load(), algo="enum-svi", guide="auto-delta")

    :param obs: ``(B, T, K, 4)`` normalised detections; :param obs_mask: ``(B, T, K)``.
    :param int num_sources: ``N``, the sources tracked in every window.
    :param prior: the DVAE prior (``method="mixdvae"``) or the Deep AR model (``"deepar"``); unused by ``"vkf"``.
        Its weights are frozen for the run and unchanged after it, unless ``fine_tune_prior=True``
        (:class:`TrackingConfig`).
    :param seeds: optional first-frame boxes of the sources ``(B, N, 4)`` for the initialisation.
    :param camera: optional ``(B, T, 4)`` image motion common to each window's scene per step, in the units of
        ``obs`` (a moving camera's; :func:`~pyro_dvae.models.mot_tracker.motion.scene_motion`), read by the
        ``mode="velocity"`` E-S step (:class:`~pyro_dvae.models.tracking.guide.SourceBlock`).
    :param TrackingConfig config: the settings (method, algorithm, iterations, likelihood, ...).
    :param overrides: fields of :class:`TrackingConfig` replacing those of ``config`` (``method="vkf"``,
        ``num_iters=10``, ...).
    :returns: ``(estimates (B, T, N, 4), InferenceResult)``.
    """
    cfg = replace(config, **overrides) if config is not None else TrackingConfig(**overrides)
    method = cfg.method
    if method != "vkf":
        if prior is None:
            raise ValueError(f"method {method!r} needs a prior")
        if (method == "deepar") != (not prior.latent_sites):
            want = "a deepar model (no latent variables)" if method == "deepar" else "a DVAE prior with latents"
            raise ValueError(f"method {method!r} needs {want}, got a {prior.name!r} prior")
    obs, obs_mask = check_observations(obs, obs_mask)
    with frozen(prior, enabled=not cfg.fine_tune_prior):  # the prior passed in keeps its weights (fine_tune_prior)
        return _run_tracking(obs, obs_mask, num_sources, prior, seeds, cfg, camera)


def _run_tracking(obs, obs_mask, num_sources, prior, seeds, cfg, camera=None):
    """:func:`run_tracking` on checked inputs under the resolved config ``cfg``."""
    from pyro_dvae import inference

    method = cfg.method
    pyro.set_rng_seed(cfg.seed)
    likelihood = cfg.likelihood if cfg.likelihood is not None else GaussianBoxes(cfg.ratio)
    model = TrackingModel(prior if method != "vkf" else None, num_sources, likelihood=likelihood,
                          clutter_prob=cfg.clutter_prob).to(obs.device)  # the likelihood's buffers too (CUDA alike)
    if cfg.algo == "vem":
        if not likelihood.closed_form:
            raise ValueError(f"{type(likelihood).__name__} has no closed-form E-steps: use algo='svi' or 'enum-svi'")
        guide = TrackingGuide(model, dynamics="cv" if method == "vkf" else "dvae", sample_z=cfg.sample_z,
                              mode=cfg.mode, latents=cfg.latents, velocity_scale=cfg.velocity_scale)
        guide.initialise(obs, obs_mask, seeds=seeds, camera=camera)
        with torch.no_grad():
            res = inference.run("vem", model, guide, obs, obs_mask, num_iters=cfg.num_iters)
        est = guide["s"].mean
    else:
        if camera is not None:
            raise ValueError(f"camera motion is read by algo='vem' with mode='velocity', not algo={cfg.algo!r}")
        from pyro.infer.autoguide import AutoNormal, init_to_value

        init_s = greedy_tracks(obs, obs_mask, num_sources, seeds=seeds)
        with torch.no_grad():
            z0 = model.prior.encode(init_s).sample()
        if any(isinstance(step, DynamicsNoiseMStep) for step in model.m_steps):
            model.calibrate_dynamics(init_s, z0)
        if cfg.guide is None:
            auto = AutoNormal(poutine.block(model.model, hide=["w"]), init_scale=1e-3,
                              init_loc_fn=init_to_value(values={"s": init_s, "z": z0}))
        else:  # a named autoguide or a factory starts where the default does; a callable guide is used as it is
            auto = inference.svi.build_guide(cfg.guide, model.model, ["w"], init_values={"s": init_s, "z": z0},
                                             init_scale=1e-3, model_args=(obs, obs_mask))
        pyro.clear_param_store()
        res = inference.run(cfg.algo, model.model, auto, obs, obs_mask, num_steps=cfg.num_iters, lr=cfg.lr)
        with torch.no_grad():
            est = inference.svi.guide_estimate(auto, "s", obs, obs_mask)
    return est.detach().permute(0, 2, 1, 3), res
