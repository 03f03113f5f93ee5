# SPDX-License-Identifier: Apache-2.0
"""Whole-sequence multi-object tracking with births and deaths, MixDVAE refinement of every track.

Two stages (``README.md``, "Whole-sequence tracking"):

1. **Association with births and deaths** (:class:`Associator`), frame by frame: every track's box is predicted
   by a constant-velocity Kalman filter; detections are matched in two score tiers as in ByteTrack [1] (high-score
   detections to every track, then the low-score ones to the tracks still unmatched, so that low scores carry
   objects through partial occlusion rather than being thrown away); a high-score detection nobody explains
   starts a tentative track (a *birth*), confirmed by a second match; a track unmatched for ``max_age`` frames
   ends (a *death*).
2. **MixDVAE refinement** (:func:`refine_tracks`): each track's matched detections, over windows of
   ``window`` frames overlapping by half (each frame is taken from the window it is most central in), are the
   observations of the MixDVAE tracking model with one source (:class:`~pyro_dvae.models.tracking.TrackingModel`;
   a clutter class is available, off by default), run through the registry's ``vem``: E-W decides which
   detections the track produced, E-S smooths the track with the DVAE prior's dynamics and fills the frames where
   it was not detected, E-Z and the two M-steps calibrate the prior to the sequence. Frames after a track's last
   detection are not reported (the track had ended).

**References:**

[1] Y. Zhang et al. (2022), "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV.
[2] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for Multi-Source
    Trajectory Modeling and Separation", TMLR.
"""

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from pyro_dvae.data.mot import iou_xyxy


@dataclass
class TrackerConfig:
    """Settings of the whole-sequence tracker (defaults: ByteTrack's MOT17 evaluation settings for stage 1).

    :ivar high_score: detections at or above this score are matched first and may start tracks.
    :ivar low_score: detections in ``[low_score, high_score)`` are matched second, to unmatched tracks only.
    :ivar birth_score: a new track needs a detection at or above this score.
    :ivar match_iou: first tier: a pair needs ``IoU * score >= match_iou``.
    :ivar low_match_iou: second tier: a pair needs ``IoU >= low_match_iou``.
    :ivar confirm_iou: a tentative track is confirmed by a detection with ``IoU * score >= confirm_iou``.
    :ivar max_age: frames a track survives without a detection (at 30 fps; scaled by the frame rate).
    :ivar refine: run the MixDVAE refinement (stage 2).
    :ivar dynamics: the refinement's dynamics: ``"dvae"`` (the DVAE prior, MixDVAE) or ``"cv"`` (constant
        velocity, the VKF baseline of the same model).
    :ivar window: frames per refinement window; ``iters``: VEM iterations; ``clutter_prob``: prior weight of
        the clutter class in E-W.
    """

    high_score: float = 0.6
    low_score: float = 0.1
    birth_score: float = 0.7
    match_iou: float = 0.1
    low_match_iou: float = 0.5
    confirm_iou: float = 0.3
    max_age: int = 30
    refine: bool = True
    dynamics: str = "dvae"
    window: int = 60
    iters: int = 10
    clutter_prob: float = 0.0


