# SPDX-License-Identifier: Apache-2.0
"""Stage 1 of the whole-sequence tracker: frame-by-frame association with births and deaths."""

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from pyro_dvae.data.mot import iou_xyxy

from .config import TrackerConfig
from .motion import box_at, history, subsampling_factor


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
    forecast: tuple = None  # (last_frame, path (S + 1, 4)) of the current loss event, from Associator.predicted

    def add(self, frame, box, score):
        self.kalman.update(box)
        self.frames.append(frame)
        self.boxes.append(np.asarray(box, float))
        self.scores.append(float(score))
        self.last_frame = frame


def _match(tracks, boxes, scores, min_sim, fuse_score, predicted=None):
    """Hungarian matching of ``tracks`` to detections on ``IoU`` (``* score`` with ``fuse_score``) with each
    track's predicted box (``predicted``: ``{id(track): box}``, else its Kalman filter's); pairs below
    ``min_sim`` are refused. Returns ``(pairs, unmatched track indices, unmatched detection indices)``."""
    if not tracks or not len(boxes):
        return [], list(range(len(tracks))), list(range(len(boxes)))
    predicted = predicted or {}
    sim = iou_xyxy(np.stack([predicted.get(id(t), t.kalman.box) for t in tracks]), boxes)
    if fuse_score:
        sim = sim * scores[None, :]
    rows, cols = linear_sum_assignment(-sim)
    pairs = [(r, c) for r, c in zip(rows, cols) if sim[r, c] >= min_sim]
    done_t, done_d = {r for r, _ in pairs}, {c for _, c in pairs}
    return (pairs, [i for i in range(len(tracks)) if i not in done_t],
            [j for j in range(len(boxes)) if j not in done_d])


class Associator:
    """Stage 1: frame-by-frame association with births and deaths (see the module docstring).

    A confirmed track undetected for more than ``config.predict_after`` frames (at 30 fps) is *lost*; with
    ``config.predict = "dvae"`` its box in the matching is a motion forecast (:mod:`.motion`) made once per loss
    event from its detections so far, read at the frame's fractional forecast step, instead of its Kalman filter's
    constant-velocity prediction (which still tracks every track's state).

    :param TrackerConfig config: thresholds.
    :param float frame_rate: the sequence's frame rate (``max_age`` and ``predict_after`` are given at 30 fps).
    :param callable forecaster: ``forecaster(pasts, horizon) -> (N, horizon, 4)`` pixel forecasts of a list of
        ``(C_i, 4)`` pixel histories (:func:`.motion.forecast_boxes` with the trajectory prior); needed with
        ``predict = "dvae"``.
    """

    def __init__(self, config=None, frame_rate=30.0, forecaster=None):
        self.config = config or TrackerConfig()
        self.max_age = max(1, int(round(self.config.max_age * frame_rate / 30.0)))
        self.predict_after = int(round(self.config.predict_after * frame_rate / 30.0))
        if self.config.predict == "dvae" and forecaster is None:
            raise ValueError("predict='dvae' needs a forecaster (a trajectory prior)")
        self.forecaster, self.factor = forecaster, subsampling_factor(frame_rate)
        self.horizon = int(np.ceil((self.max_age + 1) / self.factor)) + 1
        self.tracks, self.ended, self._next_id, self._first = [], [], 1, True

    def predicted(self, tracks, frame):
        """``{id(track): box}`` of the lost tracks among ``tracks`` at ``frame`` (class docstring): forecasts made
        for the new loss events in one batch; tracks not lost keep their Kalman prediction (absent)."""
        cfg = self.config
        if cfg.predict != "dvae":
            return {}
        lost = [t for t in tracks if frame - t.last_frame > self.predict_after and len(t.frames) >= 2]
        new = [t for t in lost if t.forecast is None or t.forecast[0] != t.last_frame]
        if new:
            pasts = [history(t, self.factor, cfg.relink_context) for t in new]
            pred = self.forecaster(pasts, self.horizon)
            for t, past, path in zip(new, pasts, pred):
                t.forecast = (t.last_frame, np.concatenate([past[-1:], path]))
        return {id(t): box_at(t.forecast[1], (frame - t.last_frame) / self.factor) for t in lost}

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
        pairs, rest_t, rest_d = _match(confirmed, hb, hs, cfg.match_iou, True, self.predicted(confirmed, frame))
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
