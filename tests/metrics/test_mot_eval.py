# SPDX-License-Identifier: Apache-2.0
"""TrackEval wrapper: perfect / swapped / empty trackers, frame windows, MOT15 and MOT17 gt (distractors),
agreement with motmetrics, bad input."""

import json
import os
import sys

import motmetrics as mm
import numpy as np
import pytest
from common import REALDATA, requires_realdata

from pyro_dvae.data.mot import iou_xyxy, read_gt, read_seqinfo, xywh_to_xyxy
from pyro_dvae.data.mot_results import val_half, write_results
from pyro_dvae.metrics.mot_eval import TABLE_COLUMNS, evaluate, format_table

MM_DATA = os.path.join(os.path.dirname(mm.__file__), "data")
TUD = os.path.join(MM_DATA, "TUD-Stadtmitte", "gt.txt")  # 2DMOT2015 gt: frame,id,x,y,w,h,1,wx,wy,wz
TUD_N = 179


@pytest.fixture
def te():
    return pytest.importorskip("trackeval")


@pytest.fixture(scope="module")
def gt():
    return read_gt(TUD)


def _eval(tmp_path, frames, ids, boxes, window=None, name="res.txt"):
    path = tmp_path / name
    write_results(path, frames, ids, boxes)
    return evaluate({"TUD": TUD}, {"TUD": str(path)}, None if window is None else {"TUD": window},
                    {"TUD": TUD_N})


def test_gt_as_tracker_is_perfect(te, tmp_path, gt):
    res = _eval(tmp_path, gt.frame, gt.ids, gt.boxes)
    assert set(res) == {"per_sequence", "combined"} and set(res["per_sequence"]) == {"TUD"}
    row = res["combined"]
    for k in ("HOTA", "DetA", "AssA", "LocA", "MOTA", "MOTP", "IDF1", "IDP", "IDR"):
        assert row[k] == pytest.approx(100.0), k
    assert (row["FP"], row["FN"], row["IDSW"], row["TP"]) == (0, 0, 0, len(gt.frame))
    assert (row["GT_Dets"], row["Dets"], row["GT_IDs"], row["IDs"], row["Frames"]) == (1156, 1156, 10, 10, TUD_N)
    assert res["per_sequence"]["TUD"] == row
    json.dumps(res, allow_nan=False)  # JSON-safe
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row.values())
    table = format_table(res)
    lines = table.splitlines()
    assert lines[0].split() == ["Sequence", *TABLE_COLUMNS]
    assert lines[2].split() == ["TUD", "100.0", "100.0", "100.0", "100.0", "100.0", "0", "0", "0"]
    assert lines[-1].split()[0] == "COMBINED"


def _two_overlapping_ids(gt):
    mid = int(np.median(gt.frame))
    ids = [i for i in np.unique(gt.ids) if gt.frame[gt.ids == i].min() < mid < gt.frame[gt.ids == i].max()]
    return mid, ids[0], ids[1]


def test_identity_swap_lowers_association_not_detection(te, tmp_path, gt):
    mid, a, b = _two_overlapping_ids(gt)
    ids = gt.ids.copy()
    late = gt.frame >= mid
    ids[late & (gt.ids == a)], ids[late & (gt.ids == b)] = b, a
    row = _eval(tmp_path, gt.frame, ids, gt.boxes)["combined"]
    assert row["DetA"] == pytest.approx(100.0)
    assert (row["FP"], row["FN"]) == (0, 0)
    assert row["IDSW"] == 2
    assert row["AssA"] < 90 and row["IDF1"] < 90 and row["HOTA"] < 95
    assert row["MOTA"] == pytest.approx(100 * (1 - 2 / len(gt.frame)))


def test_empty_tracker(te, tmp_path, gt):
    row = _eval(tmp_path, [], [], np.zeros((0, 4)))["combined"]
    assert row["HOTA"] == 0 and row["DetA"] == 0 and row["IDF1"] == 0 and row["MOTA"] == 0
    assert (row["FN"], row["FP"], row["TP"], row["Dets"]) == (len(gt.frame), 0, 0, 0)


