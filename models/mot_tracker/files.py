# SPDX-License-Identifier: Apache-2.0
"""Whole sequences from and to files (what ``pyro-dvae track-mot`` runs): every sequence tracked
(:func:`~pyro_dvae.models.mot_tracker.track_sequence`), written in the MOTChallenge result format, and scored with
TrackEval against its ground truth.

- :func:`load_detections` / :func:`load_sequence_inputs`: the checked detections of sequence folders, as the
  :class:`SequenceInput` s to track;
- :func:`track_sequences`: track every loaded sequence, write ``<out_dir>/<SEQ>.txt``, return the summary dict;
- :func:`evaluate_sequences`: TrackEval's HOTA / CLEAR / Identity scores of the written results (needs the ``eval``
  extra);
- :func:`track_mot_folder`: all of it from a MOTChallenge folder (what ``pyro-dvae track-mot`` runs);
- :func:`tracker_settings`: the :class:`TrackerConfig` and latency of the command's options, refusing options that
  would be ignored.

The messages name the options of ``pyro-dvae track-mot`` that set each input (``--det-file``, ``--val-half``, ...).
"""

import os
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np

from .config import TrackerConfig
from .run import track_sequence

#: frames of latency of ``--online`` when ``--latency`` is not given
DEFAULT_LATENCY = 30
#: the header of the per-sequence table
TABLE_HEADER = f"{'sequence':16s} {'frames':>7s} {'dets':>7s} {'tracks':>7s} {'seconds':>8s} {'fps':>7s}"


@dataclass
class SequenceInput:
    """One sequence to track: its :class:`~pyro_dvae.data.mot.SeqInfo`, the frames ``first..last`` tracked and
    scored, and its detections in those frames (``frames (n,)``, ``boxes (n, 4)`` ``x, y, w, h`` in pixels,
    ``scores (n,)``)."""

    info: object
    first: int
    last: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


#: the ``track-mot`` options that set fields of :class:`TrackerConfig` (field name: option), the refinement's first
TRACKER_OPTIONS = {"dynamics": "--dynamics", "window": "--window", "iters": "--iters", "latents": "--latents",
                   "smoother": "--smoother", "velocity_scale": "--velocity-scale", "camera": "--camera",
                   "relink": "--relink", "predict": "--predict"}
REFINEMENT_OPTIONS = ("dynamics", "window", "iters", "latents", "smoother", "velocity_scale", "camera")


