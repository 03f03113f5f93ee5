# SPDX-License-Identifier: Apache-2.0
"""Between the stages: re-linking a track that ended to one born later, scored by a motion forecast.

Stage 1 ends a track that goes undetected for ``max_age`` frames; the object often comes back later as a new
identity. :func:`relink_tracks` joins such pairs: every track ``A`` that ends before another ``B`` starts, within
``relink_gap`` seconds, is forecast from its last boxes to ``B``'s first frame, and the pairs whose forecast lands
near ``B``'s first box are matched one-to-one (Hungarian, on the cost below); a matched ``B`` continues ``A``'s
identity, and the refinement (stage 2) then fills the frames between them.

Forecast (``relink="dvae"`` or ``"cv"``), at about 7.5 fps whatever the sequence's rate (the track subsampled by the
largest integer factor keeping it at 7 fps or more, where a real-track DVAE forecasts better than constant velocity
at every horizon): ``"dvae"`` rolls the trajectory prior forward from the track's last ``relink_context``
subsampled boxes (:func:`pyro_dvae.forecast.dvae_forecast`); ``"cv"`` extends the mean velocity of those boxes.
Cost of a pair: the distance between the forecast centre and ``B``'s first centre in units of ``B``'s height, plus
the absolute log ratio of their heights; pairs above ``relink_cost`` are never joined.
"""

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from pyro_dvae.data.tracks import rate_factors

RELINK = ("dvae", "cv", "off")


def _history(track, factor, context):
    """The track's boxes at its last frame and every ``factor`` frames before it (``context`` of them at most,
    linearly interpolated between its detections), oldest first: ``(C, 4)`` ``x1, y1, x2, y2`` pixels."""
    frames = np.asarray(track.frames, float)
    boxes = np.stack(track.boxes)
    last = frames[-1]
    steps = [last - factor * k for k in range(context) if last - factor * k >= frames[0]]
    at = np.array(steps[::-1])
    return np.stack([np.interp(at, frames, boxes[:, j]) for j in range(4)], 1)


def _cv(past, horizon):
    """Constant velocity: the mean step of ``past (N, C, 4)`` carried ``horizon`` steps: ``(N, horizon, 4)``."""
    C = past.shape[1]
    v = (past[:, -1] - past[:, 0]) / max(C - 1, 1)
    k = np.arange(1, horizon + 1, dtype=float)[None, :, None]
    return past[:, -1:, :] + k * v[:, None, :]


def forecast_boxes(pasts, horizon, method, prior=None, scale=None):
    """Forecasts ``(N, horizon, 4)`` (pixels) of ``pasts``, a list of ``(C_i, 4)`` pixel histories (left-padded by
    repeating their first box to a common length), by ``"dvae"`` (``prior``; boxes divided by ``scale = (W, H,
    W, H)``) or ``"cv"``."""
    if method == "cv":  # velocity from each track's own boxes
        return np.concatenate([_cv(p[None], horizon) for p in pasts])
    from pyro_dvae.forecast import dvae_forecast

    C = max(len(p) for p in pasts)
    past = np.stack([np.concatenate([np.repeat(p[:1], C - len(p), 0), p]) for p in pasts])

    x = torch.as_tensor(past / scale, dtype=prior.x_loc.dtype)
    return dvae_forecast(prior, x, horizon).double().numpy() * scale


def _cost(pred, box):
    ch = (pred[:2] + pred[2:]) / 2
    cb = (box[:2] + box[2:]) / 2
    hp, hb = max(pred[3] - pred[1], 1.0), max(box[3] - box[1], 1.0)
    return float(np.linalg.norm(ch - cb) / hb + abs(np.log(hp / hb)))


def relink_tracks(tracks, frame_rate, width, height, *, config, prior=None):
    """Join tracks that ended to tracks born later (module docstring); returns the new list of tracks (a joined
    track keeps the earlier track's id and holds both tracks' detections) and the joined ``(id, id)`` pairs.

    :param list tracks: :class:`~pyro_dvae.models.mot_tracker.Track` objects (stage 1's output).
    :param float frame_rate: the sequence's frame rate.
    :param TrackerConfig config: ``relink``, ``relink_gap`` (seconds), ``relink_cost`` and ``relink_context``.
    :param prior: the trajectory prior (``relink="dvae"``).
    """
    method = config.relink
    if method not in RELINK:
        raise ValueError(f"relink must be one of {RELINK}, got {method!r}")
    if method == "off" or len(tracks) < 2:
        return list(tracks), []
    if method == "dvae" and prior is None:
        raise ValueError("relink='dvae' needs a trajectory prior")
    factor = rate_factors(frame_rate)[-1]
    gap = max(1, int(round(config.relink_gap * frame_rate)))
    ends = sorted(tracks, key=lambda t: t.frames[-1])
    starts = sorted(tracks, key=lambda t: t.frames[0])
    cand = [(i, j) for i, a in enumerate(ends) for j, b in enumerate(starts)
            if a is not b and 0 < b.frames[0] - a.frames[-1] <= gap and len(a.frames) >= 2]
    if not cand:
        return list(tracks), []
    users = sorted({i for i, _ in cand})
    steps = max(int(np.ceil((starts[j].frames[0] - ends[i].frames[-1]) / factor)) for i, j in cand)
    pasts = [_history(ends[i], factor, config.relink_context) for i in users]
    scale = np.array([width, height, width, height], float)
    pred = forecast_boxes(pasts, steps, method, prior, scale)
    row = {i: r for r, i in enumerate(users)}
    cost = np.full((len(ends), len(starts)), np.inf)
    for i, j in cand:
        a, b = ends[i], starts[j]
        d = (b.frames[0] - a.frames[-1]) / factor  # forecast steps to B's first frame (fractional)
        path = np.concatenate([pasts[row[i]][-1:], pred[row[i]]])  # step 0 = A's last box
        k = min(int(np.floor(d)), steps - 1)
        box = path[k] + (d - k) * (path[k + 1] - path[k])
        cost[i, j] = _cost(box, np.asarray(b.boxes[0], float))
    big = 1e6
    r, c = linear_sum_assignment(np.where(np.isfinite(cost), cost, big))
    links = [(i, j) for i, j in zip(r, c) if cost[i, j] <= config.relink_cost]
    return _join(tracks, [(ends[i], starts[j]) for i, j in links])


def _join(tracks, links):
    """Merge every linked ``(a, b)`` pair (chains too) into the earlier track."""
    nxt = {id(a): b for a, b in links}
    linked_to = {id(b) for _, b in links}
    out, pairs = [], []
    for t in sorted(tracks, key=lambda t: t.frames[0]):
        if id(t) in linked_to:
            continue
        head = t
        cur = t
        while id(cur) in nxt:
            b = nxt[id(cur)]
            pairs.append((head.id, b.id))
            head.frames.extend(b.frames)
            head.boxes.extend(b.boxes)
            head.scores.extend(b.scores)
            head.last_frame = b.last_frame
            cur = b
        out.append(head)
    return sorted(out, key=lambda t: t.id), pairs
