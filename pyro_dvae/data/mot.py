# SPDX-License-Identifier: Apache-2.0
"""MOTChallenge IO and the MOT-3T window builder of MixDVAE.

Files: ``<SEQ>/seqinfo.ini``, ``<SEQ>/gt/gt.txt``, ``<SEQ>/det/det.txt`` (comma separated).

- gt (MOT15): ``frame, id, x, y, w, h, flag, wx, wy, wz``; (MOT16/17):
  ``frame, id, x, y, w, h, consider, class, visibility``. We keep pedestrians: ``flag``/``consider``
  equal to 1 and, where a class column exists, class 1.
- det: ``frame, -1, x, y, w, h, score, ...`` (no identity).

Boxes are ``(x, y, w, h)`` in pixels, top-left corner, frames from 1. Safe handling of bad input:
a malformed line is an error naming the file and line; rows whose box is NaN/inf or has a
non-positive width or height are dropped and counted (a warning says how many); rows are sorted by
frame (and identity) whatever their order in the file.

**References:**

[1] L. Leal-Taixé, A. Milan, I. Reid, S. Roth, K. Schindler (2015), "MOTChallenge 2015: Towards a
    Benchmark for Multi-Target Tracking", arXiv:1504.01942.
[2] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for
    Multi-Source Trajectory Modeling and Separation", TMLR (MOT17-3T protocol).
"""

import configparser
import itertools
import os
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class SeqInfo:
    name: str
    width: int
    height: int
    length: int
    frame_rate: float = 0.0


@dataclass
class MOTTable:
    """Rows of a gt or det file: ``frame (n,)``, ``ids (n,)``, ``boxes (n, 4)`` as x, y, w, h,
    ``score (n,)`` (detection score; 1 for gt), ``dropped`` bad rows."""

    path: str
    frame: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray
    score: np.ndarray
    dropped: int = 0


def read_seqinfo(seq_dir):
    path = os.path.join(seq_dir, "seqinfo.ini")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found")
    cp = configparser.ConfigParser()
    try:
        cp.read(path, encoding="utf-8-sig")
    except configparser.Error as e:
        raise ValueError(f"{path}: malformed ini file ({e})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text file (byte 0x{e.object[e.start]:02x} is not UTF-8)") from None
    if "Sequence" not in cp:
        raise ValueError(f"{path}: no [Sequence] section")
    s = cp["Sequence"]
    try:
        return SeqInfo(s.get("name", os.path.basename(seq_dir)), int(s["imWidth"]), int(s["imHeight"]),
                       int(s["seqLength"]), float(s.get("frameRate", 0)))
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: missing or bad field ({e})") from None


def text_lines(path):
    """``(line number, line)`` of a text file read as UTF-8 (a byte-order mark dropped), lines stripped. A file
    that is not text (a byte sequence that is not UTF-8, or a NUL byte) is a :class:`ValueError` naming the file
    and the line."""
    with open(path, "rb") as f:
        data = f.read()
    data = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    for lineno, raw in enumerate(data.splitlines(), 1):  # \n, \r\n or \r, as text mode reads them
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not a text file (byte 0x{raw[e.start]:02x} at column {e.start + 1} "
                             "is not UTF-8)") from None
        if "\0" in line:
            raise ValueError(f"{path}:{lineno}: not a text file (NUL byte at column {line.index(chr(0)) + 1})")
        yield lineno, line.strip()


def parse_rows(path, min_cols, integer_id=False):
    """The comma-separated rows of a MOTChallenge text file as a float array (blank lines skipped, rows shorter
    than the longest padded with -1). A file that is not text (:func:`text_lines`), a row of fewer than
    ``min_cols`` values, a value that is not a number, a frame that is not a positive integer or (with
    ``integer_id``) an identity that is not an integer is a :class:`ValueError` naming the file and the line."""
    rows = []
    for lineno, line in text_lines(path):
        if not line:
            continue
        parts = line.replace(" ", "").split(",")
        if len(parts) < min_cols:
            raise ValueError(f"{path}:{lineno}: expected at least {min_cols} comma-separated values, "
                             f"got {len(parts)}: {line[:80]!r}")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: non-numeric value in {line[:80]!r}") from None
        if not float(vals[0]).is_integer() or vals[0] < 1:
            raise ValueError(f"{path}:{lineno}: frame must be a positive integer, got {parts[0]!r}")
        if integer_id and not float(vals[1]).is_integer():
            raise ValueError(f"{path}:{lineno}: identity must be an integer, got {parts[1]!r}")
        rows.append(vals)
    if not rows:
        return np.zeros((0, 10))
    width = max(len(r) for r in rows)
    return np.array([r + [-1.0] * (width - len(r)) for r in rows])


