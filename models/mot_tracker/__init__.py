# SPDX-License-Identifier: Apache-2.0
"""Whole-sequence multi-object tracking with births and deaths, MixDVAE refinement of every track.

Two stages :

1. **Association with births and deaths** (:class:`Associator`), frame by frame: every track's box is predicted
   by a constant-velocity Kalman filter (a lost track's, optionally, by a forecast of the trajectory prior:
   ``TrackerConfig.predict``); detections are matched in two score tiers as in ByteTrack [1] (high-score
   detections to every track, then the low-score ones to the tracks still unmatched, so that low scores carry
   objects through partial occlusion rather than being thrown away); a high-score detection nobody explains
   starts a tentative track (a *birth*), confirmed by a second match; a track unmatched for ``max_age`` frames
   ends (a *death*).
2. **MixDVAE refinement** (:func:`refine_tracks`): each track's matched detections, over windows of
   ``window`` frames overlapping by half (each frame is taken from the window it is most central in), are the
   observations of the MixDVAE tracking model with one source (:class:`~pyro_dvae.models.tracking.TrackingModel`;
   a clutter class is available, off by default), run through the registry's ``vem``: E-W decides which
   detections the track produced, E-S smooths the track and fills the frames where it was not detected (by
   default a constant-velocity smoother steered by the DVAE prior's one-step displacement, taken as an observation
   of the velocity: ``TrackerConfig.smoother``), E-Z sets the prior's latent path (by default from the prior's own
   conditionals along the track, so that its dynamics forecast from the past: ``TrackerConfig.latents``) and the
   M-steps calibrate the noise levels to the sequence. The default prior is the SRNN trained on real pedestrian tracks
   (:data:`DEFAULT_PRIOR`). Frames after a track's last
   detection are not reported (the track had ended).

**References:**

[1] Y. Zhang et al. (2022), "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV.

[2] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for Multi-Source
    Trajectory Modeling and Separation", TMLR.

**Layout:** :mod:`.config` (:class:`TrackerConfig`), :mod:`.association` (stage 1), :mod:`.motion` (forecasts of a
track across frames without detections), :mod:`.relink` (re-linking between the stages), :mod:`.run` (stage 2 and
:func:`track_sequence`), :mod:`.files` (sequences tracked, written in the MOTChallenge result format and scored:
what ``pyro-dvae track-mot`` runs). The tracking model it refines with is :mod:`pyro_dvae.models.tracking` (the window
protocol's model).
"""

from .association import Associator, Track
from .config import DEFAULT_PRIOR, TrackerConfig
from .run import refine_tracks, track_sequence

__all__ = [
    "Associator",
    "DEFAULT_PRIOR",
    "Track",
    "TrackerConfig",
    "refine_tracks",
    "track_sequence",
]
