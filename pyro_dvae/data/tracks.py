# SPDX-License-Identifier: Apache-2.0
"""Real pedestrian box tracks from MOTChallenge ground truth, cut into training windows for motion priors.

**What is read.** The gt rows of pedestrians (MOT17: ``consider_flag == 1`` and ``class == 1``; MOT15: ``flag != 0``)
whose box is *visible* (MOT17: ``visibility >= min_visibility``; MOT15 has no visibility column: every annotated
box), cut into *segments* of contiguous frames (a missing or occluded frame ends a segment).

**Convention.** Boxes are ``(x1, y1, x2, y2)`` divided by the image ``(width, height, width, height)``: exactly what
the tracker feeds its prior (``models/mot_tracker/run.py`` divides the pixel boxes of each track by that scale, and
:func:`pyro_dvae.data.mot.build_windows` does the same for the MOT-3T windows). Boxes partly outside the image are
kept as annotated (coordinates slightly outside ``[0, 1]``), as detections are.

**Frame rate: every rate from 7 to 30 fps, in native frames.** A track of a ``r`` fps sequence is also used
subsampled by every integer factor ``m`` with ``r / m >= min_rate`` (all ``m`` phases): a 30 fps MOT17 track gives
30, 15, 10 and 7.5 fps versions, ETH-Sunnyday (14 fps) 14 and 7, PETS09-S2L1 stays at 7. The prior thus learns
per-frame dynamics over the whole range of rates it must serve and reads the rate from the motion it is fed, as a
constant-velocity filter does. We chose this over resampling to one canonical rate (or conditioning on the time
step) because the tracker runs its prior on the detections *at the sequence's native rate* (one step per frame,
every detection of a 30 fps track used): a canonical-rate prior would need the tracker to resample its windows
(dropping or interpolating observations) and a time-step input would change the prior's interface for every task
model. With this choice nothing changes on the tracker side: it feeds native-rate boxes, as it does now.

**Box scale and image size.** Coordinates are image-normalised as above; motion in those units grows with the box
(a near pedestrian moves more), which the prior reads from its input. Training windows are augmented
(:class:`Augment`): a random zoom (box size and motion scaled together, as a camera at another distance; the
window moved to a random place where it still fits the image), a mild change of the frame's aspect, a horizontal
flip and time reversal, so that the prior does not tie its dynamics to the few scene layouts and box sizes of the
training sequences.

**Splits.** :func:`corpus` gives the training part (the first half, frames ``1 .. N // 2``, of MOT17-02/04/09 and
the MOT15 sequences PETS09-S2L1, KITTI-17, ETH-Sunnyday, Venice-2) or the held-out part (MOT17 frames
``N // 2 + 2 .. N``, the val-half protocol; for MOT15, the sequence left out with ``holdout``, whole). The
project's external test sequences (MOT17-05/10/11/13) and the main example's scenes (TUD-Campus, TUD-Stadtmitte)
are refused as training data (:data:`RESERVED`). :func:`split_identities` holds out whole identities of the
training part for validation (early stopping).

:func:`track_training_data` assembles it all for :func:`pyro_dvae.training.train_prior`: a
:class:`TrackWindowStream` of augmented training windows (optionally mixed with synthetic trajectories) and a fixed
validation tensor.
"""

import os
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from .mot import has_class_column, parse_rows, read_seqinfo

#: MOT17 training sequences (train on frames ``1 .. N // 2``; ``N // 2 + 2 .. N`` are held out)
MOT17_SEQUENCES = ("MOT17-02", "MOT17-04", "MOT17-09")
#: 2DMOT2015 sequences a motion prior may train on (leave one out to evaluate on it)
MOT15_SEQUENCES = ("PETS09-S2L1", "KITTI-17", "ETH-Sunnyday", "Venice-2")
#: never training data: the project's external test (MOT17-05/10/11/13) and the main example's scenes (TUD)
RESERVED = ("MOT17-05", "MOT17-10", "MOT17-11", "MOT17-13", "TUD-Campus", "TUD-Stadtmitte")
#: the lowest frame rate a prior trained here serves (PETS09-S2L1 is 7 fps)
MIN_RATE = 7.0
#: MOT17 boxes less visible than this are occluded (their gt is the annotators' interpolation)
MIN_VISIBILITY = 0.25
PARTS = ("train", "heldout")


