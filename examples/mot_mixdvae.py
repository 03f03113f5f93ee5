#!/usr/bin/env python
# SPDX-License-Identifier: Apache-2.0
"""MixDVAE multi-object tracking vs the Deep AR and VKF baselines, with no download.

Three parts:

1. Real pedestrians: the TUD-Stadtmitte and TUD-Campus ground truth that ships inside the
   ``motmetrics`` wheel (640x480, 25 fps), cut into MOT-3T windows (T frames, 3 identities present in
   every frame). Detections are *simulated* from the ground truth: Gaussian noise of std 5 % of the box
   width/height on every coordinate, 10 % of the boxes dropped at random, on average one occlusion per
   track and window hiding it for 5-20 frames (never in the first 5 frames), and the detection order
   shuffled in every frame.
2. A synthetic scene where three pedestrians cross in the middle of the window (same noise/drop-out).
3. Whole sequences: the same two TUD sequences tracked from start to end by the whole-sequence tracker
   (``pyro_dvae.models.mot_tracker.track_sequence``: births and deaths, ByteTrack-style two-tier association,
   then refinement of every track in 60-frame windows), with three settings of its second stage: DVAE
   dynamics (``dvae``, the shipped SRNN prior, whose one-step displacement steers a constant-velocity smoother:
   the default smoother of ``track-mot``), constant-velocity dynamics (``cv``, the VKF of the same model) and
   association only (``assoc-only``, no refinement: only the detected frames are reported).
   Detections are simulated from the gt with a seeded rng (``numpy.random.default_rng([seed, k])`` for
   sequence ``k``): 10 % of the gt boxes dropped, per track one occlusion gap of 5-20 frames per started 60
   frames of its life, Gaussian jitter of std 4 % of the box width/height on x, y, w, h, scores uniform in
   [0.5, 1]; plus 1-2 false positives per frame (pedestrian-sized, anywhere in the image, scores uniform in
   [0.1, 0.6], so that they only enter the low-score association tier). Each sequence is scored whole with
   TrackEval (``pyro_dvae.metrics.mot_eval``: HOTA, MOTA, IDF1, ID switches; the combined row pools both
   sequences) when ``trackeval`` is installed, otherwise with motmetrics (MOTA, IDF1, IDSW; no HOTA). The
   comparison is repeated on ``--seq-draws`` draws of the detections (mean and range of the combined
   scores), and one figure shows dvae vs cv on TUD-Stadtmitte: box x / y centre against the frame, gt
   dashed, estimates solid, one colour per gt identity shared by the estimated track matched to it
   (Hungarian assignment on the frames with IoU >= 0.5), unmatched tracks grey.

In parts 1-2 all methods use the same assignment model, likelihood, initialisation (a greedy IoU tracker) and
VEM through the registry; MixDVAE uses the shipped SRNN prior, Deep AR the shipped LSTM autoregressive
model (both trained on the same synthetic trajectories), VKF a constant-velocity Kalman smoother.

Run: ``python examples/mot_mixdvae.py [--iters 20] [--out-dir mot_example] [--no-plot] [--seq-draws 3] [--threads 1]``
"""

import argparse
import importlib.util
import os
import tempfile
import time

import motmetrics
import numpy as np
import torch

from pyro_dvae import pretrained
from pyro_dvae.data.mot import SeqInfo, build_windows, iou_xyxy, read_gt, xywh_to_xyxy
from pyro_dvae.data.mot_results import write_results
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
from pyro_dvae.engine import threads
from pyro_dvae.metrics import tracking_metrics
from pyro_dvae.models.mot_tracker import TrackerConfig, track_sequence
from pyro_dvae.models.tracking import run_tracking
from pyro_dvae.models.tracking.run import load_tracking_prior