def _finish(path, arr, frame, ids, boxes, score):
    ok = np.isfinite(boxes).all(1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    dropped = int((~ok).sum())
    if dropped:
        warnings.warn(f"{path}: dropped {dropped} rows with NaN/inf or non-positive boxes", stacklevel=3)
    order = np.lexsort((ids[ok], frame[ok]))
    return MOTTable(path, frame[ok][order], ids[ok][order], boxes[ok][order], score[ok][order], dropped)


def read_gt(path, pedestrians_only=True, min_visibility=0.0):
    """Read a ground-truth file (MOT15 or MOT16/17 columns, detected from the content). ``pedestrians_only``:
    the rows flagged to be considered (and, in MOT16/17 files, of class 1); ``min_visibility``: MOT16/17 rows less
    visible than this are dropped too (MOT15 files have no visibility column)."""
    arr = parse_rows(path, 6, integer_id=True)
    frame, ids, boxes = arr[:, 0].astype(int), arr[:, 1].astype(int), arr[:, 2:6]
    keep = np.ones(len(arr), bool)
    if pedestrians_only and len(arr):
        flag = arr[:, 6] if arr.shape[1] > 6 else np.ones(len(arr))
        keep &= flag != 0
        if has_class_column(arr):
            keep &= arr[:, 7] == 1
    if min_visibility > 0 and len(arr) and has_class_column(arr):
        keep &= arr[:, 8] >= min_visibility
    return _finish(path, arr, frame[keep], ids[keep], boxes[keep], np.ones(int(keep.sum())))


def has_class_column(arr):
    """True when ``arr`` (rows of a gt file) has MOT16/17's class and visibility columns."""
    # MOT16/17: column 8 holds integer classes 1..12 and column 9 a visibility in [0, 1];
    # MOT15 holds world coordinates there (or -1).
    if arr.shape[1] < 9:
        return False
    cls, vis = arr[:, 7], arr[:, 8]
    return bool(np.all((cls == np.round(cls)) & (cls >= 1) & (cls <= 12)) and np.all((vis >= 0) & (vis <= 1)))


def read_det(path):
    """Read a detection file (``frame, -1, x, y, w, h, score, ...``)."""
    arr = parse_rows(path, 7)
    return _finish(path, arr, arr[:, 0].astype(int), np.full(len(arr), -1), arr[:, 2:6], arr[:, 6])


def xywh_to_xyxy(b):
    b = np.asarray(b, dtype=float)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:4]], -1)


def iou_xyxy(a, b):
    """Pairwise IoU of boxes ``a (..., n, 4)`` and ``b (..., m, 4)`` in x1, y1, x2, y2 (NaN-safe: NaN
    boxes give IoU 0). Works on numpy arrays."""
    a, b = np.asarray(a, float)[..., :, None, :], np.asarray(b, float)[..., None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)  # noqa
    union = area(a) + area(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)


@dataclass
class MOTWindow:
    """One MOT-3T sample: ``N`` identities over ``T`` frames.

    ``gt (T, N, 4)`` and ``obs (T, K, 4)`` are ``(x1, y1, x2, y2)`` normalised by the image size;
    ``obs_mask (T, K)`` marks real detections; ``obs_source (T, K)`` is the index of the track a
    detection was matched to (-1 for clutter), kept for evaluation only — detection slots are shuffled
    per frame so their order carries no identity.
    """

    seq: str
    start: int
    ids: tuple
    gt: np.ndarray
    obs: np.ndarray
    obs_mask: np.ndarray
    obs_source: np.ndarray
    width: int
    height: int


