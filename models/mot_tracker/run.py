# SPDX-License-Identifier: Apache-2.0
"""Stage 2 (the MixDVAE refinement of every track) and the :func:`track_sequence` entry point."""


import numpy as np
import torch

from .association import Associator
from .config import DEFAULT_PRIOR, TrackerConfig
from .motion import forecast_boxes, scene_motion
from .relink import relink_tracks


# ------------------------------------------------------------------------------------------------ stage 2
def refine_tracks(tracks, prior, width, height, *, config=None, seed=0, latency=None):
    """Stage 2: smooth every track and fill its undetected frames with the MixDVAE model (one source, its
    matched detections as observations, optionally a clutter class), windows of ``config.window`` frames run as
    one batch through ``vem``. Returns ``{track id: (frames, boxes x1 y1 x2 y2 in pixels)}`` from each track's
    first to its last detection.

    :param int latency: online mode: windows of ``min(latency, window)`` frames, each reported up to the track's
        last detection *in that window*, so that a box for frame ``t`` depends on no detection after ``t +
        latency`` (``None``: offline)."""
    from ..tracking import run_tracking

    cfg = config or TrackerConfig()
    T = cfg.window if latency is None else max(1, min(int(latency), cfg.window))
    scale = np.array([width, height, width, height], float)
    obs, mask, index = [], [], []
    for track in tracks:
        first, last = track.frames[0], track.frames[-1]
        boxes = dict(zip(track.frames, track.boxes))
        start = first
        while True:  # windows overlapping by half, so that every frame is estimated away from a window's edge
            o = np.zeros((T, 1, 4))
            m = np.zeros((T, 1), bool)
            for k in range(T):
                if start + k in boxes:
                    o[k, 0], m[k, 0] = boxes[start + k] / scale, True
            if m.any():
                obs.append(o)
                mask.append(m)
                end = last + 1 - start if latency is None else int(np.flatnonzero(m[:, 0])[-1]) + 1
                index.append((track.id, start, min(T, end)))
            if start + T - 1 >= last:
                break
            start += max(1, T // 2)
    out = {t.id: ([], []) for t in tracks}
    if not obs:
        return out
    obs_t = torch.as_tensor(np.stack(obs), dtype=torch.float32)
    mask_t = torch.as_tensor(np.stack(mask))
    if cfg.dynamics not in ("dvae", "cv"):
        raise ValueError(f"dynamics must be 'dvae' or 'cv', got {cfg.dynamics!r}")
    method = "mixdvae" if cfg.dynamics == "dvae" else "vkf"
    camera = None
    if method == "mixdvae" and cfg.smoother == "velocity" and cfg.camera == "scene":
        motion = scene_motion(tracks, width, height)
        frames = np.array([start for _, start, _ in index])[:, None] + np.arange(1, T)  # (windows, T - 1)
        dense = np.zeros((frames.max() + 1, 2))  # the motion of every frame (0 where none was estimated)
        if motion:
            dense[list(motion)] = list(motion.values())
        camera = np.zeros((len(index), T, 4))
        camera[:, 1:] = np.tile(dense[frames], 2)  # (dx, dy, dx, dy) for x1, y1, x2, y2
        camera = torch.as_tensor(camera, dtype=torch.float32)
    est, _ = run_tracking(obs_t, mask_t, 1, method=method, prior=prior if method == "mixdvae" else None,
                          num_iters=cfg.iters, clutter_prob=cfg.clutter_prob, seed=seed,
                          latents=cfg.latents, sample_z=cfg.latents == "posterior", mode=cfg.smoother,
                          velocity_scale=cfg.velocity_scale, camera=camera)
    est = est[:, :, 0].numpy().astype(float) * scale
    # a smoother extrapolating across a long gap can shrink a box through zero size: keep 1 px at least
    est[..., 2:] = np.maximum(est[..., 2:], est[..., :2] + 1.0)
    # each frame from the window (among those reporting it) whose centre is nearest
    best = {}
    for (tid, start, n), boxes in zip(index, est):
        centre = start + (T - 1) / 2
        for k in range(n):
            key, dist = (tid, start + k), abs(start + k - centre)
            if key not in best or dist < best[key][0]:
                best[key] = (dist, boxes[k])
    for (tid, frame), (_, box) in sorted(best.items()):
        out[tid][0].append(frame)
        out[tid][1].append(box)
    return out


def track_sequence(frames, boxes, scores, width, height, *, frame_rate=30.0, prior=None, config=None, seed=0,
                   latency=None):
    """Track one sequence.

    :param frames: ``(n,)`` frame number of each detection; ``boxes (n, 4)`` ``x, y, w, h`` in pixels; ``scores``.
    :param prior: the DVAE trajectory prior for the refinement, re-linking and lost tracks' forecasts (default: the
        shipped real-track SRNN, :data:`~pyro_dvae.models.mot_tracker.config.DEFAULT_PRIOR`); unused when none of
        them uses it (``config.refine = False`` or ``dynamics = "cv"``, with ``relink`` and ``predict`` not
        ``"dvae"``).
    :param int latency: online mode with this latency in frames (:func:`refine_tracks`); ``None``: offline.
        Stage 1 is causal either way; re-linking (``config.relink``) runs offline only.
    :returns: ``(frames, ids, boxes x y w h, scores)`` arrays in the MOTChallenge result layout.
    """
    cfg = config or TrackerConfig()
    frames, boxes, scores = np.asarray(frames, int), np.asarray(boxes, float), np.asarray(scores, float)
    xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1) if len(boxes) else boxes.reshape(0, 4)
    if prior is None and ((cfg.refine and cfg.dynamics == "dvae") or "dvae" in (cfg.relink, cfg.predict)):
        from pyro_dvae import pretrained

        prior = pretrained.load(DEFAULT_PRIOR)
    scale = np.array([width, height, width, height], float)

    def forecaster(pasts, horizon):  # lost tracks' boxes (config.predict = "dvae")
        return forecast_boxes(pasts, horizon, "dvae", prior, scale)

    assoc = Associator(cfg, frame_rate, forecaster if cfg.predict == "dvae" else None)
    order = np.argsort(frames, kind="stable")
    frames, xyxy, scores = frames[order], xyxy[order], scores[order]
    if len(frames):
        cuts = np.flatnonzero(np.diff(frames)) + 1
        for idx in np.split(np.arange(len(frames)), cuts):
            assoc.step(int(frames[idx[0]]), xyxy[idx], scores[idx])
    tracks = assoc.finish()
    if latency is None:  # re-linking reads tracks born up to relink_gap later: offline only
        tracks, _ = relink_tracks(tracks, frame_rate, width, height, config=cfg, prior=prior)
    rows = []
    if cfg.refine and tracks:
        refined = refine_tracks(tracks, prior, width, height, config=cfg, seed=seed, latency=latency)
        for t in tracks:
            score = float(np.mean(t.scores))
            rows += [(f, t.id, b, score) for f, b in zip(*refined[t.id])]
    else:
        for t in tracks:
            rows += [(f, t.id, b, s) for f, b, s in zip(t.frames, t.boxes, t.scores)]
    if not rows:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 4)), np.zeros(0)
    rows.sort(key=lambda r: (r[0], r[1]))
    f = np.array([r[0] for r in rows], int)
    i = np.array([r[1] for r in rows], int)
    b = np.stack([r[2] for r in rows])
    b = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)
    return f, i, b, np.array([r[3] for r in rows])
