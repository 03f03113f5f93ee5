# SPDX-License-Identifier: Apache-2.0
"""How a detector's boxes err against the ground truth, as a simulation of detections would need to know.

Per frame, the detections with score ``>= --min-score`` are matched one-to-one to the visible pedestrian boxes of
the gt (:func:`~pyro_dvae.data.mot.read_gt`: flagged rows; MOT17: class 1, visibility ``>= --min-visibility``) by
the Hungarian assignment on IoU, pairs below IoU 0.5 dropped. Per matched pair the error is ``(dcx / w, dcy / h,
log(w' / w), log(h' / h))``: the centre offset in units of the true width / height and the log size ratio. Printed:
the spread of each error (std and median absolute value), the share of gt boxes left unmatched, and the lag-1
correlation of each error along a gt identity matched in two consecutive frames (near 0: independent jitter; near 1:
errors that persist, as a box that follows the body's silhouette). This is a script, not a pytest test.

Command (from the repository root; the MOT17 val-half frames, the dev split of the tracker's settings)::

    python tests/benchmarks/detection_noise.py --mot-dir ../shared/realdata/mot17 --val-half
"""

import argparse
import os

import numpy as np
from scipy.optimize import linear_sum_assignment

from pyro_dvae.data.mot import iou_xyxy, read_det, read_gt, read_seqinfo, xywh_to_xyxy
from pyro_dvae.data.mot_results import val_half


def box_errors(gt, det):
    """``(4,)`` error of detection ``det`` against gt box ``gt`` (both ``x, y, w, h``)."""
    centre = (det[:2] + det[2:] / 2 - gt[:2] - gt[2:] / 2) / gt[2:]
    return np.concatenate([centre, np.log(det[2:] / gt[2:])])


def sequence_errors(seq_dir, det_file, use_val_half, min_score, min_visibility):
    """``(errors (n, 4), pairs (m, 8), gt boxes, unmatched gt boxes)`` of one sequence."""
    gt = read_gt(os.path.join(seq_dir, "gt", "gt.txt"), min_visibility=min_visibility)
    det = read_det(os.path.join(seq_dir, det_file))
    keep = det.score >= min_score
    det_frame, det_boxes = det.frame[keep], det.boxes[keep]
    n = read_seqinfo(seq_dir).length
    first, last = val_half(n) if use_val_half else (1, n)
    errors, pairs, previous, total, missed = [], [], {}, 0, 0
    for f in range(first, last + 1):
        g, ids, d = gt.boxes[gt.frame == f], gt.ids[gt.frame == f], det_boxes[det_frame == f]
        total += len(g)
        current = {}
        if len(g) and len(d):
            iou = iou_xyxy(xywh_to_xyxy(g), xywh_to_xyxy(d))
            rows, cols = linear_sum_assignment(-iou)
            keep = iou[rows, cols] >= 0.5
            for i, j in zip(rows[keep], cols[keep]):
                e = box_errors(g[i], d[j])
                errors.append(e)
                current[int(ids[i])] = e
                if int(ids[i]) in previous:
                    pairs.append(np.concatenate([previous[int(ids[i])], e]))
            missed += len(g) - int(keep.sum())
        else:
            missed += len(g)
        previous = current
    return np.array(errors).reshape(-1, 4), np.array(pairs).reshape(-1, 8), total, missed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mot-dir", required=True)
    p.add_argument("--seqs", nargs="+", help="sequence names (default: every folder with gt/gt.txt)")
    p.add_argument("--det-file", default="det/det.txt")
    p.add_argument("--val-half", action="store_true", help="frames N//2+2..N only")
    p.add_argument("--min-score", type=float, default=0.5)
    p.add_argument("--min-visibility", type=float, default=0.25)
    args = p.parse_args(argv)
    seqs = args.seqs or sorted(q for q in os.listdir(args.mot_dir)
                               if os.path.exists(os.path.join(args.mot_dir, q, "gt", "gt.txt")))
    runs = [sequence_errors(os.path.join(args.mot_dir, q), args.det_file, args.val_half, args.min_score,
                            args.min_visibility) for q in seqs]
    errors = np.concatenate([r[0] for r in runs])
    pairs = np.concatenate([r[1] for r in runs])
    total, missed = sum(r[2] for r in runs), sum(r[3] for r in runs)
    print(f"{', '.join(seqs)}: {len(errors)} matched boxes, {missed / max(total, 1):.1%} of {total} gt boxes unmatched")
    print("error        centre x / w  centre y / h  log w ratio  log h ratio")
    print("std          " + "  ".join(f"{v:11.4f}" for v in errors.std(0)))
    print("median |e|   " + "  ".join(f"{v:11.4f}" for v in np.median(np.abs(errors), 0)))
    lag = [np.corrcoef(pairs[:, k], pairs[:, k + 4])[0, 1] for k in range(4)]
    print("lag-1 corr   " + "  ".join(f"{v:11.3f}" for v in lag) + f"   ({len(pairs)} consecutive pairs)")


if __name__ == "__main__":
    main()
