# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae track-mot`` against its peers ByteTrack and OC-SORT (boxmot) on the same detections, scored alike.

Runs the motion-only trackers ByteTrack [1] and OC-SORT [2] from ``boxmot`` 25.0.0, and the ``track-mot``
tracker (offline; online with a 30-frame latency; with constant-velocity refinement; association only), on the
shared detections (MOT17 YOLOX-X "ablation" detections of ByteTrack / OC-SORT / UCMCTrack, or the MOT15
Faster R-CNN detections), with their published MOT17 evaluation settings, writes MOTChallenge result
files ``OUT/<tracker>/<SEQ>.txt`` (``frame,id,x,y,w,h,score,-1,-1,-1``, original frame numbers, pixels),
times each tracker's update loop on one thread and scores the results with TrackEval (HOTA, MOTA, IDF1)
through :mod:`pyro_dvae.metrics.mot_eval`, one call per tracker. The peers' output filter (below) is theirs;
``track-mot``'s output is scored unfiltered. This is a script, not a pytest test (its name does not start
with ``test_``).

Install: ``pip install -e .[peers]`` (``boxmot==25.0.0``, ``torchvision<0.29``, ``trackeval==1.3.0``; on a
CPU-only machine install torch first so that pip keeps the CPU build).

Command (from the repository root)::

    OMP_NUM_THREADS=1 python tests/benchmarks/mot_peers.py --out-dir /tmp/mot_peers/mot17 \\
        --out-json /tmp/mot_peers/mot17.json                     # MOT17-02/04/09, val-half
    OMP_NUM_THREADS=1 python tests/benchmarks/mot_peers.py --mot-dir ../shared/realdata/mot \\
        --det-file det/det_frcnn.txt --out-dir /tmp/mot_peers/mot15 --out-json /tmp/mot_peers/mot15.json

Protocol
--------
* Sequences: every ``<SEQ>/seqinfo.ini`` under ``--mot-dir`` (or ``--seqs``); ``N = seqLength``.
* MOT17 "val-half" (default on when every sequence is a MOT17 one): the YOLOX-X ablation detector was
  trained on the first half of each sequence, so a fresh tracker starts at frame ``N//2 + 2`` and runs to
  ``N`` (02: 302-600, 04: 527-1050, 09: 264-525) and only those frames are scored (gt and results
  restricted to them) [1, 2]. MOT15 has no such protocol: whole sequences (``--no-val-half``).
* Detections: ``det/det.txt`` columns ``frame, k, x, y, w, h, score`` (MOT17 YOLOX-X, scores 0.01-0.96);
  for MOT15 ``det/det_frcnn.txt`` (Faster R-CNN, scores 0-1). They are given to boxmot as
  ``(n, 6)`` ``x1, y1, x2, y2, score, cls=0`` with no image: both trackers are motion-only (IoU
  association, no re-identification, no camera-motion compensation); boxmot's ``update(dets, frame=None)``
  accepts a missing frame, which it would use only for appearance features, camera-motion
  compensation or the size normalisation of the ``centroid`` association, none of which is used here.
* Output filter of both official evaluators (``yolox/evaluators/mot_evaluator.py`` in both repos): keep a
  box when ``w * h > min_box_area`` (100, ``--min-box-area`` in ByteTrack's ``tools/track.py`` and OC-SORT's
  ``utils/args.py``) and not ``w / h > 1.6`` ("vertical" boxes of a standing pedestrian only).
* Identities: boxmot numbers tracks from 0; the result files use ``id + 1``.

Settings (boxmot 25.0.0 constructor argument in brackets)
---------------------------------------------------------
ByteTrack (paper [1] section 4.1 and repo ``tools/track.py`` / ``yolox/evaluators/mot_evaluator.py``,
ifzhang/ByteTrack):

* high-score threshold ``track_thresh = 0.6`` [``track_thresh``]; low-score boxes ``0.1 < s < 0.6`` enter
  the second association [``min_conf = 0.1``];
* first-association matching threshold ``match_thresh = 0.9`` on the score-fused IoU distance
  [``match_thresh``] (second association 0.5, unconfirmed 0.7: fixed in both codes);
* lost tracks kept ``track_buffer = 30`` frames, 14 for MOT17-05/06 and 25 for MOT17-13/14 (the per-sequence
  override of the official evaluator) [``track_buffer``, with ``frame_rate = 30`` as the official code
  constructs ``BYTETracker(args)`` with its default frame rate 30 on every sequence];
* a new track starts from an unmatched high box with ``score >= det_thresh = track_thresh + 0.1 = 0.7``
  (official ``BYTETracker.__init__``); boxmot sets ``det_thresh = track_thresh``, so the script sets
  ``tracker.det_thresh = 0.7`` after construction.