@dataclass
class TrackSegment:
    """Contiguous visible boxes of one identity: ``frames (n,)`` native frame numbers (``step`` apart), ``boxes (n,
    4)`` normalised ``(x1, y1, x2, y2)``, ``frame_rate`` of the segment (the native rate divided by ``step``)."""

    seq: str
    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    frame_rate: float
    step: int = 1

    def __len__(self):
        return len(self.frames)


def is_mot17(seq):
    return seq.startswith("MOT17")


def sequence_dir(realdata, seq):
    """The folder of sequence ``seq`` in the shared real-data folder (``mot17/<seq>`` or ``mot/<seq>``)."""
    return os.path.join(realdata, "mot17" if is_mot17(seq) else "mot", seq)


def _runs(frames):
    """Index ranges of the runs of consecutive frame numbers in sorted ``frames``."""
    cuts = np.flatnonzero(np.diff(frames) != 1) + 1
    return np.split(np.arange(len(frames)), cuts)


def read_segments(seq_dir, frames=None, *, min_visibility=MIN_VISIBILITY, min_length=2):
    """The visible, contiguous pedestrian box segments of one sequence's ground truth (module docstring).

    :param str seq_dir: a MOTChallenge sequence folder (``seqinfo.ini``, ``gt/gt.txt``).
    :param tuple frames: ``(first, last)`` frames to read (inclusive); ``None``: every frame.
    :param float min_visibility: MOT17 boxes below this visibility end a segment (ignored for MOT15 files).
    :param int min_length: shorter segments are dropped.
    :returns: list of :class:`TrackSegment` (native rate, ``step = 1``).
    """
    info = read_seqinfo(seq_dir)
    if not info.frame_rate > 0:
        raise ValueError(f"{seq_dir}/seqinfo.ini: no frameRate; the tracks' frame rate is needed")
    name = os.path.basename(os.path.normpath(seq_dir))
    arr = parse_rows(os.path.join(seq_dir, "gt", "gt.txt"), 6, integer_id=True)
    keep = arr[:, 6] != 0 if arr.shape[1] > 6 else np.ones(len(arr), bool)
    if has_class_column(arr):
        keep &= (arr[:, 7] == 1) & (arr[:, 8] >= min_visibility)
    box = arr[:, 2:6]
    keep &= np.isfinite(box).all(1) & (box[:, 2] > 0) & (box[:, 3] > 0)
    if frames is not None:
        keep &= (arr[:, 0] >= frames[0]) & (arr[:, 0] <= frames[1])
    arr = arr[keep]
    scale = np.array([info.width, info.height, info.width, info.height], float)
    out = []
    for tid in np.unique(arr[:, 1]).astype(int):
        rows = arr[arr[:, 1] == tid]
        rows = rows[np.argsort(rows[:, 0], kind="stable")]
        f = rows[:, 0].astype(int)
        xyxy = np.concatenate([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]], 1) / scale
        for idx in _runs(f):
            if len(idx) >= min_length:
                out.append(TrackSegment(name, tid, f[idx], xyxy[idx], float(info.frame_rate)))
    return out


def rate_factors(frame_rate, min_rate=MIN_RATE):
    """The subsampling factors ``m >= 1`` with ``frame_rate / m >= min_rate`` (``[1]`` at least)."""
    return list(range(1, max(1, int(np.floor(frame_rate / min_rate + 1e-9))) + 1))


def rate_variants(segments, min_rate=MIN_RATE, factors=None):
    """Every segment at every rate from its native one down to ``min_rate``: subsampled by each factor of
    :func:`rate_factors` (or the given ``factors``, those that keep the rate at ``min_rate`` or above), every phase.
    Segments shorter than 2 steps after subsampling are dropped."""
    out = []
    for s in segments:
        allowed = rate_factors(s.frame_rate, min_rate)
        for m in allowed if factors is None else [m for m in factors if m in allowed]:
            for phase in range(m):
                idx = np.arange(phase, len(s), m)
                if len(idx) >= 2:
                    out.append(TrackSegment(s.seq, s.track_id, s.frames[idx], s.boxes[idx], s.frame_rate / m,
                                            s.step * m))
    return out


