# SPDX-License-Identifier: Apache-2.0
"""MOTChallenge tracker-result files and the MOT17 "val-half" frame range.

A result file has one row per tracked box, comma separated::

    frame, id, x, y, w, h, score, -1, -1, -1

``frame`` is the sequence's own frame number (from 1), ``id`` a track identity (integer >= 1), ``x, y``
the top-left corner and ``w, h`` the size in pixels, ``score`` a confidence (1 when unknown); the last
three columns are MOT15's world coordinates, unused for 2D tracking and written as -1. This is the file
TrackEval's ``MotChallenge2DBox`` reads (:mod:`pyro_dvae.metrics.mot_eval`); TrackEval reads column 8 as
an object class and refuses a tracker box whose class is above 1, so :func:`read_results` refuses it too.

**References:**

[1] A. Milan, L. Leal-Taixé, I. Reid, S. Roth, K. Schindler (2016), "MOT16: A Benchmark for Multi-Object
    Tracking", arXiv:1603.00831 (file format, section 3.3).
[2] Y. Zhang et al. (2022), "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV
    (MOT17 half split: the detector is trained on the first half of each train sequence and trackers are
    validated on the second half).
[3] J. Cao, J. Pang, X. Weng, R. Khirodkar, K. Kitani (2023), "Observation-Centric SORT: Rethinking SORT
    for Robust Multi-Object Tracking", CVPR (same split, same YOLOX detections).
"""

import os
import warnings
from typing import NamedTuple

import numpy as np

__all__ = ["MOTResults", "read_results", "val_half", "write_results"]


class MOTResults(NamedTuple):
    """Rows of a result file, sorted by frame then identity: ``frame (n,)`` and ``ids (n,)`` int64,
    ``boxes (n, 4)`` x, y, w, h in pixels, ``score (n,)``."""

    frame: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray
    score: np.ndarray


def val_half(n_frames):
    """First and last frame (1-based, inclusive) of the MOT17 "val-half" of a sequence of ``n_frames``
    frames: ``n_frames // 2 + 2 .. n_frames``.

    This is the split of ByteTrack's and OC-SORT's MOT17 ablations (their ``mot17_half`` annotations keep the
    frames after ``n_frames // 2 + 1``; e.g. MOT17-02, 600 frames: 302..600; MOT17-04, 1050: 527..1050;
    MOT17-09, 525: 264..525). The YOLOX "ablation" detections were trained on the other half.
    """
    if isinstance(n_frames, bool) or not float(n_frames).is_integer() or n_frames < 3:
        raise ValueError(f"n_frames must be an integer >= 3 (the val-half is frames N//2+2..N), got {n_frames!r}")
    n = int(n_frames)
    return n // 2 + 2, n


def _as_int(name, values, n):
    a = np.asarray(values)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must be integers, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} must be integers; row {i} holds {a[i]!r}")
    a = a.astype(np.int64)
    if n and a.min() < 1:
        i = int(np.argmin(a))
        raise ValueError(f"{name} must be >= 1; row {i} holds {a[i]}")
    return a


def write_results(path, frames, ids, boxes_xywh, scores=None):
    """Write tracker output as a MOTChallenge result file (see the module docstring).

    :param path: output file (its folder is created if needed).
    :param frames: ``(n,)`` frame numbers of the original sequence (integers >= 1).
    :param ids: ``(n,)`` track identities (integers >= 1).
    :param boxes_xywh: ``(n, 4)`` boxes x, y, w, h in pixels (finite, ``w, h > 0``).
    :param scores: ``(n,)`` confidences (finite); ``None`` writes 1.
    :returns: the number of rows written. Rows are sorted by frame then identity; a repeated
        ``(frame, id)`` pair is an error (a track has one box per frame).
    """
    boxes = np.asarray(boxes_xywh, dtype=float)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        else:
            raise ValueError(f"boxes_xywh must have shape (n, 4), got {boxes.shape}")
    n = len(boxes)
    frames = _as_int("frames", frames, n)
    ids = _as_int("ids", ids, n)
    scores = np.ones(n) if scores is None else np.asarray(scores, dtype=float)
    if scores.shape != (n,):
        raise ValueError(f"scores must have shape ({n},), got {scores.shape}")
    bad = ~np.isfinite(boxes).all(1) | ~np.isfinite(scores)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"boxes and scores must be finite; row {i} (frame {frames[i]}, id {ids[i]}) holds "
                         f"box {boxes[i].tolist()}, score {scores[i]}")
    bad = (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"box width and height must be > 0; row {i} (frame {frames[i]}, id {ids[i]}) holds "
                         f"{boxes[i].tolist()}")
    order = np.lexsort((ids, frames))
    frames, ids, boxes, scores = frames[order], ids[order], boxes[order], scores[order]
    dup = (np.diff(frames) == 0) & (np.diff(ids) == 0)
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise ValueError(f"identity {ids[i]} has more than one box in frame {frames[i]}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{fr},{i},{b[0]:.3f},{b[1]:.3f},{b[2]:.3f},{b[3]:.3f},{s:.6g},-1,-1,-1\n"
                     for fr, i, b, s in zip(frames.tolist(), ids.tolist(), boxes.tolist(), scores.tolist()))
    return n