* The official evaluator also raises ``track_thresh`` (0.65-0.75) on the MOT17 *test* sequences
  01/06/12/14; none of them is in the val-half study, so not applied here.
* On other data (MOT15) the same settings are applied unchanged: ``frame_rate = 30`` as in the official
  evaluator, so lost tracks live 30 frames whatever the frame rate (4.3 s on the 7 fps PETS09-S2L1).

OC-SORT (paper [2] section 4 "Implementation details" and repo ``utils/args.py`` /
``yolox/evaluators/mot_evaluator.py::evaluate_ocsort``, noahcao/OC_SORT):

* detection threshold ``det_thresh = 0.6`` (``--track_thresh``) [``det_thresh``];
* IoU threshold ``0.3`` (``--iou_thresh``) [``iou_threshold``], association ``iou`` [``asso_func="iou"``];
* velocity-direction consistency: ``delta_t = 3`` (``--deltat``) [``delta_t``], ``inertia = 0.2``
  (``--inertia``) [``inertia``];
* ``max_age = 30`` [``max_age``], ``min_hits = 3`` [``min_hits``] (``OCSort`` defaults, not overridden by the
  evaluator); no BYTE stage (``--use_byte`` off) [``use_byte=False``].

Timing: frames per second of the tracker's ``update`` calls alone (detections pre-parsed, output
filtering and file writing excluded), one thread (``torch.set_num_threads(1)``; run with
``OMP_NUM_THREADS=1``), best of ``--repeats`` runs (the outputs are deterministic).

References
----------
[1] Y. Zhang, P. Sun, Y. Jiang, D. Yu, F. Weng, Z. Yuan, P. Luo, W. Liu, X. Wang (2022), "ByteTrack:
    Multi-Object Tracking by Associating Every Detection Box", ECCV; https://github.com/ifzhang/ByteTrack.
[2] J. Cao, J. Pang, X. Weng, R. Khirodkar, K. Kitani (2023), "Observation-Centric SORT: Rethinking SORT
    for Robust Multi-Object Tracking", CVPR; https://github.com/noahcao/OC_SORT.
[3] J. Luiten et al. (2021), "HOTA: A Higher Order Metric for Evaluating Multi-Object Tracking", IJCV;
    TrackEval https://github.com/JonathonLuiten/TrackEval.
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import time

import numpy as np

from pyro_dvae.data.mot import read_det, read_seqinfo
from pyro_dvae.data.mot_results import val_half as _val_half
from pyro_dvae.data.mot_results import write_results as _write_results

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MOT_DIR = os.path.join(REPO_ROOT, "..", "shared", "realdata", "mot17")
PEERS = ("bytetrack", "ocsort")
#: pyro-dvae track-mot configurations run in the same benchmark: (TrackerConfig options, online latency).
OURS = {"pyro-dvae": ({}, None), "pyro-dvae-online": ({}, 30), "pyro-dvae-cv": ({"dynamics": "cv"}, None),
        "pyro-dvae-assoc": ({"refine": False}, None)}
TRACKERS = PEERS + tuple(OURS)
METRIC_KEYS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "FP", "FN")

# Published settings (see the module docstring for the sources).
BYTETRACK = dict(track_thresh=0.6, match_thresh=0.9, track_buffer=30, min_conf=0.1, frame_rate=30)
BYTETRACK_NEW_TRACK_THRESH = 0.7  # official det_thresh = track_thresh + 0.1
BYTETRACK_BUFFER_OVERRIDES = {"MOT17-05": 14, "MOT17-06": 14, "MOT17-13": 25, "MOT17-14": 25}
OCSORT = dict(det_thresh=0.6, iou_threshold=0.3, delta_t=3, inertia=0.2, max_age=30, min_hits=3,
              asso_func="iou", use_byte=False, min_conf=0.1)
MIN_BOX_AREA = 100.0
MAX_ASPECT = 1.6


# --------------------------------------------------------------------------------------------------
# data


def _seq_key(name):
    """``MOT17-02-FRCNN`` -> ``MOT17-02`` (the per-sequence overrides are keyed by the video)."""
    parts = name.split("-")
    return "-".join(parts[:2]) if name.startswith("MOT") and len(parts) >= 2 else name


def load_detections(det_path, first, last):
    """Per-frame ``(n, 6)`` float32 arrays ``x1, y1, x2, y2, score, cls=0`` for frames ``first..last``."""
    det = read_det(det_path)
    out = []
    for fr in range(first, last + 1):
        sel = det.frame == fr
        b = det.boxes[sel]
        a = np.zeros((len(b), 6), dtype=np.float32)
        a[:, 0:2] = b[:, 0:2]
        a[:, 2:4] = b[:, 0:2] + b[:, 2:4]
        a[:, 4] = det.score[sel]
        out.append(a)
    return out