TUD = {"TUD-Stadtmitte": 179, "TUD-Campus": 71}
WIDTH, HEIGHT, FPS = 640, 480, 25.0
#: the whole-sequence methods: one tracker, three settings of its second stage
SEQ_METHODS = {"dvae": dict(dynamics="dvae"), "cv": dict(dynamics="cv"), "assoc-only": dict(refine=False)}
DRAWS = 3
SEQ_LABELS = {"dvae": "MixDVAE dynamics (dvae)", "cv": "constant velocity (cv)", "assoc-only": "association only"}


def tud_gt_path(name):
    return os.path.join(os.path.dirname(motmetrics.__file__), "data", name, "gt.txt")


def tud_windows(seq_len, seed):
    windows = []
    for name, length in TUD.items():
        gt = read_gt(tud_gt_path(name))
        windows += build_windows(gt, None, SeqInfo(name, 640, 480, length), seq_len=seq_len, num_sources=3,
                                 stride=20, combos_per_window=10, seed=seed)
    return np.stack([w.gt for w in windows]), windows


def evaluate(name, gt, models, iters, seed, plot_dir=None, num_plots=3, windows=None, seq_len=None):
    obs, mask, _ = simulate_detections(gt, noise=0.05, drop=0.1, seed=seed, occlusions=1.0, max_occlusion=20)
    obs_t, mask_t = torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(mask)
    rows, estimates = {}, {}
    for method in ("mixdvae", "deepar", "vkf"):
        t0 = time.perf_counter()
        est, res = run_tracking(obs_t, mask_t, gt.shape[2], method=method, prior=models.get(method), num_iters=iters,
                                seed=seed)
        m = tracking_metrics(list(gt), list(est.numpy()))
        m["seconds"] = time.perf_counter() - t0
        rows[method], estimates[method] = m, est.numpy()
    print(f"\n{name}: {gt.shape[0]} windows x {gt.shape[1]} frames x {gt.shape[2]} sources")
    cols = ("MOTA", "IDF1", "MOTP", "#IDS", "#FP", "#FN", "seconds")
    print(f"  {'method':8s} " + " ".join(f"{c:>6s}" for c in cols))
    for method, m in rows.items():
        print(f"  {method:8s} {100 * m['mota']:6.1f} {100 * m['idf1']:6.1f} {100 * (1 - m['motp']):6.1f} "
              f"{m['num_switches']:6d} {m['num_false_positives']:6d} {m['num_misses']:6d} {m['seconds']:7.2f}")
    if plot_dir:
        from pyro_dvae.plot import pick_windows, plot_windows

        # a few windows spread over the batch, all methods in one figure per window (with that window's metrics)
        key, scene = name.split()[0].lower(), name.split("(")[0].strip()
        if windows:  # real sequences: name the sequence, its frames and the MOT track ids
            titles = [f"{w.seq} frames {w.start}-{w.start + seq_len - 1} (window {i}, simulated detections)"
                      for i, w in enumerate(windows)]
            extra = dict(frame0=[w.start for w in windows], gt_ids=[w.ids for w in windows])
        else:
            titles, extra = [f"{scene}: window {i}" for i in range(len(gt))], {}
        paths = plot_windows(gt, estimates, plot_dir, indices=pick_windows(len(gt), num_plots), detections=(obs, mask),
                             titles=titles, names=[f"{key}_window{i:03d}" for i in range(len(gt))], **extra)
        for path in paths:
            print(f"  figure: {path}")
    return rows