@dataclass
class WindowStats:
    windows: int = 0
    skipped_few_ids: int = 0
    by_seq: dict = field(default_factory=dict)


@dataclass
class WindowConfig:
    """Settings of :func:`build_windows` (defaults: MixDVAE's MOT-3T windows).

    :ivar seq_len: frames per window (60 / 120 / 300 in the paper), ``>= 2``.
    :ivar num_sources: identities per sample (``N``), ``>= 1``.
    :ivar stride: frames between window starts, ``>= 1``.
    :ivar combos_per_window: random N-identity combinations drawn per window (duplicates removed), ``>= 1``.
    :ivar min_score: drop detections scoring below this (``None``: keep all).
    :ivar iou_threshold: a detection is associated to a track by Hungarian matching on IoU when their IoU exceeds
        this; unmatched tracks are missing in that frame.
    :ivar second_half: only windows inside the second half of the sequence.
    :ivar clutter: keep the unmatched detections whose centre lies inside the sources' bounding region (widened by
        one mean box size) as clutter.
    :ivar seed: seeds the combinations and the slot shuffling (two independent streams, so the same seed picks the
        same identities whatever ``min_score`` or ``clutter``).
    """

    seq_len: int = 60
    num_sources: int = 3
    stride: int = 40
    combos_per_window: int = 20
    min_score: float = None
    iou_threshold: float = 0.5
    second_half: bool = False
    clutter: bool = False
    seed: int = 0

    def __post_init__(self):
        for key, low in (("seq_len", 2), ("num_sources", 1), ("stride", 1), ("combos_per_window", 1)):
            if getattr(self, key) < low:
                raise ValueError(f"need {key} >= {low}, got {getattr(self, key)}")


def build_windows(gt, det, info, *, config=None, stats=None, **overrides):
    """Build MOT-3T windows from one sequence.

    :param MOTTable gt: ground truth.
    :param MOTTable det: detections (``None``: no detections at all, every source missing).
    :param SeqInfo info: image size and length.
    :param WindowConfig config: the window settings.
    :param WindowStats stats: optional counter of windows built / skipped (fewer than N identities).
    :param overrides: fields of :class:`WindowConfig` replacing those of ``config`` (``seq_len=60``, ...).
    :returns: list of :class:`MOTWindow`.
    """
    cfg = replace(config, **overrides) if config is not None else WindowConfig(**overrides)
    seq_len, num_sources, stride = cfg.seq_len, cfg.num_sources, cfg.stride
    stats = stats if stats is not None else WindowStats()
    # separate streams: the identity combinations do not depend on the detections (min_score, clutter)
    rng_combos, rng_slots = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(2))
    L = int(max(info.length, gt.frame.max() if len(gt.frame) else 0))
    scale = np.array([info.width, info.height, info.width, info.height], float)
    first = L // 2 + 1 if cfg.second_half else 1
    by_frame = {}
    for f, i, b in zip(gt.frame, gt.ids, gt.boxes):
        by_frame.setdefault(int(f), {})[int(i)] = xywh_to_xyxy(b) / scale
    dets = {}
    if det is not None:
        keep = np.ones(len(det.frame), bool) if cfg.min_score is None else det.score >= cfg.min_score
        for f, b in zip(det.frame[keep], det.boxes[keep]):
            dets.setdefault(int(f), []).append(xywh_to_xyxy(b) / scale)
    out = []
    for start in range(first, L - seq_len + 2, stride):
        frames = range(start, start + seq_len)
        present = set(by_frame.get(start, {}))
        for f in frames:
            present &= set(by_frame.get(f, {}))
        present = sorted(present)
        if len(present) < num_sources:
            stats.skipped_few_ids += 1
            continue
        combos = list(itertools.combinations(present, num_sources))
        picks = rng_combos.permutation(len(combos))[:cfg.combos_per_window]
        for c in sorted(picks):
            ids = combos[c]
            out.append(_window(info, start, ids, frames, by_frame, dets, num_sources, cfg.iou_threshold, cfg.clutter,
                               rng_slots))
    stats.windows += len(out)
    stats.by_seq[info.name] = stats.by_seq.get(info.name, 0) + len(out)
    return out