# ------------------------------------------------------------------------------------------------ stage 1
class _Kalman:
    """Constant-velocity Kalman filter on ``(cx, cy, w, h)`` in pixels, noise proportional to the box height
    (ByteTrack's parametrisation with the width in place of the aspect ratio)."""

    POS, VEL = 1.0 / 20, 1.0 / 160

    def __init__(self, box):
        cx, cy, w, h = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]
        self.x = np.array([cx, cy, w, h, 0.0, 0.0, 0.0, 0.0])
        s = np.array([2 * self.POS * h, 2 * self.POS * h, 2 * self.POS * h, 2 * self.POS * h,
                      10 * self.VEL * h, 10 * self.VEL * h, 10 * self.VEL * h, 10 * self.VEL * h])
        self.P = np.diag(s ** 2)

    def predict(self):
        F = np.eye(8)
        F[:4, 4:] = np.eye(4)
        h = self.x[3]
        q = np.array([self.POS * h] * 4 + [self.VEL * h] * 4) ** 2
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + np.diag(q)

    def update(self, box):
        z = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]])
        H = np.eye(4, 8)
        R = np.diag((np.array([self.POS * self.x[3]] * 4)) ** 2)
        S = H @ self.P @ H.T + R
        K = np.linalg.solve(S, H @ self.P).T
        self.x = self.x + K @ (z - H @ self.x)
        self.P = (np.eye(8) - K @ H) @ self.P

    @property
    def box(self):
        cx, cy, w, h = self.x[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


@dataclass
class Track:
    """One track: its detections (frame -> box ``x1, y1, x2, y2`` in pixels and score)."""

    id: int
    kalman: _Kalman
    last_frame: int
    confirmed: bool = False
    frames: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    scores: list = field(default_factory=list)

    def add(self, frame, box, score):
        self.kalman.update(box)
        self.frames.append(frame)
        self.boxes.append(np.asarray(box, float))
        self.scores.append(float(score))
        self.last_frame = frame


def _match(tracks, boxes, scores, min_sim, fuse_score):
    """Hungarian matching of ``tracks`` to detections on ``IoU`` (``* score`` with ``fuse_score``); pairs below
    ``min_sim`` are refused. Returns ``(pairs, unmatched track indices, unmatched detection indices)``."""
    if not tracks or not len(boxes):
        return [], list(range(len(tracks))), list(range(len(boxes)))
    sim = iou_xyxy(np.stack([t.kalman.box for t in tracks]), boxes)
    if fuse_score:
        sim = sim * scores[None, :]
    rows, cols = linear_sum_assignment(-sim)
    pairs = [(r, c) for r, c in zip(rows, cols) if sim[r, c] >= min_sim]
    done_t, done_d = {r for r, _ in pairs}, {c for _, c in pairs}
    return (pairs, [i for i in range(len(tracks)) if i not in done_t],
            [j for j in range(len(boxes)) if j not in done_d])


class Associator:
    """Stage 1: frame-by-frame association with births and deaths (see the module docstring).

    :param TrackerConfig config: thresholds.
    :param float frame_rate: the sequence's frame rate (``max_age`` is given at 30 fps).
    """

    def __init__(self, config=None, frame_rate=30.0):
        self.config = config or TrackerConfig()
        self.max_age = max(1, int(round(self.config.max_age * frame_rate / 30.0)))
        self.tracks, self.ended, self._next_id, self._first = [], [], 1, True

    def step(self, frame, boxes, scores):
        """Process one frame's detections ``boxes (n, 4)`` (``x1, y1, x2, y2`` pixels) and ``scores (n,)``."""
        cfg = self.config
        boxes, scores = np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float).reshape(-1)
        high, low = scores >= cfg.high_score, (scores >= cfg.low_score) & (scores < cfg.high_score)
        hb, hs, lb, ls = boxes[high], scores[high], boxes[low], scores[low]
        for t in self.tracks:
            t.kalman.predict()
        confirmed = [t for t in self.tracks if t.confirmed]
        tentative = [t for t in self.tracks if not t.confirmed]
        pairs, rest_t, rest_d = _match(confirmed, hb, hs, cfg.match_iou, True)
        for i, j in pairs:
            confirmed[i].add(frame, hb[j], hs[j])
        # second tier: low-score detections for the tracks detected in the previous frame and unmatched now
        recent = [confirmed[i] for i in rest_t if confirmed[i].last_frame == frame - 1]
        pairs2, _, _ = _match(recent, lb, ls, cfg.low_match_iou, False)
        for i, j in pairs2:
            recent[i].add(frame, lb[j], ls[j])
        hb, hs = hb[rest_d], hs[rest_d]
        pairs3, rest_u, rest_d = _match(tentative, hb, hs, cfg.confirm_iou, True)
        for i, j in pairs3:
            tentative[i].add(frame, hb[j], hs[j])
            tentative[i].confirmed = True
        dropped = {id(tentative[i]) for i in rest_u}
        for j in rest_d:  # births
            if hs[j] >= cfg.birth_score:
                track = Track(self._next_id, _Kalman(hb[j]), frame, confirmed=self._first)
                track.add(frame, hb[j], hs[j])
                self._next_id += 1
                self.tracks.append(track)
        self._first = False
        alive = []
        for t in self.tracks:  # deaths
            if id(t) in dropped:
                continue
            if frame - t.last_frame > self.max_age:
                self.ended.append(t)
            else:
                alive.append(t)
        self.tracks = alive

    def finish(self):
        """Every confirmed track, in order of birth."""
        tracks = [t for t in self.ended + self.tracks if t.confirmed]
        return sorted(tracks, key=lambda t: t.id)


# ------------------------------------------------------------------------------------------------ stage 2
def refine_tracks(tracks, prior, width, height, config=None, seed=0, latency=None):
    """Stage 2: smooth every track and fill its undetected frames with the MixDVAE model (one source, its
    matched detections as observations, optionally a clutter class), windows of ``config.window`` frames run as
    one batch through ``vem``. Returns ``{track id: (frames, boxes x1 y1 x2 y2 in pixels)}`` from each track's
    first to its last detection.

    :param int latency: online mode: windows of ``min(latency, window)`` frames, each reported up to the track's
        last detection *in that window*, so that a box for frame ``t`` depends on no detection after ``t +
        latency`` (``None``: offline)."""
    from .tracking import run_tracking

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
    est, _ = run_tracking(obs_t, mask_t, 1, method=method, prior=prior if method == "mixdvae" else None,
                          num_iters=cfg.iters,
                          clutter_prob=cfg.clutter_prob, seed=seed)
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


def track_sequence(frames, boxes, scores, width, height, frame_rate=30.0, prior=None, config=None, seed=0,
                   latency=None):
    """Track one sequence.

    :param frames: ``(n,)`` frame number of each detection; ``boxes (n, 4)`` ``x, y, w, h`` in pixels; ``scores``.
    :param prior: the DVAE trajectory prior for the refinement (default: the shipped SRNN); unused with
        ``config.refine = False``.
    :param int latency: online mode with this latency in frames (:func:`refine_tracks`); ``None``: offline.
        Stage 1 is causal either way.
    :returns: ``(frames, ids, boxes x y w h, scores)`` arrays in the MOTChallenge result layout.
    """
    cfg = config or TrackerConfig()
    frames, boxes, scores = np.asarray(frames, int), np.asarray(boxes, float), np.asarray(scores, float)
    xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1) if len(boxes) else boxes.reshape(0, 4)
    assoc = Associator(cfg, frame_rate)
    order = np.argsort(frames, kind="stable")
    frames, xyxy, scores = frames[order], xyxy[order], scores[order]
    if len(frames):
        cuts = np.flatnonzero(np.diff(frames)) + 1
        for idx in np.split(np.arange(len(frames)), cuts):
            assoc.step(int(frames[idx[0]]), xyxy[idx], scores[idx])
    tracks = assoc.finish()
    rows = []
    if cfg.refine and tracks:
        if prior is None and cfg.dynamics == "dvae":
            from pyro_dvae import pretrained

            prior = pretrained.load()
        refined = refine_tracks(tracks, prior, width, height, cfg, seed, latency)
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