# ------------------------------------------------------------------------------------------ whole sequences
def simulate_sequence_detections(gt, seed, drop=0.1, jitter=0.04, gap=(5, 20), false_pos=(1, 2)):
    """Detections simulated from a whole sequence's gt (``read_gt`` table), with a seeded rng: each gt box dropped
    with probability ``drop``; per track one occlusion gap of ``gap`` frames per started 60 frames of its life
    (not in its first 5 frames; none for a track shorter than 30 frames); Gaussian jitter of std ``jitter`` x the
    box width / height on x, y, w, h; scores uniform in [0.5, 1]; ``false_pos`` (min, max) false positives per
    frame, pedestrian-sized (the size of a random gt box), anywhere in the image, scores uniform in [0.1, 0.6].
    Returns ``frames, boxes (x, y, w, h), scores``."""
    rng = np.random.default_rng(seed)
    keep = rng.random(len(gt.frame)) >= drop
    for tid in np.unique(gt.ids):
        rows = np.flatnonzero(gt.ids == tid)
        if len(rows) < 30:
            continue
        for _ in range(int(np.ceil(len(rows) / 60))):
            g = int(rng.integers(gap[0], gap[1] + 1))
            start = int(rng.integers(5, max(6, len(rows) - g)))
            keep[rows[start:start + g]] = False
    frames, boxes = gt.frame[keep], np.asarray(gt.boxes[keep], float)
    boxes = boxes + rng.normal(0.0, jitter, boxes.shape) * np.tile(boxes[:, 2:], 2)
    scores = rng.uniform(0.5, 1.0, len(frames))
    n_fp = rng.integers(false_pos[0], false_pos[1] + 1, int(gt.frame.max()))
    fp_frames = np.repeat(np.arange(1, len(n_fp) + 1), n_fp)
    wh = np.asarray(gt.boxes, float)[rng.integers(len(gt.boxes), size=len(fp_frames)), 2:]
    xy = rng.uniform(0, 1, (len(fp_frames), 2)) * ([WIDTH, HEIGHT] - wh)
    fp_scores = rng.uniform(0.1, 0.6, len(fp_frames))
    return (np.concatenate([frames, fp_frames]).astype(int), np.concatenate([boxes, np.concatenate([xy, wh], 1)]),
            np.concatenate([scores, fp_scores]))


def trackeval_available():
    return importlib.util.find_spec("trackeval") is not None


def score_motmetrics(gt_files, results, lengths):
    """Fallback scoring without TrackEval: motmetrics MOTA / IDF1 / ID switches with our own IoU (motmetrics'
    ``iou_matrix`` is broken on numpy 2); no HOTA. Same return layout as ``mot_eval.evaluate``."""
    import motmetrics as mm

    accs = []
    for seq, path in gt_files.items():
        gt, (ef, ei, eb, _) = read_gt(path), results[seq]
        gb, eb = xywh_to_xyxy(gt.boxes), xywh_to_xyxy(eb)
        acc = mm.MOTAccumulator(auto_id=True)
        for f in range(1, lengths[seq] + 1):
            a, b = np.flatnonzero(gt.frame == f), np.flatnonzero(ef == f)
            iou = iou_xyxy(gb[a], eb[b])
            acc.update(gt.ids[a].tolist(), ei[b].tolist(), np.where(iou >= 0.5, 1.0 - iou, np.nan))
        accs.append(acc)
    names = list(gt_files)
    summary = mm.metrics.create().compute_many(
        accs, metrics=["mota", "idf1", "num_switches", "num_false_positives", "num_misses"], names=names,
        generate_overall=True)

    def row(r):
        return {"HOTA": None, "MOTA": 100 * float(r["mota"]), "IDF1": 100 * float(r["idf1"]),
                "IDSW": int(r["num_switches"]), "FP": int(r["num_false_positives"]), "FN": int(r["num_misses"])}

    return {"per_sequence": {seq: row(summary.loc[seq]) for seq in names}, "combined": row(summary.loc["OVERALL"])}


def score_sequences(gt_files, results, lengths, scorer):
    """``{"per_sequence": {seq: row}, "combined": row}`` of one method's ``{seq: (frames, ids, boxes, scores)}``."""
    if scorer == "trackeval":
        from pyro_dvae.metrics import mot_eval

        with tempfile.TemporaryDirectory(prefix="mot_mixdvae_") as tmp:
            files = {}
            for seq, res in results.items():
                files[seq] = os.path.join(tmp, f"{seq}.txt")
                write_results(files[seq], *res)
            return mot_eval.evaluate(gt_files, files, frames=None, seq_lengths=lengths)
    return score_motmetrics(gt_files, results, lengths)


