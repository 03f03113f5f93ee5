# SPDX-License-Identifier: Apache-2.0
"""Motion priors as forecasters on held-out real pedestrian tracks: given the boxes up to frame ``t``, the box at
``t + k`` with no observation in between (an occlusion of ``k`` frames).

Forecasters:

* ``cv``: the constant-velocity Kalman filter of the tracker's association (``models/mot_tracker/association.py``,
  ``(cx, cy, w, h)`` in pixels, noise proportional to the box height), run through the context frame by frame
  (predict, update), then predicted ``k`` times;
* ``static``: the last observed box (the forecast of a random walk), for scale;
* each DVAE prior given with ``--prior NAME=PATH`` (a checkpoint or a shipped name): its mean forecast
  (:func:`pyro_dvae.forecast.dvae_forecast`: the encoder's latents on the context, then the prior's means rolled
  forward), on image-normalised ``(x1, y1, x2, y2)`` boxes, the tracker's convention.

Samples (:mod:`pyro_dvae.data.tracks`): windows of ``--context`` + ``max(--horizons)`` consecutive visible gt boxes
of one identity (MOT17: visibility >= 0.25), starts ``--stride`` steps apart; the first ``--context`` are observed.
Two frame rates per sequence: ``native`` and ``low`` (each track subsampled, every phase, by the largest integer
factor that keeps it at 7 fps or more: MOT17 and Venice-2 7.5 fps, ETH-Sunnyday 7, KITTI-17 10, PETS09-S2L1 and
TUD-Stadtmitte as they are, 7 and 8.3), so that ``k`` spans about the same time everywhere.

Held-out data (``--split heldout``, never trained on): MOT17-02/04/09 frames ``N // 2 + 2 .. N`` (the val-half
protocol) with every prior as given; the MOT15 sequences PETS09-S2L1, KITTI-17, ETH-Sunnyday and Venice-2 left out
one at a time (``--loso NAME=PATTERN``: prior ``NAME`` is replaced, on sequence ``SEQ``, by the checkpoint
``PATTERN`` with ``{seq}`` replaced by ``SEQ``, trained without it; a prior without ``--loso`` is used as it is,
which is honest only for priors that never saw MOT15, such as the synthetic ``srnn_mot``); TUD-Stadtmitte (the
main example's scene, never trained on) whole. ``--split dev``: the validation identities of the training part
(:func:`pyro_dvae.data.tracks.split_identities`, what ``train-prior --data mot-tracks`` validates on), to choose
settings.

Errors, per sample: ``iou`` (higher is better) and ``centre`` = the distance between the forecast and the true box
centres divided by the true box height (lower is better); per forecaster, data set, rate and ``k``: the mean and
the mean of the worst decile (the 10 % of samples with the lowest IoU / largest centre error), and ``n`` samples.
Prints markdown tables and writes ``--out-json``. This is a script, not a pytest test.

Command (from the repository root)::

    OMP_NUM_THREADS=1 python tests/benchmarks/motion_forecast.py --prior srnn_mot=srnn_mot \\
        --prior srnn_mot_real=srnn_mot_real --loso "srnn_mot_real=loso/srnn_real_wo_{seq}.pt" \\
        --out-json forecast.json
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pyro_dvae import pretrained, priors
from pyro_dvae.data import tracks
from pyro_dvae.data.mot import read_seqinfo
from pyro_dvae.forecast import dvae_forecast
from pyro_dvae.models.mot_tracker import association

REPO = Path(__file__).resolve().parents[2]
MOT17_GROUP = "MOT17 val-half"
EXTRA_HELDOUT = ("TUD-Stadtmitte",)


def sequence_samples(realdata, seq, frames, context, horizon, stride, rate, min_visibility):
    """``(windows (N, context + horizon, 4) normalised, frame rate, (width, height))`` of one sequence."""
    folder = tracks.sequence_dir(realdata, seq)
    info = read_seqinfo(folder)
    segs = tracks.read_segments(folder, frames, min_visibility=min_visibility)
    factor = 1 if rate == "native" else tracks.rate_factors(info.frame_rate)[-1]
    w, _ = tracks.segment_windows(tracks.rate_variants(segs, factors=[factor]), context + horizon, stride)
    return w, info.frame_rate / factor, (info.width, info.height)


def datasets(args):
    """``{group: [(seq, frames, prior override key)]}`` of the split."""
    realdata = args.realdata
    if args.split == "dev":
        segs = tracks.corpus(realdata, "train", min_visibility=args.min_visibility)
        _, val = tracks.split_identities(segs, 0.1, 0)
        return {"dev": val}
    out = {MOT17_GROUP: []}
    for seq in tracks.MOT17_SEQUENCES:
        n = read_seqinfo(tracks.sequence_dir(realdata, seq)).length
        out[MOT17_GROUP].append((seq, (n // 2 + 2, n), None))
    for seq in (*tracks.MOT15_SEQUENCES, *EXTRA_HELDOUT):
        out[seq] = [(seq, None, seq if seq in tracks.MOT15_SEQUENCES else None)]
    return out


def group_samples(args, group, members, rate, horizon):
    """``(windows, sizes (N, 2) pixels, [(seq, holdout)] per window, rates)`` of one data set."""
    wins, sizes, keys, rates = [], [], [], []
    if group == "dev":  # segments of several sequences, split by identity
        by_seq = {}
        for s in members:
            by_seq.setdefault(s.seq, []).append(s)
        for seq, segs in sorted(by_seq.items()):
            info = read_seqinfo(tracks.sequence_dir(args.realdata, seq))
            factor = 1 if rate == "native" else tracks.rate_factors(info.frame_rate)[-1]
            w, _ = tracks.segment_windows(tracks.rate_variants(segs, factors=[factor]), args.context + horizon,
                                          args.stride)
            wins.append(w)
            sizes += [(info.width, info.height)] * len(w)
            keys += [None] * len(w)
            rates.append(info.frame_rate / factor)
    else:
        for seq, frames, holdout in members:
            w, fps, size = sequence_samples(args.realdata, seq, frames, args.context, horizon, args.stride, rate,
                                            args.min_visibility)
            wins.append(w)
            sizes += [size] * len(w)
            keys += [holdout] * len(w)
            rates.append(fps)
    return np.concatenate(wins), np.array(sizes, float).reshape(-1, 2), keys, sorted(set(rates))


def cv_forecast(past_px, horizons):
    """The tracker's constant-velocity Kalman filter: boxes ``(len(horizons), 4)`` in pixels after the context."""
    kalman = association._Kalman(past_px[0])
    for box in past_px[1:]:
        kalman.predict()
        kalman.update(box)
    out, k = [], 0
    for h in horizons:
        while k < h:
            kalman.predict()
            k += 1
        out.append(kalman.box)
    return np.stack(out)


