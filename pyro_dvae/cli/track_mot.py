# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae track-mot``: whole-sequence multi-object tracking of MOTChallenge detection files (births and
deaths, any number of objects, MixDVAE refinement), written in the MOTChallenge result format and optionally
scored with TrackEval."""

import os
import time
import warnings

import numpy as np

from .common import add_command, int_at_least, read_detection_file, sequence_folders, set_threads

EXAMPLE = ("pyro-dvae track-mot --mot-dir ../shared/realdata/mot17 --val-half --out-dir results --eval "
           "--out-json track.json")


def add_parser(sub, parents):
    p = add_command(sub, "track-mot", "track whole MOTChallenge sequences from their detection files "
                                  "(births, deaths, MixDVAE refinement)", EXAMPLE, parents)
    p.add_argument("--mot-dir", required=True, help="folder of MOTChallenge sequences (<SEQ>/seqinfo.ini, det/)")
    p.add_argument("--seqs", nargs="+", help="sequence names (default: all in --mot-dir)")
    p.add_argument("--det-file", default="det/det.txt",
                   help="detections (frame, -1, x, y, w, h, score, ...; scores in [0, 1]), relative to each "
                        "sequence folder")
    p.add_argument("--val-half", action="store_true",
                   help="track and score only frames N//2+2..N (the MOT17 protocol with detectors trained on the "
                        "first half)")
    p.add_argument("--out-dir", required=True, help="folder for one <SEQ>.txt result file per sequence")
    p.add_argument("--prior", help="DVAE trajectory prior for the refinement (default: the shipped SRNN)")
    p.add_argument("--online", action="store_true", help="online mode: a box for frame t is final at t + --latency")
    p.add_argument("--latency", type=int_at_least(1), default=30, help="frames of latency with --online")
    p.add_argument("--no-refine", action="store_true", help="association only (no MixDVAE refinement)")
    p.add_argument("--dynamics", choices=["dvae", "cv"], default="dvae",
                   help="refinement dynamics: the DVAE prior (MixDVAE) or constant velocity (the VKF baseline)")
    p.add_argument("--window", type=int_at_least(2), default=60, help="frames per refinement window")
    p.add_argument("--iters", type=int_at_least(1), default=10, help="VEM iterations per refinement window")
    p.add_argument("--eval", action="store_true",
                   help="score against <SEQ>/gt/gt.txt with TrackEval (HOTA, MOTA, IDF1; needs the 'eval' extra)")
    p.set_defaults(run=run, outputs=[("out_dir", "--out-dir", "dir")])
    return p


def load_detections(seq_dir, det_file):
    """``(frames, boxes xywh, scores)`` of one sequence's detections, checked: a missing or empty file, scores
    outside [0, 1] or frame numbers under 1 are errors; rows come out sorted by frame; exact duplicate rows are
    dropped with a warning; NaN or non-positive boxes are dropped with a warning (``read_det``)."""
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


def run(args):
    from .. import priors
    from ..data.mot import read_seqinfo
    from ..data.mot_results import val_half, write_results
    from ..models.mot_tracker import TrackerConfig, track_sequence

    set_threads(args.threads)
    folders = sequence_folders(args.mot_dir, args.seqs)
    seqs = list(folders)
    if args.eval:
        import importlib.util

        if importlib.util.find_spec("trackeval") is None:  # fail now, not after the tracking
            raise ValueError("--eval needs TrackEval: pip install -e \".[eval]\" (trackeval==1.3.0)")
    inputs = {}
    for seq, seq_dir in folders.items():
        info = read_seqinfo(seq_dir)
        first, last = val_half(info.length) if args.val_half else (1, info.length)
        frames, boxes, scores = load_detections(seq_dir, args.det_file)
        if frames.max() > info.length:
            raise ValueError(f"--det-file {seq}: detections up to frame {frames.max()}, beyond seqLength "
                             f"{info.length} in {seq}/seqinfo.ini")
        keep = (frames >= first) & (frames <= last)
        if not keep.any():
            warnings.warn(f"{seq}: no detections in frames {first}-{last}"
                          + (" (--val-half)" if args.val_half else "") + ": every object is missed", stacklevel=2)
        if args.eval and not os.path.isfile(os.path.join(seq_dir, "gt", "gt.txt")):
            raise FileNotFoundError(f"--eval: {seq} has no gt/gt.txt")
        inputs[seq] = (info, (first, last), frames[keep], boxes[keep], scores[keep])
    prior = priors.load(args.prior) if args.prior else None
    cfg = TrackerConfig(refine=not args.no_refine, dynamics=args.dynamics, window=args.window, iters=args.iters)
    summary = {"mode": "online" if args.online else "offline", "latency": args.latency if args.online else None,
               "refine": cfg.refine, "dynamics": cfg.dynamics, "sequences": {}}
    print(f"{'sequence':16s} {'frames':>7s} {'dets':>7s} {'tracks':>7s} {'seconds':>8s} {'fps':>7s}")
    for seq, (info, (first, last), frames, boxes, scores) in inputs.items():
        t0 = time.perf_counter()
        f, i, b, s = track_sequence(frames, boxes, scores, info.width, info.height, info.frame_rate or 30.0,
                                    prior=prior, config=cfg, seed=args.seed,
                                    latency=args.latency if args.online else None)
        seconds = time.perf_counter() - t0
        path = os.path.join(args.out_dir, f"{seq}.txt")
        write_results(path, f, i, b, s)
        n = last - first + 1
        summary["sequences"][seq] = {"frames": [first, last], "detections": int(len(frames)),
                                     "tracks": int(len(np.unique(i))), "seconds": seconds, "fps": n / seconds,
                                     "results": path}
        print(f"{seq:16s} {n:7d} {len(frames):7d} {len(np.unique(i)):7d} {seconds:8.2f} {n / seconds:7.1f}")
    if args.eval:
        from ..metrics.mot_eval import evaluate, format_table

        res = evaluate({q: os.path.join(args.mot_dir, q, "gt", "gt.txt") for q in seqs},
                       {q: summary["sequences"][q]["results"] for q in seqs},
                       frames={q: tuple(summary["sequences"][q]["frames"]) for q in seqs},
                       seq_lengths={q: inputs[q][0].length for q in seqs})
        summary["eval"] = res
        print(format_table(res))
    return summary
