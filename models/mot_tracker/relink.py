# SPDX-License-Identifier: Apache-2.0
"""Between the stages: re-linking a track that ended to one born later, scored by a motion forecast.

Stage 1 ends a track that goes undetected for ``max_age`` frames; the object often comes back later as a new
identity. :func:`relink_tracks` joins such pairs: every track ``A`` that ends before another ``B`` starts, within
``relink_gap`` seconds, is forecast from its last boxes to ``B``'s first frame, and the pairs whose forecast lands
near ``B``'s first box are matched one-to-one (Hungarian, on the cost below); a matched ``B`` continues ``A``'s
identity, and the refinement (stage 2) then fills the frames between them.

Forecast (``relink="dvae"`` or ``"cv"``): :mod:`.motion`, from the track's last ``relink_context`` subsampled boxes.
Cost of a pair: the distance between the forecast centre and ``B``'s first centre in units of ``B``'s height, plus
the absolute log ratio of their heights; pairs above ``relink_cost`` are never joined.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment

from .motion import box_at, forecast_boxes, history, subsampling_factor

RELINK = ("dvae", "cv", "off")


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
    factor = subsampling_factor(frame_rate)
    gap = max(1, int(round(config.relink_gap * frame_rate)))
    ends = sorted(tracks, key=lambda t: t.frames[-1])
    starts = sorted(tracks, key=lambda t: t.frames[0])
    cand = [(i, j) for i, a in enumerate(ends) for j, b in enumerate(starts)
            if a is not b and 0 < b.frames[0] - a.frames[-1] <= gap and len(a.frames) >= 2]
    if not cand:
        return list(tracks), []
    users = sorted({i for i, _ in cand})
    steps = max(int(np.ceil((starts[j].frames[0] - ends[i].frames[-1]) / factor)) for i, j in cand)
    pasts = [history(ends[i], factor, config.relink_context) for i in users]
    scale = np.array([width, height, width, height], float)
    pred = forecast_boxes(pasts, steps, method, prior, scale)
    row = {i: r for r, i in enumerate(users)}
    cost = np.full((len(ends), len(starts)), np.inf)
    for i, j in cand:
        a, b = ends[i], starts[j]
        d = (b.frames[0] - a.frames[-1]) / factor  # forecast steps to B's first frame (fractional)
        path = np.concatenate([pasts[row[i]][-1:], pred[row[i]]])  # step 0 = A's last box
        cost[i, j] = _cost(box_at(path, d), np.asarray(b.boxes[0], float))
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
