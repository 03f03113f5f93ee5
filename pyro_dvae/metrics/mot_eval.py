# SPDX-License-Identifier: Apache-2.0
"""Whole-sequence MOTChallenge scores (HOTA, CLEAR-MOT, IDF1) through TrackEval, the reference code of the
MOTChallenge benchmark.

:func:`evaluate` copies each sequence's gt and result file into a temporary folder, restricted to the
evaluated frames ``[first, last]`` and renumbered from 1 (TrackEval only accepts frames ``1..SEQ_INFO[seq]``),
then runs ``trackeval.Evaluator`` with ``MotChallenge2DBox`` (``BENCHMARK="MOT17"``, preprocessing on) and
the ``HOTA``, ``CLEAR`` and ``Identity`` metrics, on one core, printing nothing and writing no output files.

What TrackEval does with the gt (and how we feed it):

- MOT16/17 gt (``frame, id, x, y, w, h, consider, class, visibility``) is copied unchanged. Evaluated objects
  are the rows with ``consider == 1`` and class 1 (pedestrian). Tracker boxes matched (Hungarian, IoU >= 0.5)
  to a gt box of a distractor class (2 person on vehicle, 7 static person, 8 distractor, 12 reflection) are
  removed before scoring; a box on any other non-pedestrian object (car, occluder...) is a false positive.
- MOT15 gt (``frame, id, x, y, w, h, flag, wx, wy, wz``) has no class column: TrackEval would read the world
  coordinate ``wx`` as the class (``int(4.48) = 4``, a car, so the object is dropped) or refuse the file
  (``-1`` is no class). Its own answer is ``BENCHMARK="MOT15"``, which turns all preprocessing off. We
  rewrite such gt (detected as in :func:`pyro_dvae.data.mot.read_gt`) with class 1 and visibility 1, which
  gives the same scores as MOT15 mode (no distractors exist) and lets MOT15 and MOT17 sequences share
  one run; rows with ``flag == 0`` stay ignored, as in MOT15 mode.
- Identities are renumbered ``1..K`` per sequence and file (TrackEval allocates an array of size
  ``max(id) + 1``); scores do not depend on the labels.

HOTA and its sub-scores are TrackEval's averages over the localisation thresholds alpha = 0.05..0.95;
"combined" rows are TrackEval's ``COMBINED_SEQ`` (detections and associations pooled over sequences, not a
mean of the per-sequence values). Percentages are in [0, 100] (MOTA can be negative); counts are integers.

**References:**

[1] J. Luiten, A. Ošep, P. Dendorfer, P. Torr, A. Geiger, L. Leal-Taixé, B. Leibe (2021), "HOTA: A Higher
    Order Metric for Evaluating Multi-Object Tracking", IJCV 129, 548-578.
[2] J. Luiten, A. Hoffhues (2020), "TrackEval", https://github.com/JonathonLuiten/TrackEval (PyPI
    ``trackeval`` 1.3.0).
[3] K. Bernardin, R. Stiefelhagen (2008), "Evaluating Multiple Object Tracking Performance: The CLEAR MOT
    Metrics", EURASIP JIVP.
[4] E. Ristani, F. Solera, R. Zou, R. Cucchiara, C. Tomasi (2016), "Performance Measures and a Data Set for
    Multi-Target, Multi-Camera Tracking" (IDF1), ECCV workshops.
"""

import contextlib
import io
import math
import os
import tempfile

import numpy as np

from pyro_dvae.data.mot import has_class_column, parse_rows, read_seqinfo
from pyro_dvae.data.mot_results import load_numeric, read_results, val_half

__all__ = ["TABLE_COLUMNS", "evaluate", "format_table"]

# Percentages (HOTA family averaged over alpha, then CLEAR and Identity), then counts.
_HOTA_KEYS = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA")
_PERCENT_KEYS = _HOTA_KEYS + ("MOTA", "MOTP", "IDF1", "IDP", "IDR")
_COUNT_KEYS = ("IDSW", "FP", "FN", "TP", "MT", "PT", "ML", "Frag", "GT_Dets", "Dets", "GT_IDs", "IDs", "Frames")
TABLE_COLUMNS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "FP", "FN")