# --------------------------------------------------------------------------------------------------
# trackers


def make_tracker(name, seq):
    if name == "bytetrack":
        from boxmot import ByteTrack

        cfg = dict(BYTETRACK, track_buffer=BYTETRACK_BUFFER_OVERRIDES.get(_seq_key(seq), BYTETRACK["track_buffer"]))
        tracker = ByteTrack(**cfg)
        tracker.det_thresh = BYTETRACK_NEW_TRACK_THRESH
        return tracker
    if name == "ocsort":
        from boxmot import OcSort

        return OcSort(**OCSORT)
    raise ValueError(f"unknown tracker {name!r}; choose from {TRACKERS}")


def run_ours(name, seq_dir, det_file, info, first, last):
    """One pass of ``pyro-dvae track-mot``'s tracker (configuration ``OURS[name]``) on the detections as the
    command reads them (:func:`pyro_dvae.models.mot_tracker.files.load_detections`, frames ``first..last``):
    ``(frames, ids, boxes_xywh, scores)`` (no output filter) and the seconds of the whole
    :func:`~pyro_dvae.models.mot_tracker.track_sequence` call (association and MixDVAE refinement)."""
    from pyro_dvae.models.mot_tracker import TrackerConfig, track_sequence
    from pyro_dvae.models.mot_tracker.files import load_detections as load_for_track_mot

    options, latency = OURS[name]
    frames, boxes, scores = load_for_track_mot(seq_dir, det_file)
    keep = (frames >= first) & (frames <= last)
    t0 = time.perf_counter()
    out = track_sequence(frames[keep], boxes[keep], scores[keep], info.width, info.height,
                         frame_rate=info.frame_rate or 30.0, config=TrackerConfig(**options), latency=latency)
    return out, time.perf_counter() - t0


def run_tracker(name, seq, dets_per_frame, first):
    """One pass of a fresh tracker. Returns ``(frames, ids, boxes_xywh, scores)`` after the output filter and
    the seconds spent in ``update``."""
    tracker = make_tracker(name, seq)
    frames, ids, boxes, scores = [], [], [], []
    elapsed = 0.0
    for k, dets in enumerate(dets_per_frame):
        t0 = time.perf_counter()
        out = tracker.update(dets)  # no image: motion-only trackers with IoU association
        elapsed += time.perf_counter() - t0
        if len(out) == 0:
            continue
        x1, y1, x2, y2 = out[:, 0], out[:, 1], out[:, 2], out[:, 3]
        w, h = x2 - x1, y2 - y1
        keep = (w * h > MIN_BOX_AREA) & ~(w / h > MAX_ASPECT)
        n = int(keep.sum())
        frames.append(np.full(n, first + k, dtype=np.int64))
        ids.append(out[keep, 4].astype(np.int64) + 1)
        boxes.append(np.stack([x1, y1, w, h], 1)[keep])
        scores.append(out[keep, 5])
    cat = lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape)  # noqa: E731
    return (cat(frames, (0,)).astype(np.int64), cat(ids, (0,)).astype(np.int64), cat(boxes, (0, 4)),
            cat(scores, (0,))), elapsed


# --------------------------------------------------------------------------------------------------
# scoring


def score(gt_files, result_files, frames, seq_lengths):
    """Score with :func:`pyro_dvae.metrics.mot_eval.evaluate` (TrackEval, the same call for every tracker)."""
    from pyro_dvae.metrics.mot_eval import evaluate

    return evaluate(gt_files=gt_files, result_files=result_files, frames=frames, seq_lengths=seq_lengths)


# --------------------------------------------------------------------------------------------------
# main