def test_frame_window(te, tmp_path, gt):
    inside = (gt.frame >= 40) & (gt.frame <= 70)
    # a perfect tracker everywhere: only frames 40..70 count
    row = _eval(tmp_path, gt.frame, gt.ids, gt.boxes, window=(40, 70))["combined"]
    assert row["GT_Dets"] == row["TP"] == inside.sum() and row["Frames"] == 31
    assert row["HOTA"] == pytest.approx(100.0)
    # a tracker only outside the window: every gt box inside is missed, its own boxes are ignored
    out = ~inside
    row = _eval(tmp_path, gt.frame[out], gt.ids[out], gt.boxes[out], window=(40, 70), name="out.txt")["combined"]
    assert (row["FN"], row["FP"], row["Dets"]) == (inside.sum(), 0, 0)
    # the window is also counted from its own start: a box of frame 40 is scored against frame 40's gt
    shift = gt.frame + 1
    keep = shift <= TUD_N
    row = _eval(tmp_path, shift[keep], gt.ids[keep], gt.boxes[keep], window=(40, 70), name="shift.txt")["combined"]
    assert row["HOTA"] < 100


def test_agrees_with_motmetrics(te, tmp_path, gt):
    """A noisy tracker (jitter, misses, false positives, an identity swap): TrackEval's CLEAR and Identity
    numbers equal motmetrics' on the same boxes."""
    rng = np.random.default_rng(0)
    keep = rng.random(len(gt.frame)) > 0.1
    frames, ids = gt.frame[keep], gt.ids[keep].copy()
    boxes = gt.boxes[keep] + rng.normal(0, 4, (keep.sum(), 4)) * [1, 1, 0.5, 0.5]
    mid, a, b = _two_overlapping_ids(gt)
    late = frames >= mid
    ids[late & (ids == a)], ids[late & (gt.ids[keep] == b)] = b, a
    fp_frames = rng.integers(1, TUD_N + 1, 60)
    fp_ids = 100 + np.arange(60)
    fp_boxes = np.c_[rng.uniform(0, 500, (60, 2)), rng.uniform(20, 60, (60, 2))]
    frames, ids = np.r_[frames, fp_frames], np.r_[ids, fp_ids]
    boxes = np.r_[boxes, fp_boxes]
    row = _eval(tmp_path, frames, ids, boxes)["combined"]

    acc = mm.MOTAccumulator(auto_id=True)
    for t in range(1, TUD_N + 1):
        g, h = gt.frame == t, frames == t
        iou = iou_xyxy(xywh_to_xyxy(gt.boxes[g]), xywh_to_xyxy(np.round(boxes[h], 3)))
        acc.update(gt.ids[g], ids[h], np.where(iou >= 0.5, 1 - iou, np.nan))
    s = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches", "num_false_positives",
                                                  "num_misses"], name="x")
    assert row["MOTA"] == pytest.approx(100 * s["mota"]["x"])
    assert row["IDF1"] == pytest.approx(100 * s["idf1"]["x"])
    assert (row["IDSW"], row["FP"], row["FN"]) == (s["num_switches"]["x"], s["num_false_positives"]["x"],
                                                   s["num_misses"]["x"])
    assert 30 < row["HOTA"] < 95


def test_several_sequences_and_gt_formats(te, tmp_path, gt):
    # the same gt as a MOT17-style file (consider, class, visibility) and as a bare 6-column file
    mot17 = tmp_path / "A" / "gt" / "gt.txt"
    mot17.parent.mkdir(parents=True)
    rows = np.c_[gt.frame, gt.ids, gt.boxes, np.ones(len(gt.frame)), np.ones(len(gt.frame)),
                 np.ones(len(gt.frame))]
    np.savetxt(mot17, rows, fmt=["%d", "%d", "%.3f", "%.3f", "%.3f", "%.3f", "%d", "%d", "%.1f"], delimiter=",")
    (tmp_path / "A" / "seqinfo.ini").write_text(f"[Sequence]\nname=A\nimWidth=640\nimHeight=480\n"
                                                f"seqLength={TUD_N}\n")
    bare = tmp_path / "bare.txt"
    np.savetxt(bare, rows[:, :6], fmt="%.3f", delimiter=",")
    res_file = tmp_path / "r.txt"
    write_results(res_file, gt.frame, gt.ids, gt.boxes)
    seqs = {"A": str(mot17), "odd/name with spaces": str(bare), "TUD": TUD}
    res = evaluate(seqs, dict.fromkeys(seqs, str(res_file)), "val_half",
                   {"odd/name with spaces": TUD_N, "TUD": TUD_N})  # "A" is read from its seqinfo.ini
    first, last = val_half(TUD_N)
    n_boxes = int(((gt.frame >= first) & (gt.frame <= last)).sum())
    assert list(res["per_sequence"]) == list(seqs)
    for row in res["per_sequence"].values():
        assert row["HOTA"] == pytest.approx(100.0) and row["GT_Dets"] == n_boxes
    assert res["combined"]["GT_Dets"] == 3 * n_boxes and res["combined"]["Frames"] == 3 * (last - first + 1)
    assert "odd/name with spaces" in format_table(res)


