# SPDX-License-Identifier: Apache-2.0
"""MixDVAE for multi-object tracking.

Model, for ``B`` sequences of ``T`` frames with ``N`` sources and up to ``K`` detections per frame:

- each source ``n``: a DVAE prior over its box sequence, ``p(z_n) p(s_{1:T,n} | z_n)`` (any prior of the
  zoo, see :meth:`~pyro_dvae.priors.base.DVAE.latent_sequence`), its dynamics variance scaled by a
  per-coordinate factor ``alpha`` fitted to the data (:class:`TrackingModel`);
- each detection: ``w_tk ~ Categorical(pi)`` over the ``N`` sources plus, optionally, a clutter class
  for detections no source produced;
- ``o_tk | w_tk = n, s ~ likelihood(s_tn)`` (default :class:`~pyro_dvae.likelihoods.GaussianBoxes`),
  ``o_tk | w_tk = clutter ~`` a broad density; missing detections are masked.

Plates: ``batch`` x ``sources`` for the sequences, ``batch_det`` x ``time`` x ``detections`` for the
assignments (``w`` is marked for parallel enumeration, so ``svi`` picks ``TraceEnum_ELBO``).

The structured guide :class:`TrackingGuide` has the MixDVAE blocks, iterated by the registry's ``vem``:
E-W (closed-form responsibilities), E-Z (the DVAE encoder on the current source means), E-S (closed-form
Gaussian: forward pass + backward smoothing, :mod:`pyro_dvae.smoothing`), and the model's M-step for the
observation noise. Replacing the dynamics by a constant-velocity Kalman smoother gives the VKF baseline.

**References:**

[1] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for
    Multi-Source Trajectory Modeling and Separation", TMLR.
[2] Y. Ban, X. Alameda-Pineda, L. Girin, R. Horaud (2021), "Variational Bayesian Inference for
    Audio-Visual Tracking of Multiple Speakers", IEEE TPAMI (VKF).

**Layout:** :mod:`.config` (:class:`TrackingConfig`), :mod:`.model` (the Pyro model and its M-steps), :mod:`.guide`
(the VEM blocks, the guide and its initialisation), :mod:`.run` (:func:`run_tracking`), :mod:`.benchmark` (the
MOT-3T protocol of ``pyro-dvae track``: windows of MOTChallenge sequences, every method scored). The whole-sequence
tracker with births and deaths (``pyro-dvae track-mot``) is :mod:`pyro_dvae.models.mot_tracker`.
"""

from .config import METHODS, TrackingConfig
from .guide import AssignmentBlock, LatentBlock, SourceBlock, TrackingGuide, greedy_tracks
from .model import (
    ACCEL_VAR,
    BOX,
    DYNAMICS_SCALE_RANGE,
    AccelerationNoiseMStep,
    DynamicsNoiseMStep,
    LikelihoodMStep,
    ObservationNoiseMStep,
    TrackingModel,
    check_observations,
)
from .run import check_tracking_prior, load_tracking_prior, run_tracking, windows_to_tensors

__all__ = [
    "ACCEL_VAR",
    "AccelerationNoiseMStep",
    "AssignmentBlock",
    "BOX",
    "DYNAMICS_SCALE_RANGE",
    "DynamicsNoiseMStep",
    "LatentBlock",
    "LikelihoodMStep",
    "METHODS",
    "ObservationNoiseMStep",
    "SourceBlock",
    "TrackingConfig",
    "TrackingGuide",
    "TrackingModel",
    "check_observations",
    "check_tracking_prior",
    "greedy_tracks",
    "load_tracking_prior",
    "run_tracking",
    "windows_to_tensors",
]