def load_numeric(path):
    """The file as an ``(n, k)`` float array when every non-blank line holds ``k`` comma-separated numbers
    (``(0, 0)`` for an empty file), else ``None`` (the caller then parses line by line for a precise error)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data"
            arr = np.loadtxt(path, delimiter=",", ndmin=2, comments=None, encoding="utf-8-sig", dtype=float)
    except ValueError:
        return None
    return np.zeros((0, 0)) if arr.size == 0 else arr


def read_results(path):
    """Read a MOTChallenge result file strictly.

    Each non-blank line needs 7 to 10 comma-separated numbers: an integer frame >= 1, an integer
    identity >= 1, a finite box with ``w, h > 0``, a finite score, then optional columns (column 8 must
    be at most 1: TrackEval reads it as the class). A ``(frame, id)`` pair may occur once. Any violation is
    a ``ValueError`` naming the file and line, and so is a file that is not text
    (:func:`~pyro_dvae.data.mot.text_lines`).

    :returns: :class:`MOTResults` ``(frame, ids, boxes, score)``, sorted by frame then identity.
    """
    arr = load_numeric(path)
    if arr is not None and 7 <= arr.shape[1] <= 10:  # fast path: a well-formed file
        frames, ids, boxes, scores = arr[:, 0], arr[:, 1], arr[:, 2:6], arr[:, 6]
        ok = (np.isfinite(arr).all() and (frames == np.round(frames)).all() and (frames >= 1).all()
              and (ids == np.round(ids)).all() and (ids >= 1).all() and (boxes[:, 2:] > 0).all()
              and (arr.shape[1] < 8 or (arr[:, 7] <= 1).all()))
        if ok:
            frames, ids = frames.astype(np.int64), ids.astype(np.int64)
            order = np.lexsort((ids, frames))
            frames, ids = frames[order], ids[order]
            if not ((np.diff(frames) == 0) & (np.diff(ids) == 0)).any():
                return MOTResults(frames, ids, boxes[order].copy(), scores[order].copy())
    # Slow path: parse line by line, the first bad line (or a file that is not text) is the error.
    from .mot import text_lines

    frames, ids, boxes, scores, seen = [], [], [], [], {}
    for lineno, line in text_lines(path):
        if not line:
            continue

        def bad(msg, lineno=lineno, line=line):
            return ValueError(f"{path}:{lineno}: {msg}: {line[:80]!r}")

        parts = [p.strip() for p in line.split(",")]
        if not 7 <= len(parts) <= 10:
            raise bad(f"expected 7 to 10 comma-separated values (frame, id, x, y, w, h, score, -1, -1, -1), "
                      f"got {len(parts)}")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise bad("non-numeric value") from None
        if not all(np.isfinite(vals)):
            raise bad("NaN or infinite value")
        fr, i = vals[0], vals[1]
        if not fr.is_integer() or fr < 1:
            raise bad(f"frame must be an integer >= 1, got {parts[0]!r}")
        if not i.is_integer() or i < 1:
            raise bad(f"identity must be an integer >= 1, got {parts[1]!r}")
        if vals[4] <= 0 or vals[5] <= 0:
            raise bad("box width and height must be > 0")
        if len(vals) >= 8 and vals[7] > 1:
            raise bad(f"column 8 (the class for TrackEval) must be <= 1 (-1 when unused), got {parts[7]!r}")
        key = (int(fr), int(i))
        if key in seen:
            raise bad(f"identity {key[1]} already has a box in frame {key[0]} (line {seen[key]})")
        seen[key] = lineno
        frames.append(key[0])
        ids.append(key[1])
        boxes.append(vals[2:6])
        scores.append(vals[6])
    frames = np.array(frames, dtype=np.int64)
    ids = np.array(ids, dtype=np.int64)
    boxes = np.array(boxes, dtype=float).reshape(-1, 4)
    scores = np.array(scores, dtype=float)
    order = np.lexsort((ids, frames))
    return MOTResults(frames[order], ids[order], boxes[order], scores[order])