def _window(info, start, ids, frames, by_frame, dets, N, iou_threshold, clutter, rng):
    T = len(frames)
    gt = np.stack([np.stack([by_frame[f][i] for i in ids]) for f in frames])  # (T, N, 4)
    per_frame = []
    for t, f in enumerate(frames):
        d = np.array(dets.get(f, np.zeros((0, 4))), float).reshape(-1, 4)
        src = np.full(len(d), -2)
        if len(d):
            iou = iou_xyxy(gt[t], d)
            r, c = linear_sum_assignment(-iou)
            ok = iou[r, c] > iou_threshold
            src[c[ok]] = r[ok]
            if clutter:
                lo, hi = gt[t, :, :2].min(0), gt[t, :, 2:].max(0)
                pad = (gt[t, :, 2:] - gt[t, :, :2]).mean(0)
                centre = (d[:, :2] + d[:, 2:]) / 2
                near = ((centre >= lo - pad) & (centre <= hi + pad)).all(1) & (src == -2)
                src[near] = -1
        keep = src >= -1
        order = rng.permutation(int(keep.sum()))
        per_frame.append((d[keep][order], src[keep][order]))
    K = max([N] + [len(p[0]) for p in per_frame])
    obs = np.zeros((T, K, 4))
    mask = np.zeros((T, K), bool)
    source = np.full((T, K), -1)
    for t, (d, s) in enumerate(per_frame):
        obs[t, : len(d)], mask[t, : len(d)], source[t, : len(d)] = d, True, s
    return MOTWindow(info.name, start, tuple(int(i) for i in ids), gt, obs, mask, source, info.width, info.height)


def load_sequence(seq_dir, det_file="det/det.txt"):
    """``(SeqInfo, gt MOTTable, det MOTTable or None)`` for a MOTChallenge sequence folder."""
    info = read_seqinfo(seq_dir)
    gt = read_gt(os.path.join(seq_dir, "gt", "gt.txt"))
    det_path = os.path.join(seq_dir, det_file)
    det = read_det(det_path) if det_file and os.path.exists(det_path) else None
    return info, gt, det


def sequence_folders(mot_dir, seqs=None):
    """The sequence folders of a MOTChallenge folder, checked (the messages name the ``--mot-dir`` and ``--seqs``
    options of ``pyro-dvae track`` / ``track-mot``).

    :param str mot_dir: a folder of sequence folders.
    :param list seqs: sequence names (default: every sub-folder of ``mot_dir``, sorted).
    :returns: ``{name: folder}``, in the order of ``seqs``.
    """
    if not os.path.isdir(mot_dir):
        raise FileNotFoundError(f"--mot-dir {mot_dir}: no such folder")
    seqs = seqs or sorted(d for d in os.listdir(mot_dir) if os.path.isdir(os.path.join(mot_dir, d)))
    if not seqs:
        raise ValueError(f"--mot-dir {mot_dir}: holds no sequence folders")
    folders = {seq: os.path.join(mot_dir, seq) for seq in seqs}
    for seq, folder in folders.items():
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"--seqs {seq}: no such sequence folder {folder}")
    return folders


def read_detection_file(seq_dir, det_file):
    """The detections of one sequence folder (:func:`read_det`; NaN or non-positive boxes are dropped with a
    warning); a missing, empty or malformed file (not text, a bad line) is an error naming the ``--det-file``
    option, the file and, where it applies, the line.

    :param str seq_dir: the sequence folder.
    :param str det_file: the detection file, relative to ``seq_dir``.
    :returns: the :class:`MOTTable` of the detections.
    """
    seq = os.path.basename(os.path.normpath(seq_dir))
    path = os.path.join(seq_dir, det_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--det-file {det_file}: no such file in {seq} ({path})")
    try:
        det = read_det(path)
    except ValueError as e:  # names the file and the line
        raise ValueError(f"--det-file {det_file}: {e}") from None
    if len(det.frame) == 0:
        raise ValueError(f"--det-file {det_file}: {path} holds no detections")
    return det
