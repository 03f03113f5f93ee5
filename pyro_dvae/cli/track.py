# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae track``: MixDVAE multi-object tracking on MOTChallenge sequences (the MOT-3T protocol: N
identities picked from the ground truth per window)."""

import math
import os
import time
import warnings

from .common import add_command, float_in, int_at_least, read_detection_file, sequence_folders, set_threads

METHODS = ("mixdvae", "vkf", "deepar")
EXAMPLE = "pyro-dvae track --mot-dir ../shared/realdata/mot --seqs TUD-Stadtmitte --method mixdvae --method vkf"


def add_parser(sub, parents):
    from .. import inference

    p = add_command(sub, "track", "multi-object tracking on MOTChallenge sequences (MOT-3T windows)",
                    EXAMPLE, parents)
    at1 = int_at_least(1)
    p.add_argument("--mot-dir", required=True, help="folder of MOTChallenge sequences (<SEQ>/gt/gt.txt, det/)")
    p.add_argument("--seqs", nargs="+", help="sequence names (default: all in --mot-dir)")
    p.add_argument("--seq-len", type=int_at_least(2), default=60, help="frames per window")
    p.add_argument("--num-sources", type=at1, default=3, help="identities tracked per window")
    p.add_argument("--stride", type=at1, default=40, help="frames between window starts")
    p.add_argument("--combos", type=at1, default=20, help="random N-identity combinations per window")
    p.add_argument("--min-score", type=float_in(), help="drop detections scoring below this")
    p.add_argument("--det-file", default="det/det.txt", help="detections, relative to each sequence folder")
    p.add_argument("--second-half", action="store_true", help="only windows in the second half of each sequence")
    p.add_argument("--clutter", action="store_true", help="keep unmatched detections near the sources as clutter")
    p.add_argument("--clutter-prob", type=float_in(0.0, 1.0, high_open=True), default=0.1,
                   help="prior weight of the clutter class (with --clutter)")
    p.add_argument("--init-gt", action="store_true",
                   help="seed the sources with their first-frame ground-truth boxes (identity given at t=0)")
    p.add_argument("--prior", help="prior checkpoint (default: the shipped SRNN trajectory prior)")
    p.add_argument("--deepar-prior", help="Deep AR checkpoint for --method deepar (default: the shipped one)")
    p.add_argument("--method", action="append", choices=METHODS,
                   help="repeat to compare (default: all of " + ", ".join(METHODS) + ")")
    p.add_argument("--algo", default="vem", choices=inference.available(), help="MixDVAE inference algorithm")
    p.add_argument("--iters", type=at1, default=20, help="iterations per window")
    p.add_argument("--plot", metavar="DIR", help="folder for PNG figures of a few windows")
    p.set_defaults(run=run, outputs=[("plot", "--plot", "dir")])
    return p


def load_detections(seq_dir, det_file, min_score):
    """``(info, gt, det, counts)`` of one sequence; a missing or empty ``--det-file`` is an error, detections
    all removed by ``--min-score`` a warning."""
    from ..data.mot import load_sequence

    seq = os.path.basename(os.path.normpath(seq_dir))
    det = read_detection_file(seq_dir, det_file)
    info, gt, _ = load_sequence(seq_dir, det_file="")
    kept = len(det.frame) if min_score is None else int((det.score >= min_score).sum())
    if kept == 0:
        warnings.warn(f"--min-score {min_score:g} removes every detection of {seq} (scores {det.score.min():g} to "
                      f"{det.score.max():g}): every box is missed", stacklevel=2)
    return info, gt, det, {"detections": len(det.frame), "kept": kept}


def _fmt(value, scale=1.0, width=6, digits=1):
    return f"{'n/a':>{width}s}" if value is None or not math.isfinite(value) else f"{scale * value:{width}.{digits}f}"


def run(args):
    from .. import pretrained, priors
    from ..data.mot import WindowStats, build_windows
    from ..metrics import tracking_metrics
    from ..models.tracking import run_tracking, windows_to_tensors

    set_threads(args.threads)
    folders = sequence_folders(args.mot_dir, args.seqs)
    seqs = list(folders)
    stats, windows, counts = WindowStats(), [], {}
    for seq, folder in folders.items():
        info, gt, det, counts[seq] = load_detections(folder, args.det_file, args.min_score)
        windows += build_windows(gt, det, info, seq_len=args.seq_len, num_sources=args.num_sources,
                                 stride=args.stride, combos_per_window=args.combos, min_score=args.min_score,
                                 second_half=args.second_half, clutter=args.clutter, seed=args.seed, stats=stats)
    kept = sum(c["kept"] for c in counts.values())
    print(f"{len(windows)} windows of {args.seq_len} frames x {args.num_sources} sources from {', '.join(seqs)} "
          f"({stats.skipped_few_ids} windows skipped: fewer than {args.num_sources} identities present throughout); "
          f"{kept} of {sum(c['detections'] for c in counts.values())} detections kept"
          + ("" if args.min_score is None else f" (--min-score {args.min_score:g})"))
    if not windows:
        raise ValueError(f"no window could be built: no stretch of --seq-len {args.seq_len} frames has "
                         f"--num-sources {args.num_sources} identities present throughout")
    obs, mask, gt = windows_to_tensors(windows)
    prior = priors.load(args.prior) if args.prior else pretrained.load()
    deepar = priors.load(args.deepar_prior, expect="deepar") if args.deepar_prior else None
    results = {"detections": counts}
    methods, estimates = list(dict.fromkeys(args.method or METHODS)), {}
    print(f"{'method':10s} {'MOTA':>6s} {'MOTP':>6s} {'IDF1':>6s} {'#IDS':>5s} {'%IDS':>6s} {'MT':>4s} {'ML':>4s} "
          f"{'#FP':>6s} {'%FP':>6s} {'#FN':>6s} {'%FN':>6s} {'ms/it/seq':>9s}")
    for method in methods:
        t0 = time.perf_counter()
        if method == "deepar" and deepar is None:
            deepar = pretrained.load("deepar_mot")
        est, res = run_tracking(obs, mask, args.num_sources, method=method,
                                prior=deepar if method == "deepar" else prior, seeds=gt[:, 0] if args.init_gt else None,
                                algo=args.algo if method == "mixdvae" else "vem", num_iters=args.iters,
                                clutter_prob=args.clutter_prob if args.clutter else 0.0, seed=args.seed)
        m = tracking_metrics(list(gt.numpy()), list(est.numpy()))
        m.update(num_windows=len(windows), seconds_per_iter_per_seq=res.seconds_per_iter / len(windows),
                 seconds_total=time.perf_counter() - t0)
        results[method] = m
        motp = 1 - m["motp"] if m["motp"] is not None and math.isfinite(m["motp"]) else None
        print(f"{method:10s} {_fmt(m['mota'], 100)} {_fmt(motp, 100)} {_fmt(m['idf1'], 100)} "
              f"{m['num_switches']:5d} {_fmt(m['pct_switches'], 100, digits=2)} {m['mostly_tracked']:4d} "
              f"{m['mostly_lost']:4d} {m['num_false_positives']:6d} {_fmt(m['pct_false_positives'], 100, digits=2)} "
              f"{m['num_misses']:6d} {_fmt(m['pct_misses'], 100, digits=2)} "
              f"{_fmt(m['seconds_per_iter_per_seq'], 1000, 9, 3)}")
        estimates[method] = est.numpy()
    print("MOTP is reported as 100 * mean IoU of matched boxes (motmetrics' motp is 1 - IoU; the JSON keeps it); "
          "n/a: undefined (no matched box)")
    if args.plot:
        results["figures"] = _plot(args, windows, estimates)
    return results


def _plot(args, windows, estimates):
    """One figure per window for three windows spread over the run, every method in it; returns the paths."""
    from ..plot import pick_windows, plot_windows

    paths = plot_windows([w.gt for w in windows], estimates, args.plot, indices=pick_windows(len(windows), 3),
                         obs=[w.obs for w in windows], obs_mask=[w.obs_mask for w in windows],
                         titles=[f"{w.seq} frames {w.start}-{w.start + args.seq_len - 1}" for w in windows],
                         names=[f"{w.seq}_{w.start}_{i}" for i, w in enumerate(windows)],
                         frame0=[w.start for w in windows], gt_ids=[w.ids for w in windows])
    for path in paths:
        print(f"figure: {path}")
    return paths
