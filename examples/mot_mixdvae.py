#!/usr/bin/env python
# SPDX-License-Identifier: Apache-2.0
"""MixDVAE multi-object tracking vs the Deep AR and VKF baselines, with no download.

Two scenes:

1. Real pedestrians: the TUD-Stadtmitte and TUD-Campus ground truth that ships inside the
   ``motmetrics`` wheel (640x480, 25 fps), cut into MOT-3T windows (T frames, 3 identities present in
   every frame). Detections are *simulated* from the ground truth: Gaussian noise of std 5 % of the box
   width/height on every coordinate, 10 % of the boxes dropped at random, on average one occlusion per
   track and window hiding it for 5-20 frames (never in the first 5 frames), and the detection order
   shuffled in every frame.
2. A synthetic scene where three pedestrians cross in the middle of the window (same noise/drop-out).

All methods use the same assignment model, likelihood, initialisation (a greedy IoU tracker) and VEM
through the registry; MixDVAE uses the shipped SRNN prior, Deep AR the shipped LSTM autoregressive
model (both trained on the same synthetic trajectories), VKF a constant-velocity Kalman smoother.

Run: ``python examples/mot_mixdvae.py [--iters 20] [--out-dir mot_example]``
"""

import argparse
import os
import time

import motmetrics
import numpy as np
import torch

from pyro_dvae import pretrained, priors
from pyro_dvae.data.mot import SeqInfo, build_windows, read_gt
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
from pyro_dvae.metrics import tracking_metrics
from pyro_dvae.models.tracking import run_tracking

TUD = {"TUD-Stadtmitte": 179, "TUD-Campus": 71}


def tud_windows(seq_len, seed):
    data = os.path.join(os.path.dirname(motmetrics.__file__), "data")
    windows = []
    for name, length in TUD.items():
        gt = read_gt(os.path.join(data, name, "gt.txt"))
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
        paths = plot_windows(gt, estimates, plot_dir, indices=pick_windows(len(gt), num_plots), obs=obs,
                             obs_mask=mask, titles=titles, names=[f"{key}_window{i:03d}" for i in range(len(gt))],
                             **extra)
        for path in paths:
            print(f"  figure: {path}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=20, help="VEM iterations")
    parser.add_argument("--seq-len", type=int, default=60)
    parser.add_argument("--prior", help="prior checkpoint (default: the shipped SRNN trajectory prior)")
    parser.add_argument("--out-dir", default="mot_example", help="where the PNG figures go")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--num-plots", type=int, default=3, help="figures per scene (windows spread over the batch)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models = {"mixdvae": priors.load(args.prior) if args.prior else pretrained.load(),
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
    return results


if __name__ == "__main__":
    main()
