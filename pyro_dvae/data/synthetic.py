# SPDX-License-Identifier: Apache-2.0
"""Synthetic bounding-box trajectories for pre-training motion priors.

Each track is a box ``(x1, y1, x2, y2)`` in image coordinates normalised to ``[0, 1]`` (origin top
left, ``y`` pointing down, ``x2 = x1 + w``, ``y2 = y1 + h``). The position of the top-left corner
moves piecewise in time: 0-2 split points (multiples of 3 frames) cut each coordinate into segments
that are static, linear, parabolic or sinusoidal with probabilities 0.15 / 0.3 / 0.3 / 0.25, each
segment continuing from where the previous one ended. The width follows one static / linear /
parabolic segment (0.25 / 0.6 / 0.15) from ``w0 ~ LogNormal(-3.8, 0.7)``; the height is ``r * w``
with a per-track aspect ``r ~ N(5.26, 0.77^2)`` (a 2.96 pixel aspect ratio in a 16:9 frame). Tracks
that leave the image, or move any coordinate by more than 0.03 between two frames, are rejected
and redrawn.

The segment statistics follow the MixDVAE synthetic generator (velocity / acceleration / frequency
standard deviations 1.25e-3 / 3.7e-5 / 3e-3 for x and 6e-4 / 2e-5 / 1e-3 for y, phase std 3.2);
width trends (1.5e-4 per frame, 4e-6 per frame^2) are our choice. Any sequence length works.

**References:**

[1] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for
    Multi-Source Trajectory Modeling and Separation", TMLR.
"""

import numpy as np

BOX_DIM = 4
MAX_STEP = 0.03  # largest per-frame change of any coordinate; faster tracks are redrawn
_COORD = {"x": (1.25e-3, 3.7e-5, 3e-3), "y": (6e-4, 2e-5, 1e-3)}
_TYPE_P = (0.15, 0.3, 0.3, 0.25)  # static, linear, parabola, sinusoid
_PHI_STD = 3.2
_WIDTH_P = (0.25, 0.6, 0.15)
_WIDTH_V, _WIDTH_A = 1.5e-4, 4e-6


def _segment_value(kind, p0, tau, v, a, w, phi):
    sin_phi = np.where(np.abs(np.sin(phi)) < 1e-3, 1e-3, np.sin(phi))
    return np.select(
        [kind == 0, kind == 1, kind == 2],
        [p0 + 0 * tau, p0 + v * tau, p0 + v * tau + a * tau**2],
        p0 / sin_phi * np.sin(w * tau + phi),
    )


def _piecewise(rng, n, T, p0, stds, speed):
    sv, sa, sw = stds
    t = np.arange(T)[None, :]
    cands = np.arange(3, T - 2, 3)
    starts = np.full((n, 3), T)
    starts[:, 0] = 0
    if len(cands):
        k = rng.integers(0, min(2, len(cands)) + 1, n)
        keys = rng.random((n, len(cands))).argsort(1)[:, :2]
        picks = np.sort(np.where(np.arange(keys.shape[1])[None] < k[:, None], cands[keys], T), 1)
        starts[:, 1 : 1 + picks.shape[1]] = picks
    kind = rng.choice(4, (n, 3), p=_TYPE_P)
    v, a = rng.normal(0, sv, (n, 3)) * speed, rng.normal(0, sa, (n, 3)) * speed**2
    w, phi = rng.normal(0, sw, (n, 3)) * speed, rng.normal(0, _PHI_STD, (n, 3))
    out = np.empty((n, T))
    p0 = p0.copy()
    for s in range(3):
        start = starts[:, s : s + 1]
        end = starts[:, s + 1 : s + 2] if s < 2 else np.full((n, 1), T)
        args = (kind[:, s : s + 1], p0[:, None])
        params = (v[:, s : s + 1], a[:, s : s + 1], w[:, s : s + 1], phi[:, s : s + 1])
        val = _segment_value(*args, t - start, *params)
        out = np.where((t >= start) & (t < end), val, out)
        p0 = _segment_value(*args, end - start, *params)[:, 0]
    return out


def _draw(rng, n, T, frame_aspect, speed_range):
    t = np.arange(T)[None, :]
    w0 = rng.lognormal(-3.8, 0.7, n)
    kind = rng.choice(3, n, p=_WIDTH_P)
    vw, aw = rng.normal(0, _WIDTH_V, n)[:, None], rng.normal(0, _WIDTH_A, n)[:, None]
    width = np.select([kind[:, None] == 0, kind[:, None] == 1], [w0[:, None] + 0 * t, w0[:, None] + vw * t],
                      w0[:, None] + vw * t + aw * t**2)
    if frame_aspect is None:
        ratio = rng.normal(5.26, 0.77, n)[:, None]
    else:  # pixel aspect of a pedestrian times the frame's width / height
        ratio = (rng.normal(2.96, 0.43, n) * rng.uniform(frame_aspect[0], frame_aspect[1], n))[:, None]
    speed = np.exp(rng.uniform(np.log(speed_range[0]), np.log(speed_range[1]), n))[:, None]
    height = ratio * width
    x0 = rng.uniform(0, 1, n) * np.clip(1 - width[:, 0], 0, None)
    y0 = rng.uniform(0, 1, n) * np.clip(1 - height[:, 0], 0, None)
    x = _piecewise(rng, n, T, x0, _COORD["x"], speed)
    y = _piecewise(rng, n, T, y0, _COORD["y"], speed)
    boxes = np.stack([x, y, x + width, y + height], -1)
    ok = (width > 0).all(1) & (ratio[:, 0] > 0) & ((boxes >= 0) & (boxes <= 1)).all((1, 2))
    if T > 1:  # a pedestrian does not cross a tenth of the frame between two frames
        ok &= (np.abs(np.diff(boxes, axis=1)) <= MAX_STEP).all((1, 2))
    return boxes[ok]


