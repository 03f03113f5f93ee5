# SPDX-License-Identifier: Apache-2.0
"""Tracking a batch of windows: the :func:`run_tracking` entry point."""


import numpy as np
import pyro
import torch
from pyro import poutine

from pyro_dvae.likelihoods import GaussianBoxes

from .guide import TrackingGuide, greedy_tracks
from .model import BOX, DynamicsNoiseMStep, TrackingModel, check_observations

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