def errors(pred, true):
    """Per-sample IoU and centre distance / true height of boxes ``(..., 4)`` (any consistent units)."""
    iw = np.clip(np.minimum(pred[..., 2], true[..., 2]) - np.maximum(pred[..., 0], true[..., 0]), 0, None)
    ih = np.clip(np.minimum(pred[..., 3], true[..., 3]) - np.maximum(pred[..., 1], true[..., 1]), 0, None)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    inter = iw * ih
    iou = inter / np.maximum(area(pred) + area(true) - inter, 1e-12)
    centre = np.hypot((pred[..., 0] + pred[..., 2] - true[..., 0] - true[..., 2]) / 2,
                      (pred[..., 1] + pred[..., 3] - true[..., 1] - true[..., 3]) / 2)
    return iou, centre / (true[..., 3] - true[..., 1])


def summarise(iou, centre):
    n = len(iou)
    tail = max(1, int(np.ceil(0.1 * n)))
    return {"iou_mean": float(iou.mean()), "iou_worst10": float(np.sort(iou)[:tail].mean()),
            "centre_mean": float(centre.mean()), "centre_worst10": float(np.sort(centre)[-tail:].mean()), "n": n}


def load_prior(arg):
    return priors.load(pretrained.resolve(arg))


def forecast_all(args, windows, sizes, keys, horizons):
    """``{method: (N, len(horizons), 4)}`` forecasts in pixels."""
    C = args.context
    scale = np.concatenate([sizes, sizes], 1)[:, None, :]
    px = windows.astype(float) * scale
    idx = np.array(horizons) - 1
    out = {"cv": np.stack([cv_forecast(p[:C], horizons) for p in px]),
           "static": np.repeat(px[:, C - 1:C], len(horizons), 1)}
    past = torch.as_tensor(windows[:, :C])
    for name, arg in args.prior:
        pred = np.zeros((len(windows), len(horizons), 4))
        for key in sorted(set(keys), key=str):
            sel = np.array([k == key for k in keys])
            source = args.loso.get(name, "{seq}").format(seq=key) if key is not None and name in args.loso else arg
            f = dvae_forecast(load_prior(source), past[sel], max(horizons), latents=args.latents).numpy()
            pred[sel] = f[:, idx] * scale[sel]
        out[name] = pred
    return out


