# SPDX-License-Identifier: Apache-2.0
import numpy as np
import pytest

from pyro_dvae.metrics import tracking_metrics


def boxes(T=10, N=2, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.2, 0.8, (T, N, 2)) + np.arange(N)[None, :, None] * 0.3
    return np.concatenate([c - 0.05, c + 0.05], -1)


def test_perfect_tracking():
    gt = boxes()
    m = tracking_metrics([gt], [gt])
    assert m["mota"] == 1.0 and m["idf1"] == 1.0 and m["motp"] == pytest.approx(0.0)
    assert m["num_switches"] == 0 and m["num_objects"] == 20 and m["mostly_tracked"] == 2


def test_identity_swap_counts_one_switch():
    gt = boxes()
    est = gt.copy()
    est[5:] = gt[5:, ::-1]  # the two hypotheses swap halfway
    m = tracking_metrics([gt], [est])
    assert m["num_switches"] == 2 and m["num_misses"] == 0 and m["num_false_positives"] == 0
    assert m["mota"] == pytest.approx(1 - 2 / 20)
    assert m["idf1"] == pytest.approx(0.5)


def test_missed_boxes_and_weighted_motp():
    gt = boxes()
    far = gt + 0.5  # no overlap: a miss and a false positive each
    shifted = gt.copy()
    shifted[..., [0, 2]] += 0.01  # IoU = 0.09 / 0.11 of a 0.1-wide box: 9/11
    m = tracking_metrics([gt, gt], [far, shifted])
    assert m["num_misses"] == 20 and m["num_false_positives"] == 20
    assert m["motp"] == pytest.approx(1 - 9 / 11)  # a sequence without any match does not make it NaN
    assert m["pct_misses"] == pytest.approx(0.5)