def tracker_settings(*, no_refine=False, online=False, latency=None, prior=None, **options):
    """``(config, latency)`` from the options of ``pyro-dvae track-mot`` (``None``: the option was not given).

    :param options: the :data:`TRACKER_OPTIONS` fields given (``dynamics="cv"``, ``smoother="parallel"``, ...).

    Options that would be ignored are one-line :class:`ValueError` s naming them: ``--latency`` without
    ``--online``, a refinement option (``--prior``, ``--dynamics``, ``--window``, ``--iters``, ``--latents``,
    ``--smoother``, ``--velocity-scale``, ``--camera``) with ``--no-refine`` (``--prior`` is allowed there with
    ``--predict dvae``), ``--latents`` or ``--smoother`` with ``--dynamics cv`` (only the DVAE refinement has them),
    ``--velocity-scale`` or ``--camera`` but with the velocity smoother, ``--prior`` with ``--dynamics cv`` and
    neither ``--relink dvae`` nor ``--predict dvae`` (then nothing uses a prior),
    ``--relink`` with ``--online`` (re-linking is offline).

    :returns: the :class:`TrackerConfig` (the options given over its defaults) and the latency in frames
        (:data:`DEFAULT_LATENCY` with ``online`` and no ``latency``; ``None``: offline).
    """
    unknown = sorted(set(options) - set(TRACKER_OPTIONS))
    if unknown:
        raise TypeError(f"tracker_settings() got unknown options {unknown}; known: {sorted(TRACKER_OPTIONS)}")
    fields = {k: v for k, v in options.items() if v is not None}
    dynamics, relink, predict = fields.get("dynamics"), fields.get("relink"), fields.get("predict")

    def shown(name):
        value = fields[name]
        return f"{TRACKER_OPTIONS[name]} {value:g}" if isinstance(value, float) else f"{TRACKER_OPTIONS[name]} {value}"

    if no_refine:
        given = ([] if prior is None or "dvae" in (relink, predict) else ["--prior"])
        given += [TRACKER_OPTIONS[k] for k in REFINEMENT_OPTIONS if k in fields]
        if given:
            raise ValueError(f"{', '.join(given)} {'sets' if len(given) == 1 else 'set'} the refinement, which "
                             f"--no-refine turns off: drop {' and '.join(given)} or --no-refine")
    if latency is not None and not online:
        raise ValueError(f"--latency {latency} needs --online (offline tracking refines each track once its "
                         "sequence is over): add --online or drop --latency")
    config = TrackerConfig(refine=not no_refine, **fields)
    if online and relink not in (None, "off"):
        raise ValueError(f"--relink {relink} with --online: re-linking reads tracks born later (offline only); "
                         "drop --relink or --online")
    if dynamics == "cv":
        for name, why in (("latents", "constant velocity has no latents"),
                          ("smoother", "the smoother is the DVAE refinement's")):
            if name in fields:
                raise ValueError(f"{shown(name)} with --dynamics cv: {why}; drop {TRACKER_OPTIONS[name]} or "
                                 "--dynamics cv")
    for name in ("velocity_scale", "camera"):
        if name in fields and (dynamics == "cv" or config.smoother != "velocity"):
            why = "--dynamics cv" if dynamics == "cv" else f"--smoother {config.smoother}"
            raise ValueError(f"{shown(name)} with {why}: it sets the prior's velocity in --smoother velocity "
                             f"only; drop {TRACKER_OPTIONS[name]} or {why}")
    if prior is not None and dynamics == "cv" and "dvae" not in (config.relink, config.predict):
        raise ValueError("--prior with --dynamics cv: nothing uses a prior; drop --prior, or use it with --dynamics "
                         "dvae, --relink dvae or --predict dvae")
    return config, ((DEFAULT_LATENCY if latency is None else latency) if online else None)


def load_detections(seq_dir, det_file):
    """The checked detections of one sequence folder.

    A missing or empty file, scores outside [0, 1] or frame numbers under 1 are errors; exact duplicate rows are
    dropped with a warning; NaN or non-positive boxes are dropped with a warning
    (:func:`~pyro_dvae.data.mot.read_det`).

    :param str seq_dir: the sequence folder.
    :param str det_file: the detection file (``frame, -1, x, y, w, h, score, ...``), relative to ``seq_dir``.
    :returns: ``(frames (n,), boxes (n, 4) x, y, w, h, scores (n,))``, sorted by frame.
    """
    from pyro_dvae.data.mot import read_detection_file

    path = os.path.join(seq_dir, det_file)
    det = read_detection_file(seq_dir, det_file)
    if det.score.min() < 0 or det.score.max() > 1:
        raise ValueError(f"--det-file {path}: scores from {det.score.min():g} to {det.score.max():g}, outside "
                         "[0, 1]; the tracker's thresholds are probabilities (MOT15: use det/det_frcnn.txt, whose "
                         "scores are calibrated)")
    if det.frame.min() < 1:
        raise ValueError(f"--det-file {path}: frame numbers start at 1, found {det.frame.min()}")
    rows = np.column_stack([det.frame, det.boxes, det.score])
    unique = np.unique(rows, axis=0)
    if len(unique) < len(rows):
        warnings.warn(f"{path}: dropped {len(rows) - len(unique)} duplicate detection rows", stacklevel=2)
    return unique[:, 0].astype(int), unique[:, 1:5], unique[:, 5]


