# SPDX-License-Identifier: Apache-2.0
"""Motion forecasts of a track across frames without detections, shared by the association (stage 1, a lost
track's predicted box) and re-linking (:mod:`.relink`), and the scene's common image motion (:func:`scene_motion`),
which the refinement's prior reads each track relative to.

A forecast runs at about 7.5 fps whatever the sequence's rate: the track is subsampled by the largest integer factor
keeping it at 7 fps or more (:func:`pyro_dvae.data.tracks.rate_factors`), where the real-track DVAE
(``srnn_mot_real``) forecasts better than constant velocity at every horizon (BENCHMARKS.md, motion forecasting).
``"dvae"`` rolls the trajectory prior forward from the track's last ``context`` subsampled boxes
(:func:`pyro_dvae.forecast.dvae_forecast`); ``"cv"`` extends the mean velocity of those boxes.
"""

import numpy as np
import torch

from pyro_dvae.data.tracks import rate_factors

FORECASTS = ("dvae", "cv")


def subsampling_factor(frame_rate):
    """Frames per forecast step: the largest integer factor keeping ``frame_rate`` at 7 fps or more."""
    return rate_factors(frame_rate)[-1]


def history(track, factor, context):
    """The track's boxes at its last frame and every ``factor`` frames before it (``context`` of them at most,
    linearly interpolated between its detections), oldest first: ``(C, 4)`` ``x1, y1, x2, y2`` pixels."""
    frames = np.asarray(track.frames, float)
    boxes = np.stack(track.boxes)
    last = frames[-1]
    steps = [last - factor * k for k in range(context) if last - factor * k >= frames[0]]
    at = np.array(steps[::-1])
    return np.stack([np.interp(at, frames, boxes[:, j]) for j in range(4)], 1)


def forecast_boxes(pasts, horizon, method, prior=None, scale=None):
    """Forecasts ``(N, horizon, 4)`` (pixels) of ``pasts``, a list of ``(C_i, 4)`` pixel histories (left-padded by
    repeating their first box to a common length), by ``"dvae"`` (``prior``; boxes divided by ``scale = (W, H,
    W, H)``) or ``"cv"``."""
    if method not in FORECASTS:
        raise ValueError(f"forecast method must be one of {FORECASTS}, got {method!r}")
    if method == "cv":  # each track's mean step over its own boxes, carried on
        last = np.stack([p[-1] for p in pasts])
        step = np.stack([(p[-1] - p[0]) / max(len(p) - 1, 1) for p in pasts])
        return last[:, None] + np.arange(1, horizon + 1, dtype=float)[None, :, None] * step[:, None]
    from pyro_dvae.forecast import dvae_forecast

    C = max(len(p) for p in pasts)
    past = np.stack([np.concatenate([np.repeat(p[:1], C - len(p), 0), p]) for p in pasts])
    x = torch.as_tensor(past / scale, dtype=prior.x_loc.dtype)
    return dvae_forecast(prior, x, horizon).double().numpy() * scale


def box_at(path, d):
    """The box ``d`` (fractional, ``>= 0``) forecast steps along ``path (S + 1, 4)`` (step 0: the last observed
    box), linear between steps and beyond the last one."""
    k = min(int(np.floor(d)), len(path) - 2)
    return path[k] + (d - k) * (path[k + 1] - path[k])


def scene_motion(tracks, width, height, min_tracks=3):
    """The image motion common to the tracks of each frame (a moving camera moves every box together), in
    normalised units: ``{frame: (dx, dy)}``.

    For frame ``f``, each track detected at ``f - 1`` and ``f`` gives the displacement of its box centre; the
    estimate is their median ``c``, shrunk by their spread around it, ``c |c|^2 / (|c|^2 + s^2)`` with ``s^2`` the
    median squared distance to ``c``: tracks moving together (a camera's pan or shake) keep it whole; walkers going
    their own ways (a static camera) shrink it towards 0. Frames with fewer than ``min_tracks`` such tracks get 0.

    :param tracks: the association's tracks (``frames``, ``boxes`` ``x1, y1, x2, y2`` pixels).
    :returns: dict of ``(2,)`` arrays for the frames with an estimate (absent frames: no motion).
    """
    steps = {}
    for track in tracks:
        frames, boxes = np.asarray(track.frames), np.stack(track.boxes)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / np.array([width, height], float)
        follow = np.flatnonzero(np.diff(frames) == 1) + 1
        for i in follow:
            steps.setdefault(int(frames[i]), []).append(centre[i] - centre[i - 1])
    motion = {}
    for frame, d in steps.items():
        if len(d) < min_tracks:
            continue
        d = np.stack(d)
        c = np.median(d, 0)
        spread = np.median(((d - c) ** 2).sum(-1))
        norm = c @ c
        motion[frame] = c * norm / (norm + spread) if norm > 0 else np.zeros(2)
    return motion