_TRACKER = "tracker"


def _import_trackeval():
    try:
        import trackeval
    except ImportError as e:
        raise ImportError("MOTChallenge scoring needs TrackEval: pip install -e .[eval] "
                          "(or pip install trackeval==1.3.0)") from e
    return trackeval


def _frame_range(seq, n, frames):
    if frames is None:
        return 1, n
    if isinstance(frames, str):
        if frames.replace("-", "_") != "val_half":
            raise ValueError(f"frames must be a dict {{seq: (first, last)}}, None or 'val_half', got {frames!r}")
        return val_half(n)
    if seq not in frames:
        raise ValueError(f"frames has no entry for sequence {seq!r}")
    try:
        first, last = frames[seq]
        first, last = int(first), int(last)
    except (TypeError, ValueError):
        raise ValueError(f"frames[{seq!r}] must be (first, last), got {frames[seq]!r}") from None
    if not 1 <= first <= last <= n:
        raise ValueError(f"frames[{seq!r}] = ({first}, {last}) is not inside 1..{n} (the sequence length)")
    return first, last


def _seq_length(seq, gt_path, seq_lengths):
    if seq_lengths is not None and seq in seq_lengths:
        n = seq_lengths[seq]
        if isinstance(n, bool) or not float(n).is_integer() or n < 1:
            raise ValueError(f"seq_lengths[{seq!r}] must be a positive integer, got {n!r}")
        return int(n)
    # MOTChallenge layout: <SEQ>/gt/gt.txt next to <SEQ>/seqinfo.ini.
    seq_dir = os.path.dirname(os.path.dirname(os.path.abspath(gt_path)))
    try:
        return read_seqinfo(seq_dir).length
    except FileNotFoundError:
        raise ValueError(f"no length for sequence {seq!r}: pass seq_lengths={{{seq!r}: N}} "
                         f"({os.path.join(seq_dir, 'seqinfo.ini')} not found)") from None


def _relabel(ids):
    return np.unique(ids, return_inverse=True)[1].reshape(-1) + 1