def whole_sequences(prior, iters, seed, plot_dir=None, scorer="auto", draws=1):
    """The whole-sequence tracker (births, deaths, refinement) on the two TUD sequences, three settings."""
    why = ""
    if scorer == "auto":
        scorer = "trackeval" if trackeval_available() else "motmetrics"
        why = "" if scorer == "trackeval" else "trackeval not installed: "
    gt_files = {name: tud_gt_path(name) for name in TUD}
    gts = {name: read_gt(path) for name, path in gt_files.items()}
    print(f"\nWhole sequences (TUD-Stadtmitte {TUD['TUD-Stadtmitte']} + TUD-Campus {TUD['TUD-Campus']} frames, "
          f"motmetrics gt, {WIDTH}x{HEIGHT}, {FPS:g} fps): births, deaths, association, refinement")
    print(f"  detections simulated (rng seed {seed}): 10 % of the gt boxes dropped, occlusion gaps of 5-20 frames, "
          "4 % box jitter, 1-2 false positives per frame")
    print(f"  {iters} VEM iterations per 60-frame window; scored by "
          + ("TrackEval (HOTA, CLEAR, Identity)" if scorer == "trackeval" else
             f"motmetrics with our IoU ({why}no HOTA)"))
    scores, outputs, dets, seconds = {}, {}, {}, {}
    for k, name in enumerate(TUD):
        dets[name] = simulate_sequence_detections(gts[name], seed=[seed, k])
    for method, kw in SEQ_METHODS.items():
        cfg = TrackerConfig(iters=iters, window=60, **kw)
        t0 = time.perf_counter()
        outputs[method] = {name: track_sequence(*dets[name], WIDTH, HEIGHT, frame_rate=FPS, prior=prior, config=cfg,
                                                seed=seed) for name in TUD}
        seconds[method] = time.perf_counter() - t0
        scores[method] = score_sequences(gt_files, outputs[method], TUD, scorer)
    cols = ("HOTA", "MOTA", "IDF1", "IDSW", "FP", "FN")
    print(f"  {'method':11s} {'sequence':15s} " + " ".join(f"{c:>5s}" for c in cols) + "  tracks  seconds")
    for method, res in scores.items():
        for r, (seq, row) in enumerate([*res["per_sequence"].items(), ("COMBINED", res["combined"])]):
            cells = " ".join("  n/a" if row.get(c) is None else f"{row[c]:5.1f}" if c in ("HOTA", "MOTA", "IDF1")
                             else f"{int(row[c]):5d}" for c in cols)
            n_tracks = (sum(len(np.unique(o[1])) for o in outputs[method].values()) if seq == "COMBINED"
                        else len(np.unique(outputs[method][seq][1])))
            tail = f"  {n_tracks:6d}" + (f"  {seconds[method]:7.2f}" if seq == "COMBINED" else "")
            print(f"  {method if r == 0 else '':11s} {seq:15s} {cells}{tail}")
    if draws > 1:  # the same comparison on further draws of the simulated detections (combined rows only)
        extra = {m: [] for m in SEQ_METHODS}
        for d in range(1, draws):
            d_dets = {name: simulate_sequence_detections(gts[name], seed=[seed + d, k]) for k, name in enumerate(TUD)}
            for method, kw in SEQ_METHODS.items():
                cfg = TrackerConfig(iters=iters, window=60, **kw)
                out = {name: track_sequence(*d_dets[name], WIDTH, HEIGHT, frame_rate=FPS, prior=prior, config=cfg,
                                            seed=seed) for name in TUD}
                extra[method].append(score_sequences(gt_files, out, TUD, scorer)["combined"])
        key = "HOTA" if scorer == "trackeval" else "MOTA"
        print(f"  combined {key} / IDF1 over {draws} draws of the detections (seeds {seed}..{seed + draws - 1}), "
              "mean (min-max):")
        for method in SEQ_METHODS:
            rows = [scores[method]["combined"], *extra[method]]
            txt = "   ".join(f"{c} {np.mean([r[c] for r in rows]):5.1f} ({min(r[c] for r in rows):.1f}-"
                             f"{max(r[c] for r in rows):.1f})" for c in (key, "IDF1"))
            print(f"  {method:11s} {txt}")
        if key == "HOTA":  # where the difference between the two dynamics comes from
            parts = ("HOTA", "DetA", "AssA", "LocA")
            mean = {m: {c: np.mean([r[c] for r in [scores[m]["combined"], *extra[m]]]) for c in parts}
                    for m in ("dvae", "cv")}
            print("  dvae - cv, mean of the draws: " + ", ".join(f"{c} {mean['dvae'][c] - mean['cv'][c]:+.1f}"
                                                                 for c in parts)
                  + ". Both smooth each track with a constant-velocity model; dvae also reads the velocity that the "
                  "prior forecasts from the track's past (DetA: boxes found, AssA: identities kept, LocA: overlap "
                  "of the boxes found).")
    if plot_dir:
        from pyro_dvae.plot import plot_sequence

        seq = "TUD-Stadtmitte"
        gt = gts[seq]
        path = os.path.join(plot_dir, f"{seq.lower()}_whole_sequence.png")
        plot_sequence(gt.frame, gt.ids, gt.boxes, {SEQ_LABELS[m]: outputs[m][seq][:3] for m in ("dvae", "cv")}, path,
                      title=f"{seq}, whole sequence ({TUD[seq]} frames): tracker with births/deaths, refined with "
                            f"MixDVAE vs constant-velocity dynamics\n(simulated detections: 10 % misses, occlusion "
                            f"gaps, 1-2 false positives per frame, seed {seed})",
                      metrics={SEQ_LABELS[m]: scores[m]["per_sequence"][seq] for m in ("dvae", "cv")},
                      detections=dets[seq][:2], width=WIDTH, height=HEIGHT)
        print(f"  figure: {path}")
    return scores