def segment_windows(segments, seq_len, stride):
    """Windows of ``seq_len`` consecutive steps of the segments, starts ``stride`` steps apart.

    :returns: ``(windows (N, seq_len, 4) float32, meta)``; ``meta`` is a list of ``(seq, track_id, first frame,
        frame_rate)`` per window.
    """
    wins, meta = [], []
    for s in segments:
        for start in range(0, len(s) - seq_len + 1, stride):
            wins.append(s.boxes[start:start + seq_len])
            meta.append((s.seq, s.track_id, int(s.frames[start]), s.frame_rate))
    if not wins:
        return np.zeros((0, seq_len, 4), np.float32), meta
    return np.stack(wins).astype(np.float32), meta


def _frames(info, seq, part):
    """The frames of ``seq`` in ``part``: MOT17 halves, MOT15 whole sequences."""
    n = info.length
    if not is_mot17(seq):
        return None
    return (1, n // 2) if part == "train" else (n // 2 + 2, n)


def corpus(realdata, part="train", *, holdout=None, sequences=None, min_visibility=MIN_VISIBILITY, min_length=2):
    """The native-rate segments of the training or the held-out part (module docstring).

    :param str realdata: the shared real-data folder (``mot17/``, ``mot/``).
    :param str part: ``"train"`` (MOT17 first halves, MOT15 sequences but ``holdout``) or ``"heldout"`` (MOT17
        frames ``N // 2 + 2 .. N``, and the ``holdout`` MOT15 sequence whole).
    :param str holdout: a MOT15 sequence of :data:`MOT15_SEQUENCES` left out of training (``None``: none).
    :param sequences: the sequences to consider (default: :data:`MOT17_SEQUENCES` + :data:`MOT15_SEQUENCES`); a
        sequence of :data:`RESERVED` is an error in the training part.
    :returns: list of :class:`TrackSegment`.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if holdout is not None and holdout not in MOT15_SEQUENCES:
        raise ValueError(f"holdout must be one of {MOT15_SEQUENCES} (MOT17 holds out its second halves), got "
                         f"{holdout!r}")
    seqs = list(sequences) if sequences is not None else [*MOT17_SEQUENCES, *MOT15_SEQUENCES]
    reserved = [s for s in seqs if s in RESERVED]
    if part == "train" and reserved:
        raise ValueError(f"{', '.join(reserved)}: reserved for evaluation (the external test and the main example's "
                         "scenes), never training data")
    out = []
    for seq in seqs:
        if not is_mot17(seq) and (seq == holdout) == (part == "train"):
            continue
        folder = sequence_dir(realdata, seq)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder}: no such sequence folder (realdata {realdata})")
        out += read_segments(folder, _frames(read_seqinfo(folder), seq, part), min_visibility=min_visibility,
                             min_length=min_length)
    return out


def split_identities(segments, val_fraction=0.1, seed=0):
    """``(train, val)`` segments: a seeded ``val_fraction`` of the identities of each sequence (at least one where
    the sequence has two or more) for validation, with all their segments."""
    rng = np.random.default_rng(seed)
    val_keys = set()
    for seq in sorted({s.seq for s in segments}):
        ids = sorted({s.track_id for s in segments if s.seq == seq})
        n_val = min(len(ids) - 1, max(1, int(round(val_fraction * len(ids))))) if val_fraction > 0 else 0
        val_keys |= {(seq, i) for i in rng.permutation(ids)[:n_val]}
    train = [s for s in segments if (s.seq, s.track_id) not in val_keys]
    val = [s for s in segments if (s.seq, s.track_id) in val_keys]
    return train, val


@dataclass
class Augment:
    """Random changes of training windows, drawn anew for each window of each epoch (module docstring).

    :ivar zoom: ``(low, high)`` range of the zoom factor (log-uniform; box size and motion scale together); the
        zoom is lowered where the window would not fit in the image.
    :ivar aspect: ``(low, high)`` range of an extra horizontal factor (log-uniform): another frame aspect.
    :ivar flip: probability of a horizontal flip.
    :ivar reverse: probability of time reversal.
    """

    zoom: tuple = (2 / 3, 1.5)
    aspect: tuple = (0.85, 1.18)
    flip: float = 0.5
    reverse: float = 0.5

    def __call__(self, x, rng):
        """The augmented copy of windows ``x (N, T, 4)`` (numpy), with the generator ``rng``."""
        x = np.array(x, dtype=np.float64)
        n = len(x)
        if n == 0:
            return x.astype(np.float32)
        rev = rng.random(n) < self.reverse
        x[rev] = x[rev, ::-1]
        flip = rng.random(n) < self.flip
        x[flip] = np.stack([1 - x[flip, :, 2], x[flip, :, 1], 1 - x[flip, :, 0], x[flip, :, 3]], -1)
        zoom = np.exp(rng.uniform(*np.log(self.zoom), n))
        factors = np.stack([zoom * np.exp(rng.uniform(*np.log(self.aspect), n)), zoom], 1)  # (n, 2): x, y
        coords = [x[..., [0, 2]], x[..., [1, 3]]]
        lo = np.stack([c.min((1, 2)) for c in coords], 1)
        hi = np.stack([c.max((1, 2)) for c in coords], 1)
        room_lo, room_hi = np.minimum(lo, 0.0), np.maximum(hi, 1.0)  # the image, or the window where it overflows
        extent = np.maximum(hi - lo, 1e-9)
        fit = (room_hi - room_lo) / extent  # (n, 2): the largest factor per axis that still fits
        factors = factors * np.minimum(1.0, (fit / factors).min(1, keepdims=True))  # one shrink keeps the aspect
        new_lo = room_lo + rng.random((n, 2)) * np.maximum(room_hi - room_lo - factors * extent, 0.0)
        for d in range(2):
            coords[d] = new_lo[:, d, None, None] + factors[:, d, None, None] * (coords[d] - lo[:, d, None, None])
        out = np.stack([coords[0][..., 0], coords[1][..., 0], coords[0][..., 1], coords[1][..., 1]], -1)
        return out.astype(np.float32)


class TrackWindowStream(Dataset):
    """Training windows of real tracks, augmented anew for every epoch and batch, a fraction of each batch replaced
    by synthetic trajectories: a training source of :func:`pyro_dvae.training.train_prior` (the batch sampler's
    ``(epoch, index tensor)`` keys; like :class:`~pyro_dvae.engine.TrajectoryStream`).

    :param windows: ``(N, T, 4)`` windows (:func:`segment_windows`).
    :param Augment augment: the random changes (``None``: the windows as they are).
    :param float synthetic_fraction: expected fraction of each batch drawn from
        :func:`~pyro_dvae.data.synthetic_trajectories` (``synthetic`` gives its options).
    :param int seed: seeds the augmentation and the synthetic draws (with the epoch and the batch).
    :param dict synthetic: keyword arguments of :func:`~pyro_dvae.data.synthetic_trajectories`.
    """

    def __init__(self, windows, augment=None, synthetic_fraction=0.0, seed=0, synthetic=None):
        self.windows = np.asarray(windows, np.float32)
        if self.windows.ndim != 3 or self.windows.shape[-1] != 4 or not len(self.windows):
            raise ValueError(f"windows must be a non-empty (N, T, 4) array, got {self.windows.shape}")
        if not 0.0 <= synthetic_fraction < 1.0:
            raise ValueError(f"synthetic_fraction must be in [0, 1), got {synthetic_fraction}")
        self.augment, self.synthetic_fraction, self.seed = augment, float(synthetic_fraction), int(seed)
        self.synthetic = dict(synthetic or {})
        self.shape = self.windows.shape

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, key):
        from .synthetic import synthetic_trajectories

        epoch, idx = key if isinstance(key, tuple) else (0, key)
        idx = np.asarray(idx).reshape(-1)
        seed = (self.seed * 1_000_003 + int(epoch) * 10_007 + int(idx.min())) % 2**32
        rng = np.random.default_rng(seed)
        x = self.windows[idx]
        if self.augment is not None:
            x = self.augment(x, rng)
        if self.synthetic_fraction > 0:
            swap = rng.random(len(x)) < self.synthetic_fraction
            if swap.any():
                x = x.copy()
                x[swap] = synthetic_trajectories(int(swap.sum()), x.shape[1], seed=int(rng.integers(2**31)),
                                                 **self.synthetic)
        return torch.as_tensor(x), None

    def tensor(self, limit=None):
        """``limit`` windows (default: all) as drawn at epoch 0, in a seeded random order over the whole set: the
        sample that normalisation statistics are computed from."""
        n = min(len(self), limit or len(self))
        order = np.random.default_rng(self.seed).permutation(len(self))[:n]
        return self[(0, torch.as_tensor(np.sort(order)))][0]


@dataclass
class RealTracks:
    """How the real tracks become training data (:func:`track_training_data`).

    :ivar realdata: the shared real-data folder (``mot17/``, ``mot/``).
    :ivar holdout: a MOT15 sequence left out of training (``None``: every MOT15 training sequence is used).
    :ivar min_visibility: MOT17 visibility threshold.
    :ivar stride: steps between the starts of training windows.
    :ivar min_rate: the lowest frame rate of the rate variants (:func:`rate_variants`).
    :ivar val_fraction: identities held out for validation (:func:`split_identities`).
    :ivar synthetic_fraction: expected fraction of each training batch drawn from synthetic trajectories.
    :ivar augment: the augmentation (``None``: none).
    :ivar synthetic: options of the synthetic trajectories (default: the shipped ``srnn_mot``'s, 4:3 to 16:9 frames,
        speeds 0.7-4x).
    """

    realdata: str = "../shared/realdata"
    holdout: str = None
    min_visibility: float = MIN_VISIBILITY
    stride: int = 10
    min_rate: float = MIN_RATE
    val_fraction: float = 0.1
    synthetic_fraction: float = 0.0
    augment: Augment = field(default_factory=Augment)
    synthetic: dict = field(default_factory=lambda: {"frame_aspect": (4 / 3, 16 / 9), "speed_range": (0.7, 4.0)})

    def __post_init__(self):
        if int(self.stride) < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if not 0 <= self.val_fraction < 1 or not 0 <= self.synthetic_fraction < 1:
            raise ValueError("need 0 <= val_fraction < 1 and 0 <= synthetic_fraction < 1")


def track_training_data(seq_len=60, config=None, seed=0, **overrides):
    """``(train, val, info)`` for :func:`pyro_dvae.training.train_prior` from the real tracks' training part.

    The training part (:func:`corpus`), split by identity (:func:`split_identities`), every segment at every rate
    (:func:`rate_variants`), cut into windows (:func:`segment_windows`): the training windows as a
    :class:`TrackWindowStream` (augmented, optionally mixed with synthetic trajectories), the validation windows as
    a fixed tensor (not augmented: real motion only).

    :param int seq_len: steps per window.
    :param RealTracks config: the settings (``overrides``: fields replacing those of ``config``).
    :param int seed: seeds the split and the augmentation.
    :returns: ``train`` (:class:`TrackWindowStream`), ``val`` (``(M, seq_len, 4)`` tensor) and ``info`` (a dict:
        windows and segments per part, the sequences used).
    """
    cfg = replace(config, **overrides) if config is not None else RealTracks(**overrides)
    segments = corpus(cfg.realdata, "train", holdout=cfg.holdout, min_visibility=cfg.min_visibility)
    train_segs, val_segs = split_identities(segments, cfg.val_fraction, seed)
    train_w, _ = segment_windows(rate_variants(train_segs, cfg.min_rate), seq_len, cfg.stride)
    val_w, _ = segment_windows(rate_variants(val_segs, cfg.min_rate), seq_len, cfg.stride)
    if not len(train_w) or not len(val_w):
        raise ValueError(f"real tracks in {cfg.realdata}: {len(train_w)} training / {len(val_w)} validation windows "
                         f"of {seq_len} steps; need at least one of each")
    train = TrackWindowStream(train_w, cfg.augment, cfg.synthetic_fraction, seed, cfg.synthetic)
    info = {"sequences": sorted({s.seq for s in segments}), "holdout": cfg.holdout,
            "train_windows": len(train_w), "val_windows": len(val_w),
            "train_segments": len(train_segs), "val_segments": len(val_segs)}
    return train, torch.as_tensor(val_w), info