def _gt_rows(path, n, first, last):
    """The gt rows of frames first..last as MOT17 columns (frame renumbered from 1, ids from 1)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"gt file {path} not found")
    arr = load_numeric(path)
    if arr is None or (len(arr) and (arr.shape[1] < 6 or (arr[:, :2] != np.round(arr[:, :2])).any()
                                     or (arr[:, 0] < 1).any() or not np.isfinite(arr[:, :2]).all())):
        arr = parse_rows(path, 6, integer_id=True)  # ragged or bad: pads short rows with -1, or names the bad line
    if len(arr) == 0:
        return np.zeros((0, 9))
    if arr[:, 0].max() > n:
        i = int(np.argmax(arr[:, 0]))
        raise ValueError(f"{path}: gt frame {int(arr[i, 0])} is beyond the sequence length {n}")
    if not np.isfinite(arr[:, 2:6]).all():
        raise ValueError(f"{path}: NaN or infinite gt box")
    if has_class_column(arr):
        out = arr[:, :9].copy()
    else:  # MOT15 (or a bare 6/7-column file): flag (1 when absent), class 1 (pedestrian), visibility 1
        out = np.ones((len(arr), 9))
        out[:, :6] = arr[:, :6]
        if arr.shape[1] > 6:
            out[:, 6] = (arr[:, 6] != 0).astype(float)
    if (out[:, 1] < 0).any():
        raise ValueError(f"{path}: negative gt identity")
    keep = (out[:, 0] >= first) & (out[:, 0] <= last)
    out = out[keep]
    key = out[:, 0] * (out[:, 1].max(initial=0) + 1) + out[:, 1]
    uniq, counts = np.unique(key, return_counts=True)
    if (counts > 1).any():
        row = out[np.flatnonzero(key == uniq[np.argmax(counts > 1)])[0]]
        raise ValueError(f"{path}: gt identity {int(row[1])} has more than one box in frame {int(row[0])}")
    out[:, 0] -= first - 1
    out[:, 1] = _relabel(out[:, 1])
    return out


def _result_rows(path, n, first, last):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"result file {path} not found")
    res = read_results(path)
    if len(res.frame) and res.frame.max() > n:
        raise ValueError(f"{path}: result frame {int(res.frame.max())} is beyond the sequence length {n}")
    keep = (res.frame >= first) & (res.frame <= last)
    out = np.full((int(keep.sum()), 10), -1.0)
    out[:, 0] = res.frame[keep] - (first - 1)
    out[:, 1] = _relabel(res.ids[keep])
    out[:, 2:6] = res.boxes[keep]
    out[:, 6] = res.score[keep]
    return out


def _write(path, rows, int_cols):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fmt = ",".join("%d" if j in int_cols else "%.17g" for j in range(rows.shape[1])) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(fmt % tuple(r) for r in rows.tolist()))


def _num(v):
    v = float(v)
    return v if math.isfinite(v) else None


def _row(res, n_frames):
    h, c, i, cnt = res["HOTA"], res["CLEAR"], res["Identity"], res["Count"]
    row = {k: _num(100 * np.mean(h[k])) for k in _HOTA_KEYS}
    row.update({k: _num(100 * c[k]) for k in ("MOTA", "MOTP")})
    row.update({k: _num(100 * i[k]) for k in ("IDF1", "IDP", "IDR")})
    row.update(IDSW=int(c["IDSW"]), FP=int(c["CLR_FP"]), FN=int(c["CLR_FN"]), TP=int(c["CLR_TP"]), MT=int(c["MT"]),
               PT=int(c["PT"]), ML=int(c["ML"]), Frag=int(c["Frag"]), GT_Dets=int(cnt["GT_Dets"]),
               Dets=int(cnt["Dets"]), GT_IDs=int(cnt["GT_IDs"]), IDs=int(cnt["IDs"]), Frames=int(n_frames))
    return row


def evaluate(gt_files, result_files, frames=None, seq_lengths=None):
    """Score tracker result files against MOTChallenge gt with TrackEval.

    :param dict gt_files: ``{seq: gt_path}``, MOT15 or MOT16/17 gt files (see the module docstring).
    :param dict result_files: ``{seq: results_path}``, result files (:func:`pyro_dvae.data.mot_results.
        write_results`), same sequences; frames are the sequence's own numbers.
    :param frames: ``{seq: (first, last)}`` (1-based, inclusive) to score only those frames (gt and results
        outside are ignored), ``"val_half"`` for :func:`~pyro_dvae.data.mot_results.val_half` of every
        sequence, or ``None`` for whole sequences.
    :param dict seq_lengths: ``{seq: N}`` frames per sequence; a sequence missing here is read from
        ``seqinfo.ini`` two folders above its gt file. A gt or result frame beyond ``N`` is an error.
    :returns: ``{"per_sequence": {seq: row}, "combined": row}``; a row maps ``HOTA, DetA, AssA, DetRe, DetPr,
        AssRe, AssPr, LocA, MOTA, MOTP, IDF1, IDP, IDR`` to percentages (float, ``None`` if undefined) and
        ``IDSW, FP, FN, TP, MT, PT, ML, Frag, GT_Dets, Dets, GT_IDs, IDs, Frames`` to integers (``Frames``:
        evaluated frames). JSON-safe.
    """
    trackeval = _import_trackeval()
    gt_files, result_files = dict(gt_files), dict(result_files)
    if not gt_files:
        raise ValueError("gt_files is empty")
    if set(gt_files) != set(result_files):
        missing = sorted(set(gt_files) ^ set(result_files), key=str)
        raise ValueError(f"gt_files and result_files must name the same sequences; not in both: {missing}")
    if frames is not None and not isinstance(frames, str):
        extra = sorted(set(frames) - set(gt_files), key=str)
        if extra:
            raise ValueError(f"frames names sequences without gt: {extra}")

    seqs = list(gt_files)
    names = {seq: f"seq{k:04d}" for k, seq in enumerate(seqs)}  # safe folder names, whatever the keys
    with tempfile.TemporaryDirectory(prefix="pyro_dvae_trackeval_") as tmp:
        gt_fol, tr_fol = os.path.join(tmp, "gt"), os.path.join(tmp, "trackers")
        seq_info = {}
        for seq in seqs:
            n = _seq_length(seq, gt_files[seq], seq_lengths)
            first, last = _frame_range(seq, n, frames)
            name = names[seq]
            seq_info[name] = last - first + 1
            _write(os.path.join(gt_fol, name, "gt", "gt.txt"), _gt_rows(gt_files[seq], n, first, last),
                   {0, 1, 6, 7})
            _write(os.path.join(tr_fol, _TRACKER, "data", name + ".txt"),
                   _result_rows(result_files[seq], n, first, last), {0, 1, 7, 8, 9})

        dataset_config = {
            "GT_FOLDER": gt_fol, "TRACKERS_FOLDER": tr_fol, "OUTPUT_FOLDER": os.path.join(tmp, "out"),
            "TRACKERS_TO_EVAL": [_TRACKER], "CLASSES_TO_EVAL": ["pedestrian"], "BENCHMARK": "MOT17",
            "SPLIT_TO_EVAL": "train", "INPUT_AS_ZIP": False, "PRINT_CONFIG": False, "DO_PREPROC": True,
            "TRACKER_SUB_FOLDER": "data", "OUTPUT_SUB_FOLDER": "", "SEQ_INFO": seq_info,
            "GT_LOC_FORMAT": "{gt_folder}/{seq}/gt/gt.txt", "SKIP_SPLIT_FOL": True,
        }
        eval_config = {
            "USE_PARALLEL": False, "NUM_PARALLEL_CORES": 1, "BREAK_ON_ERROR": True, "RETURN_ON_ERROR": False,
            "LOG_ON_ERROR": None, "PRINT_RESULTS": False, "PRINT_ONLY_COMBINED": False, "PRINT_CONFIG": False,
            "TIME_PROGRESS": False, "DISPLAY_LESS_PROGRESS": True, "OUTPUT_SUMMARY": False,
            "OUTPUT_EMPTY_CLASSES": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False,
        }
        log = io.StringIO()
        try:
            # TrackEval prints progress (and tracebacks on errors) unconditionally.
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                evaluator = trackeval.Evaluator(eval_config)
                dataset = trackeval.datasets.MotChallenge2DBox(dataset_config)
                metrics = [trackeval.metrics.HOTA(),
                           trackeval.metrics.CLEAR({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
                           trackeval.metrics.Identity({"THRESHOLD": 0.5, "PRINT_CONFIG": False})]
                out, msg = evaluator.evaluate([dataset], metrics)
        except trackeval.utils.TrackEvalException as e:
            raise RuntimeError(f"TrackEval failed: {e}\n{log.getvalue()[-2000:]}") from e

    res = out["MotChallenge2DBox"][_TRACKER]
    if res is None:
        raise RuntimeError(f"TrackEval failed: {msg['MotChallenge2DBox'][_TRACKER]}\n{log.getvalue()[-2000:]}")
    per_seq = {seq: _row(res[names[seq]]["pedestrian"], seq_info[names[seq]]) for seq in seqs}
    combined = _row(res["COMBINED_SEQ"]["pedestrian"], sum(seq_info.values()))
    return {"per_sequence": per_seq, "combined": combined}


def format_table(result, columns=TABLE_COLUMNS):
    """A plain-text table of :func:`evaluate`'s result: one line per sequence, then ``COMBINED``.
    Percentages with one decimal, counts as integers, ``-`` for undefined values."""
    rows = list(result["per_sequence"].items()) + [("COMBINED", result["combined"])]
    cells = [["Sequence", *columns]]
    for seq, row in rows:
        line = [str(seq)]
        for c in columns:
            v = row.get(c)
            line.append("-" if v is None else f"{v:.1f}" if c in _PERCENT_KEYS else str(int(v)))
        cells.append(line)
    widths = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
    fmt = lambda r: "  ".join(v.ljust(widths[j]) if j == 0 else v.rjust(widths[j]) for j, v in enumerate(r))  # noqa: E731
    lines = [fmt(cells[0]), "-" * len(fmt(cells[0]))] + [fmt(r) for r in cells[1:]]
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)