def _at_least_one(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=20, help="VEM iterations")
    parser.add_argument("--seq-len", type=int, default=60)
    parser.add_argument("--prior", help="prior checkpoint or shipped name (default: the shipped SRNN trajectory prior)")
    parser.add_argument("--out-dir", default="mot_example", help="where the PNG figures go")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--num-plots", type=int, default=3, help="figures per scene (windows spread over the batch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=_at_least_one, default=1,
                        help="torch CPU threads (1 is fastest for these model sizes on a busy machine)")
    parser.add_argument("--seq-scorer", choices=["auto", "trackeval", "motmetrics"], default="auto",
                        help="whole-sequence scores: TrackEval when installed (auto), or motmetrics (no HOTA)")
    parser.add_argument("--seq-draws", type=_at_least_one, default=DRAWS,
                        help="draws of the simulated detections for the whole-sequence mean (1: the table only)")
    args = parser.parse_args(argv)
    threads(args.threads)
    models = {"mixdvae": load_tracking_prior(args.prior) if args.prior else pretrained.load(),
              "deepar": pretrained.load("deepar_mot")}
    plot_dir = None
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401

            plot_dir = args.out_dir
            os.makedirs(plot_dir, exist_ok=True)
        except ImportError:
            print("(matplotlib not installed: no figure; pip install 'pyro-dvae[plot]')")
    gt_tud, windows = tud_windows(args.seq_len, args.seed)
    results = {"tud": evaluate("TUD real pedestrians (motmetrics gt, simulated detections)", gt_tud, models,
                               args.iters, args.seed, plot_dir, args.num_plots, windows, args.seq_len)}
    gt_cross = np.stack([crossing_scene(args.seq_len, 3, seed=s) for s in range(16)])
    results["crossing"] = evaluate("Crossing synthetic scene (clearly synthetic)", gt_cross, models, args.iters,
                                   args.seed, plot_dir, args.num_plots)
    results["sequences"] = whole_sequences(models["mixdvae"], args.iters, args.seed, plot_dir, args.seq_scorer,
                                           args.seq_draws)
    return results


if __name__ == "__main__":
    main()