def test_bad_input(te, tmp_path, gt):
    res_file = tmp_path / "r.txt"
    write_results(res_file, gt.frame, gt.ids, gt.boxes)
    r = str(res_file)
    with pytest.raises(ValueError, match="same sequences"):
        evaluate({"TUD": TUD}, {"X": r}, None, {"TUD": TUD_N})
    with pytest.raises(ValueError, match="beyond the sequence length"):
        evaluate({"TUD": TUD}, {"TUD": r}, None, {"TUD": 100})
    with pytest.raises(ValueError, match="not inside"):
        evaluate({"TUD": TUD}, {"TUD": r}, {"TUD": (50, 400)}, {"TUD": TUD_N})
    with pytest.raises(ValueError, match="no entry"):
        evaluate({"TUD": TUD}, {"TUD": r}, {}, {"TUD": TUD_N})
    with pytest.raises(ValueError, match="seq_lengths"):
        evaluate({"TUD": TUD}, {"TUD": r})  # no seqinfo.ini next to the motmetrics file
    with pytest.raises(FileNotFoundError, match="result file"):
        evaluate({"TUD": TUD}, {"TUD": str(tmp_path / "missing.txt")}, None, {"TUD": TUD_N})
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,10,10,5,5,1,-1,-1,-1\n1,1,10,10,5,5,1,-1,-1,-1\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: .*already has a box"):
        evaluate({"TUD": TUD}, {"TUD": str(bad)}, None, {"TUD": TUD_N})


def test_missing_trackeval_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "trackeval", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install -e \.\[eval\]"):
        evaluate({"TUD": TUD}, {"TUD": str(tmp_path / "r.txt")}, None, {"TUD": TUD_N})


@requires_realdata("mot17/MOT17-09")
def test_mot17_val_half_gt_as_tracker_with_distractors(te, tmp_path):
    seq_dir = REALDATA / "mot17" / "MOT17-09"
    gt_file = str(seq_dir / "gt" / "gt.txt")
    arr = np.loadtxt(gt_file, delimiter=",")
    n = read_seqinfo(str(seq_dir)).length
    first, last = val_half(n)
    assert (first, last) == (264, 525)
    in_half = (arr[:, 0] >= first) & (arr[:, 0] <= last)
    ped = (arr[:, 6] == 1) & (arr[:, 7] == 1)  # what is scored: considered pedestrians
    distractor = np.isin(arr[:, 7], [2, 7, 8, 12])

    def run(sel, name):
        path = tmp_path / name
        write_results(path, arr[sel, 0], arr[sel, 1], arr[sel, 2:6])
        return evaluate({"MOT17-09": gt_file}, {"MOT17-09": str(path)}, "val_half")["combined"]

    # gt as tracker = the considered pedestrian rows (the tracker is not told which are distractors)
    row = run(ped, "ped.txt")
    assert row["HOTA"] == pytest.approx(100.0) and row["MOTA"] == pytest.approx(100.0)
    assert row["IDF1"] == pytest.approx(100.0)
    assert (row["GT_Dets"], row["FP"], row["FN"], row["Frames"]) == ((ped & in_half).sum(), 0, 0, last - first + 1)
    # boxes on distractors (static people, reflections...) are removed, not counted as false positives
    row = run(ped | distractor, "distractors.txt")
    assert row["HOTA"] == pytest.approx(100.0) and row["FP"] == 0 and row["Dets"] == (ped & in_half).sum()
    # boxes on other objects (here occluders, class 9) are false positives
    row = run(np.ones(len(arr), bool), "all.txt")
    assert row["FP"] == (in_half & ~ped & ~distractor).sum() > 0 and row["HOTA"] < 100
