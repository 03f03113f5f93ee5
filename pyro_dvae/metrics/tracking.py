# SPDX-License-Identifier: Apache-2.0
"""CLEAR-MOT and identity metrics through ``motmetrics``, with our own IoU.

``motmetrics`` 1.4.0's ``iou_matrix`` calls ``np.asfarray``, which numpy 2 removed; we compute the IoU
distance matrix ourselves (:func:`pyro_dvae.data.mot.iou_xyxy`) and feed the accumulator directly.
A pair is matchable when IoU >= 0.5 (distance ``1 - IoU``), the MOTChallenge convention.

**References:**

[1] K. Bernardin, R. Stiefelhagen (2008), "Evaluating Multiple Object Tracking Performance: The CLEAR
    MOT Metrics", EURASIP JIVP.
[2] E. Ristani, F. Solera, R. Zou, R. Cucchiara, C. Tomasi (2016), "Performance Measures and a Data Set
    for Multi-Target, Multi-Camera Tracking" (IDF1), ECCV workshops.
"""

import motmetrics as mm
import numpy as np

from pyro_dvae.data.mot import iou_xyxy

TRACKING_KEYS = ("mota", "motp", "idf1", "num_switches", "mostly_tracked", "mostly_lost", "num_false_positives",
                 "num_misses", "num_objects")


def accumulate(gt, est, min_iou=0.5, gt_valid=None):
    """A ``motmetrics`` accumulator for one sequence.

    :param gt: ``(T, N, 4)`` ground-truth boxes (x1, y1, x2, y2), ids = column index.
    :param est: ``(T, M, 4)`` estimated boxes, hypothesis ids = column index.
    :param gt_valid: optional ``(T, N)`` bool; absent objects are skipped.
    """
    gt, est = np.asarray(gt, float), np.asarray(est, float)
    acc = mm.MOTAccumulator(auto_id=True)
    iou = iou_xyxy(gt, est)  # (T, N, M)
    dist = np.where(iou >= min_iou, 1.0 - iou, np.nan)
    N, M = gt.shape[1], est.shape[1]
    for t in range(gt.shape[0]):
        oids = np.arange(N) if gt_valid is None else np.where(gt_valid[t])[0]
        acc.update(oids, np.arange(M), dist[t][oids])
    return acc


def tracking_metrics(gts, ests, names=None):
    """Overall metrics over many sequences (MOTChallenge Table-2 columns).

    :returns: dict with ``mota, motp, idf1`` (fractions as motmetrics gives them; ``motp`` is the mean
        ``1 - IoU`` of matches, as motmetrics defines it), counts ``num_switches, mostly_tracked,
        mostly_lost, num_false_positives, num_misses, num_objects`` and the percentages
        ``pct_switches, pct_false_positives, pct_misses`` (of ``num_objects``).
    """
    accs = [accumulate(g, e) for g, e in zip(gts, ests)]
    if not accs:
        raise ValueError("no sequence to evaluate")
    mh = mm.metrics.create()
    names = names or [str(i) for i in range(len(accs))]
    summary = mh.compute_many(accs, metrics=[*TRACKING_KEYS, "num_matches"], names=names, generate_overall=True)
    row = summary.loc["OVERALL"]
    out = {k: float(row[k]) for k in TRACKING_KEYS}
    # motmetrics' overall MOTP is NaN as soon as one sequence has no match: weight by matches instead
    per_seq = summary.drop(index="OVERALL")
    matches = per_seq["num_matches"].to_numpy(float)
    weighted = np.nansum(per_seq["motp"].to_numpy(float) * matches)
    out["motp"] = float(weighted / matches.sum()) if matches.sum() else float("nan")
    for k in ("num_switches", "mostly_tracked", "mostly_lost", "num_false_positives", "num_misses", "num_objects"):
        out[k] = int(out[k])
    n = max(out["num_objects"], 1)
    out["pct_switches"] = out["num_switches"] / n
    out["pct_false_positives"] = out["num_false_positives"] / n
    out["pct_misses"] = out["num_misses"] / n
    return out