def table(results, rate, horizons):
    lines = [f"\n### rate: {rate} (IoU mean / worst decile; centre error / height, mean / worst decile)\n"]
    head = "| data set | fps | n | method | " + " | ".join(f"k={k}" for k in horizons) + " |"
    lines += [head, "|" + "---|" * (4 + len(horizons))]
    for group, res in results[rate].items():
        for method, by_k in res["methods"].items():
            cells = [f"{by_k[str(k)]['iou_mean']:.3f} / {by_k[str(k)]['iou_worst10']:.3f}; "
                     f"{by_k[str(k)]['centre_mean']:.2f} / {by_k[str(k)]['centre_worst10']:.2f}" for k in horizons]
            fps = "/".join(f"{r:g}" for r in res["fps"])
            lines.append(f"| {group} | {fps} | {res['n']} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    def named(text):
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
        return name, value

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--realdata", default=str(REPO.parent / "shared" / "realdata"), help="the shared real-data folder")
    p.add_argument("--prior", type=named, action="append", default=[], metavar="NAME=PATH",
                   help="a DVAE prior to evaluate (checkpoint or shipped name), repeatable")
    p.add_argument("--loso", type=named, action="append", default=[], metavar="NAME=PATTERN",
                   help="on MOT15 sequence SEQ, prior NAME is the checkpoint PATTERN with {seq} -> SEQ")
    p.add_argument("--split", choices=["heldout", "dev"], default="heldout")
    p.add_argument("--context", type=int, default=30, help="observed steps before the forecast")
    p.add_argument("--horizons", type=int, nargs="+", default=[1, 5, 10, 20, 30])
    p.add_argument("--stride", type=int, default=5, help="steps between the starts of samples")
    p.add_argument("--rates", nargs="+", choices=["native", "low"], default=["native", "low"])
    p.add_argument("--min-visibility", type=float, default=tracks.MIN_VISIBILITY)
    p.add_argument("--latents", choices=["posterior", "prior"], default="posterior",
                   help="the DVAE's latents on the context (pyro_dvae.forecast)")
    p.add_argument("--out-json", help="write the results here")
    args = p.parse_args(argv)
    args.loso = dict(args.loso)
    unknown = sorted(set(args.loso) - {n for n, _ in args.prior})
    if unknown:
        p.error(f"--loso names no --prior: {unknown}")
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    horizons = sorted(set(args.horizons))
    t0 = time.perf_counter()
    results = {}
    for rate in args.rates:
        results[rate] = {}
        for group, members in datasets(args).items():
            windows, sizes, keys, fps = group_samples(args, group, members, rate, max(horizons))
            if not len(windows):
                print(f"{group} ({rate}): no window of {args.context + max(horizons)} steps", file=sys.stderr)
                continue
            preds = forecast_all(args, windows, sizes, keys, horizons)
            true = windows[:, [args.context - 1 + k for k in horizons]] * np.concatenate([sizes, sizes], 1)[:, None]
            methods = {}
            for method, pred in preds.items():
                iou, centre = errors(pred, true)
                methods[method] = {str(k): summarise(iou[:, i], centre[:, i]) for i, k in enumerate(horizons)}
            results[rate][group] = {"n": len(windows), "fps": fps, "methods": methods}
        print(table(results, rate, horizons))
    summary = {"split": args.split, "context": args.context, "horizons": horizons, "stride": args.stride,
               "min_visibility": args.min_visibility, "latents": args.latents, "priors": dict(args.prior),
               "loso": args.loso, "seconds": time.perf_counter() - t0, "threads": 1, "results": results}
    if args.out_json:
        os.makedirs(os.path.dirname(os.path.abspath(args.out_json)), exist_ok=True)
        with open(args.out_json, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    main()