def synthetic_trajectories(n, T=60, seed=0, dtype=np.float32, frame_aspect=None, speed_range=(1.0, 1.0)):
    """Draw ``n`` synthetic box tracks of ``T`` frames.

    :param int n: number of tracks.
    :param int T: frames per track (any length >= 1).
    :param int seed: random seed (the same seed gives the same tracks).
    :param tuple frame_aspect: ``None`` for MixDVAE's 16:9 statistics (``h / w ~ N(5.26, 0.77^2)`` in
        normalised units); or a ``(low, high)`` range of frame width/height ratios (e.g. ``(4/3, 16/9)``):
        the normalised aspect is then a pixel aspect ``N(2.96, 0.43^2)`` times a uniform frame ratio.
    :param tuple speed_range: per-track factor on velocities, accelerations and frequencies, drawn
        log-uniformly in this range (covers frame rates from 7 to 30 fps with e.g. ``(0.7, 4)``).
    :returns: array ``(n, T, 4)`` of normalised ``(x1, y1, x2, y2)`` boxes.
    """
    if n < 1 or T < 1:
        raise ValueError(f"need n >= 1 and T >= 1, got n={n}, T={T}")
    rng = np.random.default_rng(seed)
    chunks, got = [], 0
    for _ in range(1000):
        batch = _draw(rng, max(2 * (n - got), 64), T, frame_aspect, speed_range)
        chunks.append(batch)
        got += len(batch)
        if got >= n:
            return np.concatenate(chunks)[:n].astype(dtype)
    raise RuntimeError("synthetic trajectory rejection sampling did not converge")  # pragma: no cover


def simulate_detections(gt, noise=0.05, drop=0.1, seed=0, keep_first=5, occlusions=0.0, max_occlusion=20):
    """Detections simulated from ground-truth boxes, with unordered slots.

    :param gt: ``(B, T, N, 4)`` boxes ``(x1, y1, x2, y2)``.
    :param float noise: Gaussian noise std as a fraction of the box width (x) / height (y).
    :param float drop: probability that a box is not detected in a frame (never in the first
        ``keep_first`` frames).
    :param float occlusions: mean number of occlusions per track and window (Poisson); each hides the
        track for a run of frames of length uniform in ``[5, max_occlusion]`` (after ``keep_first``),
        like the long detection gaps of real detectors (35 % of MOT15 source-frames lack a detection).
    :returns: ``obs (B, T, N, 4)``, ``obs_mask (B, T, N)`` and ``source (B, T, N)`` (the track each
        slot came from; slots are shuffled per frame so their order carries no identity).
    """
    rng = np.random.default_rng(seed)
    gt = np.asarray(gt, float)
    w, h = gt[..., 2] - gt[..., 0], gt[..., 3] - gt[..., 1]
    size = np.stack([w, h, w, h], -1)
    obs = gt + rng.normal(size=gt.shape) * noise * size
    obs[..., 2:] = np.maximum(obs[..., 2:], obs[..., :2] + 1e-3)  # keep x1 < x2, y1 < y2
    mask = rng.random(gt.shape[:-1]) >= drop
    if occlusions > 0:
        B, T, N = gt.shape[:3]
        counts = rng.poisson(occlusions, (B, N))
        t = np.arange(T)
        for b, n in zip(*np.nonzero(counts)):
            for _ in range(counts[b, n]):
                start = rng.integers(keep_first, max(T, keep_first + 1))
                length = rng.integers(5, max(max_occlusion, 5) + 1)
                mask[b, (t >= start) & (t < start + length), n] = False
    mask[:, :keep_first] = True
    perm = np.argsort(rng.random(gt.shape[:-1]), -1)
    take = lambda a: np.take_along_axis(a, perm[..., None] if a.ndim == 4 else perm, 2)  # noqa: E731
    return take(obs), take(mask), perm


def crossing_scene(T=60, num_tracks=3, seed=0):
    """``num_tracks`` pedestrians whose paths cross in the middle of the window: ``(T, N, 4)`` boxes.

    Tracks start on a circle around the image centre and walk through it towards the opposite side,
    with slightly different speeds and sizes, so that every pair of boxes overlaps near the middle
    frames: the hard case for identity preservation.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    angle = rng.uniform(0, np.pi) + np.arange(num_tracks) * np.pi / num_tracks
    radius = 0.3 * rng.uniform(0.9, 1.1, num_tracks)
    start = 0.5 + radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    end = 0.5 - radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    frac = (t / (T - 1))[..., None]
    centre = start[None] + frac * (end - start)[None]  # (T, N, 2)
    w = rng.uniform(0.04, 0.06, num_tracks)[None, :] * np.ones((T, 1))
    h = w * rng.uniform(2.3, 2.8, num_tracks)
    return np.stack([centre[..., 0] - w / 2, centre[..., 1] - h / 2, centre[..., 0] + w / 2,
                     centre[..., 1] + h / 2], -1)