def load_sequence_inputs(folders, det_file="det/det.txt", *, val_half=False, need_gt=False):
    """The sequences to track: each folder's ``seqinfo.ini`` and checked detections (:func:`load_detections`) in
    the frames tracked.

    Detections beyond the sequence's length are an error; a sequence without detections in its frames a warning.

    :param dict folders: ``{name: folder}`` (:func:`~pyro_dvae.data.mot.sequence_folders`).
    :param str det_file: the detection file, relative to each folder.
    :param bool val_half: only frames ``N // 2 + 2 .. N`` (:func:`~pyro_dvae.data.mot_results.val_half`, the MOT17
        protocol with detectors trained on the first half); else every frame.
    :param bool need_gt: every folder must hold ``gt/gt.txt`` (to be scored).
    :returns: ``{name: SequenceInput}``.
    """
    from pyro_dvae.data.mot import read_seqinfo
    from pyro_dvae.data.mot_results import val_half as half

    inputs = {}
    for seq, seq_dir in folders.items():
        info = read_seqinfo(seq_dir)
        first, last = half(info.length) if val_half else (1, info.length)
        frames, boxes, scores = load_detections(seq_dir, det_file)
        if frames.max() > info.length:
            raise ValueError(f"--det-file {seq}: detections up to frame {frames.max()}, beyond seqLength "
                             f"{info.length} in {seq}/seqinfo.ini")
        keep = (frames >= first) & (frames <= last)
        if not keep.any():
            warnings.warn(f"{seq}: no detections in frames {first}-{last}"
                          + (" (--val-half)" if val_half else "") + ": every object is missed", stacklevel=2)
        if need_gt and not os.path.isfile(os.path.join(seq_dir, "gt", "gt.txt")):
            raise FileNotFoundError(f"--eval: {seq} has no gt/gt.txt")
        inputs[seq] = SequenceInput(info, first, last, frames[keep], boxes[keep], scores[keep])
    return inputs


def format_row(seq, row):
    """One sequence's row of the table under :data:`TABLE_HEADER`."""
    n = row["frames"][1] - row["frames"][0] + 1
    return (f"{seq:16s} {n:7d} {row['detections']:7d} {row['tracks']:7d} {row['seconds']:8.2f} "
            f"{row['fps']:7.1f}")


def track_sequences(inputs, out_dir, *, prior=None, latency=None, seed=0, config=None, report=None, **overrides):
    """Track every sequence and write its results as ``<out_dir>/<SEQ>.txt`` (MOTChallenge result format).

    :param dict inputs: ``{name: SequenceInput}``.
    :param str out_dir: the results folder (created).
    :param prior: the DVAE trajectory prior of the refinement (default:
        :data:`~pyro_dvae.models.mot_tracker.config.DEFAULT_PRIOR`).
    :param int latency: online mode with this latency in frames (``None``: offline).
    :param int seed: random seed of the refinement.
    :param TrackerConfig config: the tracker's settings.
    :param callable report: ``report(name, row)`` called after each sequence (e.g. to print :func:`format_row`).
    :param overrides: fields of :class:`TrackerConfig` replacing those of ``config``.
    :returns: the summary dict: ``mode``, ``latency``, ``refine``, ``dynamics`` (``None`` without refinement) and
        ``sequences``
        (``{name: {"frames": [first, last], "detections", "tracks", "seconds", "fps", "results": path}}``).
    """
    from pyro_dvae.data.mot_results import write_results

    cfg = replace(config, **overrides) if config is not None else TrackerConfig(**overrides)
    online = latency is not None
    summary = {"mode": "online" if online else "offline", "latency": latency, "refine": cfg.refine,
               "dynamics": cfg.dynamics if cfg.refine else None,
               "relink": cfg.relink if latency is None else "off", "sequences": {}}
    for seq, x in inputs.items():
        t0 = time.perf_counter()
        f, i, b, s = track_sequence(x.frames, x.boxes, x.scores, x.info.width, x.info.height,
                                    frame_rate=x.info.frame_rate or 30.0, prior=prior, config=cfg, seed=seed,
                                    latency=latency)
        seconds = time.perf_counter() - t0
        path = os.path.join(out_dir, f"{seq}.txt")
        write_results(path, f, i, b, s)
        n = x.last - x.first + 1
        row = {"frames": [x.first, x.last], "detections": int(len(x.frames)), "tracks": int(len(np.unique(i))),
               "seconds": seconds, "fps": n / seconds, "results": path}
        summary["sequences"][seq] = row
        if report is not None:
            report(seq, row)
    return summary