def format_table(results):
    cols = ("tracker", "sequence") + METRIC_KEYS + ("fps",)
    lines = ["{:<16} {:<16}".format(*cols[:2]) + "".join(f"{c:>8}" for c in cols[2:])]
    for name, r in results.items():
        for seq, row in list(r["per_sequence"].items()) + [("COMBINED", r["combined"])]:
            vals = []
            for k in METRIC_KEYS + ("fps",):
                v = row.get(k, float("nan"))
                vals.append(f"{v:>8d}" if isinstance(v, (int, np.integer)) else f"{float(v):>8.1f}")
            lines.append(f"{name:<16} {seq:<16}" + "".join(vals))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mot-dir", default=DEFAULT_MOT_DIR,
                   help="folder of <SEQ>/{seqinfo.ini,gt,det} (default: %(default)s)")
    p.add_argument("--seqs", nargs="+", default=None, help="sequence folder names (default: all under --mot-dir)")
    p.add_argument("--det-file", default="det/det.txt",
                   help="detections, relative to the sequence folder (default %(default)s: MOT17 YOLOX-X ablation "
                        "detections; MOT15: det/det_frcnn.txt)")
    p.add_argument("--val-half", action=argparse.BooleanOptionalAction, default=None,
                   help="run and score frames N//2+2..N only (default: on when all sequences are MOT17)")
    p.add_argument("--out-dir", default=os.path.join(tempfile.gettempdir(), "mot_peers"),
                   help="result files are written as OUT/<tracker>/<SEQ>.txt (default: %(default)s)")
    p.add_argument("--trackers", nargs="+", choices=TRACKERS, default=list(TRACKERS))
    p.add_argument("--repeats", type=int, default=3, help="timing: best of this many passes (default %(default)s)")
    p.add_argument("--out-json", default=None, help="also write the table as JSON here")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    try:
        import boxmot
        import boxmot.utils  # installs boxmot's INFO log handler; silence its per-tracker settings lines
    except ImportError:
        sys.exit("boxmot is not installed: pip install -e .[peers]  (boxmot==25.0.0)")
    logging.getLogger("boxmot").setLevel(logging.WARNING)

    mot_dir = os.path.abspath(args.mot_dir)
    seqs = args.seqs or sorted(d for d in os.listdir(mot_dir)
                               if os.path.exists(os.path.join(mot_dir, d, "seqinfo.ini")))
    if not seqs:
        sys.exit(f"no sequences (<SEQ>/seqinfo.ini) under {mot_dir}")
    val_half = args.val_half if args.val_half is not None else all(s.startswith("MOT17") for s in seqs)

    frames, seq_lengths, gt_files, dets, infos = {}, {}, {}, {}, {}
    for seq in seqs:
        info = infos[seq] = read_seqinfo(os.path.join(mot_dir, seq))
        seq_lengths[seq] = info.length
        frames[seq] = _val_half(info.length) if val_half else (1, info.length)
        gt_files[seq] = os.path.join(mot_dir, seq, "gt", "gt.txt")
        dets[seq] = load_detections(os.path.join(mot_dir, seq, args.det_file), *frames[seq])

    print(f"boxmot {boxmot.__version__}; {mot_dir}; det {args.det_file}; "
          f"{'val-half' if val_half else 'whole sequences'}; results in {os.path.abspath(args.out_dir)}")
    results = {}
    for name in args.trackers:
        result_files, fps = {}, {}
        for seq in seqs:
            first, last = frames[seq]
            best = None
            for _ in range(max(1, args.repeats)):
                out, elapsed = (run_ours(name, os.path.join(mot_dir, seq), args.det_file, infos[seq], first, last)
                                if name in OURS
                                else run_tracker(name, seq, dets[seq], first))
                best = elapsed if best is None else min(best, elapsed)
            path = os.path.join(args.out_dir, name, f"{seq}.txt")
            _write_results(path, *out)
            result_files[seq] = path
            fps[seq] = (last - first + 1) / best
        r = score(gt_files, result_files, frames, seq_lengths)
        r = {"per_sequence": {s: dict(r["per_sequence"][s], fps=fps[s]) for s in seqs},
             "combined": dict(r["combined"], fps=sum(frames[s][1] - frames[s][0] + 1 for s in seqs)
                              / sum((frames[s][1] - frames[s][0] + 1) / fps[s] for s in seqs))}
        results[name] = r
    print(f"scored with pyro_dvae.metrics.mot_eval (TrackEval); fps = frames / seconds in update (peers) or in "
          f"track_sequence (pyro-dvae: association and refinement), 1 thread, best of {args.repeats}")
    print(format_table(results))
    if args.out_json:
        os.makedirs(os.path.dirname(os.path.abspath(args.out_json)), exist_ok=True)
        with open(args.out_json, "w", encoding="utf-8") as f:
            json.dump({"mot_dir": mot_dir, "det_file": args.det_file, "val_half": val_half, "frames": frames,
                       "boxmot": boxmot.__version__, "scorer": "pyro_dvae.metrics.mot_eval",
                       "settings": {"bytetrack": dict(BYTETRACK, det_thresh=BYTETRACK_NEW_TRACK_THRESH,
                                                      track_buffer_overrides=BYTETRACK_BUFFER_OVERRIDES),
                                    "ocsort": OCSORT, "min_box_area": MIN_BOX_AREA, "max_aspect": MAX_ASPECT},
                       "results": results}, f, indent=1, default=float)
    return results


if __name__ == "__main__":
    main()