def evaluate_sequences(mot_dir, inputs, summary):
    """TrackEval's scores of the results written by :func:`track_sequences` against ``<mot_dir>/<SEQ>/gt/gt.txt``,
    over each sequence's tracked frames (:func:`pyro_dvae.metrics.mot_eval.evaluate`)."""
    from pyro_dvae.metrics.mot_eval import evaluate

    seqs = list(inputs)
    return evaluate({q: os.path.join(mot_dir, q, "gt", "gt.txt") for q in seqs},
                    {q: summary["sequences"][q]["results"] for q in seqs},
                    frames={q: tuple(summary["sequences"][q]["frames"]) for q in seqs},
                    seq_lengths={q: inputs[q].info.length for q in seqs})


def track_mot_folder(mot_dir, out_dir, seqs=None, *, det_file="det/det.txt", val_half=False, prior=None,
                     latency=None, seed=0, config=None, evaluate=False, log=None):
    """Track the whole sequences of a MOTChallenge folder from their detection files, write the results and
    optionally score them: ``pyro-dvae track-mot``.

    The steps: the prior of the refinement (a checkpoint or shipped name that is no box-trajectory prior is an
    error before any work or output: :func:`~pyro_dvae.models.tracking.run.load_tracking_prior`), the sequence
    folders (:func:`~pyro_dvae.data.mot.sequence_folders`), their checked detections
    (:func:`load_sequence_inputs`), the tracking and the result files (:func:`track_sequences`) and, with
    ``evaluate``, TrackEval's scores (:func:`evaluate_sequences`; a missing TrackEval or ground truth is an error
    before any tracking).

    :param str mot_dir: a folder of MOTChallenge sequences (``<SEQ>/seqinfo.ini``, detections, ``gt/gt.txt``).
    :param str out_dir: the results folder: one ``<SEQ>.txt`` per sequence (created).
    :param list seqs: sequence names (default: every sub-folder of ``mot_dir``).
    :param str det_file: the detection file, relative to each sequence folder.
    :param bool val_half: track and score only frames ``N // 2 + 2 .. N`` (the MOT17 protocol).
    :param prior: the DVAE trajectory prior of the refinement: a checkpoint path, a shipped name (``"srnn_mot"``)
        or a loaded prior (default: :data:`~pyro_dvae.models.mot_tracker.config.DEFAULT_PRIOR`, the real-track
        SRNN); unused without refinement or with ``dynamics="cv"``, unless
        re-linking or lost tracks' predictions use it (``relink`` / ``predict`` ``"dvae"``).
    :param int latency: online mode with this latency in frames (``None``: offline).
    :param int seed: random seed of the refinement.
    :param TrackerConfig config: the tracker's settings.
    :param bool evaluate: score the results against each ``<SEQ>/gt/gt.txt`` with TrackEval (the ``eval`` extra).
    :param log: called with each line of text: the table's header, one row per sequence and, with ``evaluate``,
        the scores table (``None``: silent).
    :returns: the summary dict of :func:`track_sequences`, with ``evaluate`` also ``eval`` (the scores).
    """
    from pyro_dvae.data.mot import sequence_folders

    from ..tracking.run import load_tracking_prior

    say = log if log is not None else (lambda *a, **k: None)
    cfg = config or TrackerConfig()
    if prior is not None and ((cfg.refine and cfg.dynamics == "dvae") or "dvae" in (cfg.relink, cfg.predict)):
        prior = load_tracking_prior(prior, "--prior")
    folders = sequence_folders(mot_dir, seqs)
    if evaluate:
        import importlib.util

        if importlib.util.find_spec("trackeval") is None:  # fail now, not after the tracking
            raise ValueError("--eval needs TrackEval: pip install -e \".[eval]\" (trackeval==1.3.0)")
    inputs = load_sequence_inputs(folders, det_file, val_half=val_half, need_gt=evaluate)
    say(TABLE_HEADER)
    summary = track_sequences(inputs, out_dir, prior=prior, latency=latency, seed=seed, config=config,
                              report=lambda seq, row: say(format_row(seq, row)))
    if evaluate:
        from pyro_dvae.metrics.mot_eval import format_table

        summary["eval"] = evaluate_sequences(mot_dir, inputs, summary)
        say(format_table(summary["eval"]))
    return summary
