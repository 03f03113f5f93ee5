# SPDX-License-Identifier: Apache-2.0
"""MOTChallenge IO and MOT-3T windows: real sequences, the motmetrics gt files, bad input, IoU."""

import os

import motmetrics
import numpy as np
import pytest
from common import REALDATA, REALDATA_ENV, requires_realdata

from pyro_dvae.data.mot import (
    MOTTable,
    MOTWindow,
    SeqInfo,
    WindowStats,
    build_windows,
    iou_xyxy,
    load_sequence,
    read_det,
    read_gt,
    read_seqinfo,
    xywh_to_xyxy,
)

MOT_ROOT = REALDATA / "mot"
SEQS = ["PETS09-S2L1", "Venice-2", "TUD-Stadtmitte", "TUD-Campus", "KITTI-17", "ETH-Sunnyday"]
WINDOW_SEQS = ["PETS09-S2L1", "Venice-2", "TUD-Stadtmitte"]
MM_DATA = os.path.join(os.path.dirname(motmetrics.__file__), "data")


def _seq_dir(name):
    if not (MOT_ROOT / name).is_dir():
        pytest.skip(f"real data absent: {MOT_ROOT / name} (set {REALDATA_ENV} to the shared realdata folder)")
    return MOT_ROOT / name


_CACHE = {}


def _load(name, det_file="det/det_frcnn.txt"):
    key = (name, det_file)
    if key not in _CACHE:
        _CACHE[key] = load_sequence(str(_seq_dir(name)), det_file=det_file)
    return _CACHE[key]


def _windows(name, **kw):
    info, gt, det = _load(name)
    args = dict(seq_len=60, num_sources=3, stride=40, min_score=0.5)
    args.update(kw)
    return build_windows(gt, det, info, **args)


def _write(path, text):
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------------------------------------------------------
# Real data


@requires_realdata("mot")
def test_read_seqinfo_pets():
    info = read_seqinfo(str(_seq_dir("PETS09-S2L1")))
    assert info.name == "PETS09-S2L1"
    assert (info.width, info.height, info.length) == (768, 576, 795)
    assert info.frame_rate == 7.0


@requires_realdata("mot")
@pytest.mark.parametrize("name", SEQS)
def test_real_gt_and_det(name):
    info, gt, det = _load(name)
    n = len(gt.frame)
    with open(_seq_dir(name) / "gt" / "gt.txt") as f:
        n_lines = sum(1 for line in f if line.strip())
    # pedestrians only (flag 0 rows removed), but most rows are kept
    assert 0.8 * n_lines <= n <= n_lines
    assert n >= 300
    assert gt.dropped == 0
    assert gt.boxes.shape == (n, 4) and gt.ids.shape == (n,) and gt.score.shape == (n,)
    assert np.all(np.diff(gt.frame) >= 0)
    assert gt.frame.min() >= 1 and gt.frame.max() <= info.length
    assert np.all(gt.boxes[:, 2:] > 0)
    assert np.all(gt.score == 1)
    # within a frame, identities are sorted and unique
    same = np.diff(gt.frame) == 0
    assert np.all(np.diff(gt.ids)[same] > 0)
    # Faster R-CNN scores are probabilities; detections carry no identity
    assert det is not None and len(det.frame) > 100
    assert np.all((det.score >= 0) & (det.score <= 1))
    assert np.all(det.ids == -1)
    assert np.all(np.diff(det.frame) >= 0)


@requires_realdata("mot")
def test_real_acf_scores_not_probabilities():
    _, _, det = _load("PETS09-S2L1", "det/det.txt")
    assert det.score.max() > 1  # ACF scores are not in [0, 1]
    assert np.all(np.isfinite(det.score))


@requires_realdata("mot")
@pytest.mark.parametrize("name", WINDOW_SEQS)
def test_real_windows(name):
    info, gt, det = _load(name)
    stats = WindowStats()
    ws = _windows(name, stats=stats, combos_per_window=4)
    assert len(ws) > 0 and stats.windows == len(ws) and stats.by_seq[name] == len(ws)
    gt_lookup = {(int(f), int(i)): b for f, i, b in zip(gt.frame, gt.ids, gt.boxes)}
    scale = np.array([info.width, info.height] * 2, float)
    matched, total = 0, 0
    for w in ws:
        assert isinstance(w, MOTWindow)
        T, N = 60, 3
        K = w.obs.shape[1]
        assert w.gt.shape == (T, N, 4) and w.obs.shape == (T, K, 4) and K >= N
        assert w.obs_mask.shape == (T, K) and w.obs_source.shape == (T, K)
        assert (w.width, w.height, w.seq) == (info.width, info.height, name)
        assert len(set(w.ids)) == N
        assert 1 <= w.start and w.start + T - 1 <= info.length
        # normalised boxes (slightly out-of-image boxes allowed)
        assert w.gt.min() >= -0.1 and w.gt.max() <= 1.1
        assert np.all(w.gt[..., 2:] > w.gt[..., :2])
        # each identity is present in every frame, and the boxes are those of the gt table
        expect = [[gt_lookup[(w.start + t, i)] for i in w.ids] for t in range(T)]
        np.testing.assert_allclose(w.gt, xywh_to_xyxy(np.array(expect)) / scale)
        # without clutter, every real detection is matched to a source, at most one per source
        src = w.obs_source
        assert np.all(src[w.obs_mask] >= 0) and np.all(src[w.obs_mask] < N)
        assert np.all(~w.obs_mask[:, N:])
        for t in range(T):
            s = src[t][w.obs_mask[t]]
            assert len(np.unique(s)) == len(s)
        tt, kk = np.nonzero(w.obs_mask)
        iou = iou_xyxy(w.gt[tt, src[tt, kk]][:, None], w.obs[tt, kk][:, None])[:, 0, 0]
        assert np.all(iou > 0.5)
        assert np.all(w.obs[~w.obs_mask] == 0)
        matched += int((src[w.obs_mask] >= 0).sum())
        total += T * N
    assert matched / total > 0.3
    # detection slots are shuffled: the sources are not always in slot order
    full = [w.obs_source[t] for w in ws for t in range(60) if w.obs_mask[t].sum() == 3]
    assert len(full) > 10
    assert any(not np.array_equal(s[:3], np.arange(3)) for s in full)
    assert any(np.array_equal(s[:3], np.arange(3)) for s in full) or len(full) < 30


@requires_realdata("mot")
def test_real_windows_seed():
    a = _windows("PETS09-S2L1", seed=3, combos_per_window=2)
    b = _windows("PETS09-S2L1", seed=3, combos_per_window=2)
    c = _windows("PETS09-S2L1", seed=4, combos_per_window=2)
    assert len(a) == len(b)
    for wa, wb in zip(a, b):
        assert (wa.start, wa.ids) == (wb.start, wb.ids)
        np.testing.assert_array_equal(wa.obs, wb.obs)
        np.testing.assert_array_equal(wa.obs_source, wb.obs_source)
        np.testing.assert_array_equal(wa.obs_mask, wb.obs_mask)
    assert [(w.start, w.ids) for w in a] != [(w.start, w.ids) for w in c]
    # combinations are unique within a window start
    keys = [(w.start, w.ids) for w in _windows("PETS09-S2L1", seed=0)]
    assert len(keys) == len(set(keys))


@requires_realdata("mot")
def test_real_windows_second_half():
    info, _, _ = _load("PETS09-S2L1")
    full = _windows("PETS09-S2L1")
    half = _windows("PETS09-S2L1", second_half=True)
    assert 0 < len(half) < len(full)
    assert all(w.start > info.length // 2 for w in half)
    assert all(w.start + 59 <= info.length for w in half)
    assert min(w.start for w in full) == 1


@requires_realdata("mot")
def test_real_windows_clutter():
    plain = _windows("Venice-2", combos_per_window=3)
    clut = _windows("Venice-2", combos_per_window=3, clutter=True)
    assert [(w.start, w.ids) for w in plain] == [(w.start, w.ids) for w in clut]
    n_clutter = sum(int(((w.obs_source == -1) & w.obs_mask).sum()) for w in clut)
    assert n_clutter > 0
    assert sum(int(((w.obs_source == -1) & w.obs_mask).sum()) for w in plain) == 0
    assert max(w.obs.shape[1] for w in clut) > max(w.obs.shape[1] for w in plain)
    for wp, wc in zip(plain, clut):
        assert wc.obs.shape[1] >= wp.obs.shape[1]
        # clutter only adds detections; the matched ones are the same
        assert (wc.obs_source >= 0).sum() == (wp.obs_source >= 0).sum()
        assert wc.obs_mask.sum() >= wp.obs_mask.sum()


@requires_realdata("mot")
def test_real_windows_skipped():
    stats = WindowStats()
    ws = _windows("ETH-Sunnyday", stats=stats)
    info, _, _ = _load("ETH-Sunnyday")
    n_starts = len(range(1, info.length - 60 + 2, 40))
    assert stats.skipped_few_ids > 0
    assert stats.skipped_few_ids <= n_starts
    assert len({w.start for w in ws}) + stats.skipped_few_ids == n_starts
    assert stats.windows == len(ws)
    # stats accumulate over sequences
    _windows("TUD-Stadtmitte", stats=stats)
    assert set(stats.by_seq) == {"ETH-Sunnyday", "TUD-Stadtmitte"}
    assert stats.windows == sum(stats.by_seq.values())


# ---------------------------------------------------------------------------------------------------------------------
# gt files shipped with motmetrics


@pytest.mark.parametrize("name,length", [("TUD-Campus", 71), ("TUD-Stadtmitte", 179)])
def test_motmetrics_gt(name, length):
    path = os.path.join(MM_DATA, name, "gt.txt")
    if not os.path.exists(path):
        pytest.skip(f"{path} not shipped with this motmetrics")
    gt = read_gt(path)
    assert len(gt.frame) > 300 and gt.dropped == 0
    assert np.all(np.diff(gt.frame) >= 0)
    assert gt.frame.min() == 1 and gt.frame.max() <= length
    info = SeqInfo(name, 640, 480, length)
    stats = WindowStats()
    ws = build_windows(gt, None, info, seq_len=60, num_sources=3, stride=40, stats=stats)
    assert len(ws) > 0 and stats.windows == len(ws)
    for w in ws:
        assert w.obs.shape == (60, 3, 4)
        assert not w.obs_mask.any()
        assert np.all(w.obs == 0)
        assert w.gt.shape == (60, 3, 4) and np.isfinite(w.gt).all()


# ---------------------------------------------------------------------------------------------------------------------
# Bad input

GT_LINES = [
    "1,1,10,20,30,40,1,-1,-1,-1",
    "1,2,100,20,30,40,1,-1,-1,-1",
    "2,1,12,20,30,40,1,-1,-1,-1",
    "2,2,102,20,30,40,1,-1,-1,-1",
]


def test_read_gt_filters_visibility_in_mot17_files_only(tmp_path):
    """``min_visibility`` drops MOT16/17 rows below it (with the flag and class filters); a MOT15 file, whose last
    columns are world coordinates (-1), keeps every row."""
    mot17 = _write(tmp_path / "gt17.txt", "1,1,10,20,30,40,1,1,0.9\n1,2,100,20,30,40,1,1,0.1\n"
                                          "1,3,200,20,30,40,0,1,1.0\n1,4,300,20,30,40,1,7,1.0\n")
    np.testing.assert_array_equal(read_gt(mot17).ids, [1, 2])
    np.testing.assert_array_equal(read_gt(mot17, min_visibility=0.25).ids, [1])
    mot15 = _write(tmp_path / "gt15.txt", "\n".join(GT_LINES) + "\n")
    assert len(read_gt(mot15, min_visibility=0.25).ids) == len(GT_LINES)


def test_malformed_line_names_file_and_line(tmp_path):
    path = _write(tmp_path / "gt.txt", "\n".join(GT_LINES[:2] + ["3,1,10,20"] + GT_LINES[2:]) + "\n")
    with pytest.raises(ValueError, match=r"gt\.txt:3:") as e:
        read_gt(path)
    assert path in str(e.value)
    # a detection row without score column is malformed too
    path = _write(tmp_path / "det.txt", "1,-1,10,20,30,40,0.9\n1,-1,10,20,30,40\n")
    with pytest.raises(ValueError, match=r"det\.txt:2:"):
        read_det(path)


def test_a_binary_file_names_the_file_and_line(tmp_path):
    """Not UTF-8 (the issue's byte 0xd2) or with NUL bytes: a ValueError naming the file and the line, not the
    codec's message; a byte-order mark and CR LF or CR line ends are still read as text."""
    path = tmp_path / "det.txt"
    path.write_bytes(b"1,-1,10,20,30,40,0.9\n\n\xd2\x04binary\n")
    with pytest.raises(ValueError, match=r"det\.txt:3: not a text file \(byte 0xd2 at column 1") as e:
        read_det(str(path))
    assert str(path) in str(e.value) and "codec" not in str(e.value)
    path.write_bytes(b"1,-1,10,20,30,40,0.9\n1,-1,1\x0020,30,40,0.9\n")
    with pytest.raises(ValueError, match=r"det\.txt:2: not a text file \(NUL byte at column 7\)"):
        read_det(str(path))
    path.write_bytes(b"\xef\xbb\xbf1,-1,10,20,30,40,0.9\r\n2,-1,10,20,30,40,0.8\r3,-1,10,20,30,40,0.7")
    np.testing.assert_array_equal(read_det(str(path)).frame, [1, 2, 3])
    (tmp_path / "S").mkdir()
    (tmp_path / "S" / "seqinfo.ini").write_bytes(b"[Sequence]\nname=\xd2\n")
    with pytest.raises(ValueError, match=r"seqinfo\.ini: not a text file"):
        read_seqinfo(str(tmp_path / "S"))


def test_non_numeric_value(tmp_path):
    path = _write(tmp_path / "gt.txt", "\n".join(GT_LINES[:3] + ["2,2,abc,20,30,40,1,-1,-1,-1"]) + "\n")
    with pytest.raises(ValueError, match=r"gt\.txt:4: non-numeric"):
        read_gt(path)


@pytest.mark.parametrize("frame", ["0", "1.5", "-3", "nan"])
def test_bad_frame(tmp_path, frame):
    path = _write(tmp_path / "gt.txt", f"1,1,10,20,30,40,1\n{frame},2,10,20,30,40,1\n")
    with pytest.raises(ValueError, match=r"gt\.txt:2: frame"):
        read_gt(path)


def test_bad_identity(tmp_path):
    path = _write(tmp_path / "gt.txt", "1,1,10,20,30,40,1\n1,nan,10,20,30,40,1\n")
    with pytest.raises(ValueError, match=r"gt\.txt:2: identity"):
        read_gt(path)
    path = _write(tmp_path / "gt2.txt", "1,1.5,10,20,30,40,1\n")
    with pytest.raises(ValueError, match=r"gt2\.txt:1: identity"):
        read_gt(path)


def test_bad_boxes_dropped_with_warning(tmp_path):
    lines = GT_LINES + [
        "3,1,nan,20,30,40,1,-1,-1,-1",
        "3,2,10,20,0,40,1,-1,-1,-1",
        "3,3,10,20,30,-5,1,-1,-1,-1",
        "3,4,10,inf,30,40,1,-1,-1,-1",
        "3,5,10,20,30,40,1,-1,-1,-1",
    ]
    path = _write(tmp_path / "gt.txt", "\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="dropped 4 rows"):
        gt = read_gt(path)
    assert gt.dropped == 4
    assert len(gt.frame) == 5
    assert np.isfinite(gt.boxes).all() and np.all(gt.boxes[:, 2:] > 0)
    assert list(gt.ids[gt.frame == 3]) == [5]
    det_path = _write(tmp_path / "det.txt", "1,-1,10,20,30,40,0.9\n1,-1,10,20,nan,40,0.8\n2,-1,10,20,30,0,0.7\n")
    with pytest.warns(UserWarning, match="dropped 2 rows"):
        det = read_det(det_path)
    assert det.dropped == 2 and len(det.frame) == 1 and det.score[0] == pytest.approx(0.9)


def test_unsorted_rows_sorted_and_blank_lines(tmp_path):
    lines = [GT_LINES[3], "", GT_LINES[0], GT_LINES[2], "  ", GT_LINES[1]]
    path = _write(tmp_path / "gt.txt", "\r\n".join(lines) + "\r\n")
    gt = read_gt(path)
    assert isinstance(gt, MOTTable) and gt.path == path
    np.testing.assert_array_equal(gt.frame, [1, 1, 2, 2])
    np.testing.assert_array_equal(gt.ids, [1, 2, 1, 2])
    np.testing.assert_allclose(gt.boxes[:, 0], [10, 100, 12, 102])
    det_path = _write(tmp_path / "det.txt", "3,-1,1,1,5,5,0.3\n1,-1,2,2,5,5,0.9\n2,-1,3,3,5,5,0.5\n")
    det = read_det(det_path)
    np.testing.assert_array_equal(det.frame, [1, 2, 3])
    np.testing.assert_allclose(det.score, [0.9, 0.5, 0.3])


def test_empty_file(tmp_path):
    gt = read_gt(_write(tmp_path / "gt.txt", ""))
    assert len(gt.frame) == 0 and gt.boxes.shape == (0, 4)
    det = read_det(_write(tmp_path / "det.txt", "\n"))
    assert len(det.frame) == 0
    stats = WindowStats()
    assert build_windows(gt, det, SeqInfo("empty", 10, 10, 100), seq_len=10, stride=10, stats=stats) == []
    assert stats.skipped_few_ids == 10


def test_seqinfo_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="seqinfo.ini"):
        read_seqinfo(str(tmp_path))
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nname=X\nimHeight=480\nseqLength=10\n")
    with pytest.raises(ValueError, match="imWidth"):
        read_seqinfo(str(tmp_path))
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nname=X\nimWidth=abc\nimHeight=480\nseqLength=10\n")
    with pytest.raises(ValueError, match="seqinfo.ini"):
        read_seqinfo(str(tmp_path))
    (tmp_path / "seqinfo.ini").write_text("[Other]\nimWidth=640\n")
    with pytest.raises(ValueError, match="Sequence"):
        read_seqinfo(str(tmp_path))
    (tmp_path / "seqinfo.ini").write_text("imWidth=640\n")
    with pytest.raises(ValueError, match="seqinfo.ini"):
        read_seqinfo(str(tmp_path))
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nimWidth=640\nimHeight=480\nseqLength=10\n")
    info = read_seqinfo(str(tmp_path))
    assert info == SeqInfo(tmp_path.name, 640, 480, 10, 0.0)


def test_load_sequence_without_det(tmp_path):
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nname=S\nimWidth=640\nimHeight=480\nseqLength=2\n")
    (tmp_path / "gt").mkdir()
    _write(tmp_path / "gt" / "gt.txt", "\n".join(GT_LINES) + "\n")
    info, gt, det = load_sequence(str(tmp_path))
    assert info.name == "S" and len(gt.frame) == 4 and det is None


def test_mot17_gt_class_filter(tmp_path):
    # frame, id, x, y, w, h, consider, class, visibility
    lines = [
        "1,1,10,20,30,40,1,1,0.9",
        "1,2,10,20,30,40,0,1,0.5",  # not considered
        "1,3,10,20,30,40,1,3,1.0",  # car
        "1,4,10,20,30,40,1,7,0.0",  # static person
        "2,1,12,20,30,40,1,1,0.8",
        "2,5,10,20,30,40,0,8,0.2",  # distractor
    ]
    path = _write(tmp_path / "gt.txt", "\n".join(lines) + "\n")
    gt = read_gt(path)
    np.testing.assert_array_equal(gt.ids, [1, 1])
    np.testing.assert_array_equal(gt.frame, [1, 2])
    everything = read_gt(path, pedestrians_only=False)
    assert len(everything.frame) == 6


def test_mot15_gt_world_coords_not_class_filtered(tmp_path):
    # frame, id, x, y, w, h, flag, wx, wy, wz (world coordinates, not classes)
    lines = [
        "1,1,88,99,61.08,218.56,1,4.4852,5.5016,0",
        "1,2,181,95,75.808,227.01,1,4.4091,4.4283,0",
        "1,3,184,96,35.446,154.5,1,12.621,10.628,0",
        "1,4,184,96,35.446,154.5,0,3,0.5,0",  # flag 0: ignored
        "2,1,90,99,61.08,218.56,1,-4.1554,-7.3591,0",
    ]
    gt = read_gt(_write(tmp_path / "gt.txt", "\n".join(lines) + "\n"))
    np.testing.assert_array_equal(gt.ids, [1, 2, 3, 1])
    # -1 in the world-coordinate columns (as in KITTI/Venice gt) is not a class either
    lines = ["1,1,10,20,30,40,1,-1,-1,-1", "1,2,10,20,30,40,1,-1,-1,-1", "1,3,10,20,30,40,0,-1,-1,-1"]
    gt = read_gt(_write(tmp_path / "gt2.txt", "\n".join(lines) + "\n"))
    np.testing.assert_array_equal(gt.ids, [1, 2])
    # six columns only: no flag, everything kept
    gt = read_gt(_write(tmp_path / "gt3.txt", "1,1,10,20,30,40\n1,2,10,20,30,40\n"))
    assert len(gt.frame) == 2


def _synthetic_gt(tmp_path, n_ids, frames, present=None):
    """``n_ids`` identities moving right; ``present(id, frame)`` chooses which rows exist."""
    lines = []
    for f in range(1, frames + 1):
        for i in range(1, n_ids + 1):
            if present is None or present(i, f):
                lines.append(f"{f},{i},{10 + 100 * i + f},{50 + 10 * i},40,80,1,-1,-1,-1")
    return read_gt(_write(tmp_path / "gt.txt", "\n".join(lines) + "\n"))


def test_windows_skipped_few_ids(tmp_path):
    # ids 1, 2 always there, id 3 only in frames 1..15: windows starting after frame 6 have two ids
    gt = _synthetic_gt(tmp_path, 3, 40, present=lambda i, f: i < 3 or f <= 15)
    info = SeqInfo("syn", 640, 480, 40)
    stats = WindowStats()
    ws = build_windows(gt, None, info, seq_len=10, num_sources=3, stride=5, stats=stats)
    starts = list(range(1, 40 - 10 + 2, 5))  # 1, 6, 11, 16, 21, 26, 31
    assert [w.start for w in ws] == [1, 6]
    assert all(w.ids == (1, 2, 3) for w in ws)
    assert stats.skipped_few_ids == len(starts) - 2
    assert stats.windows == 2 and stats.by_seq == {"syn": 2}
    # with N=2 every start gives a window
    stats2 = WindowStats()
    ws2 = build_windows(gt, None, info, seq_len=10, num_sources=2, stride=5, stats=stats2)
    assert stats2.skipped_few_ids == 0
    assert {w.start for w in ws2} == set(starts)
    # an identity with a gap inside the window is not used
    gt = _synthetic_gt(tmp_path, 3, 20, present=lambda i, f: not (i == 2 and f == 5))
    ws = build_windows(gt, None, SeqInfo("gap", 640, 480, 20), seq_len=10, num_sources=2, stride=10)
    assert [(w.start, w.ids) for w in ws] == [(1, (1, 3)), (11, (1, 2)), (11, (1, 3)), (11, (2, 3))]


def test_windows_with_synthetic_detections(tmp_path):
    gt = _synthetic_gt(tmp_path, 3, 12)
    info = SeqInfo("syn", 640, 480, 12)
    lines = []
    for f, i, b in zip(gt.frame, gt.ids, gt.boxes):
        if not (i == 2 and f == 4):  # id 2 missed in frame 4
            lines.append(f"{f},-1,{b[0] + 1},{b[1]},{b[2]},{b[3]},0.9")
    lines.append("3,-1,300,100,40,80,0.2")  # low score
    lines.append("5,-1,250,70,40,80,0.9")  # clutter near the sources
    lines.append("5,-1,600,450,5,5,0.9")  # far away: never clutter
    det = read_det(_write(tmp_path / "det.txt", "\n".join(lines) + "\n"))
    (w,) = build_windows(gt, det, info, seq_len=12, num_sources=3, stride=12, min_score=0.5)
    assert w.ids == (1, 2, 3) and w.obs.shape == (12, 3, 4)
    assert w.obs_mask.sum() == 12 * 3 - 1
    assert w.obs_mask[3].sum() == 2 and 1 not in w.obs_source[3][w.obs_mask[3]]
    for t in range(12):
        for k in np.where(w.obs_mask[t])[0]:
            s = w.obs_source[t, k]
            np.testing.assert_allclose(w.obs[t, k] - w.gt[t, s], [1 / 640, 0, 1 / 640, 0], atol=1e-12)
    (wc,) = build_windows(gt, det, info, seq_len=12, num_sources=3, stride=12, min_score=0.5, clutter=True)
    assert wc.obs.shape == (12, 4, 4)
    clutter = (wc.obs_source == -1) & wc.obs_mask
    assert clutter.sum() == 1 and clutter[4].sum() == 1
    np.testing.assert_allclose(wc.obs[clutter][0], [250 / 640, 70 / 480, 290 / 640, 150 / 480])
    # without min_score the low-score detection would be clutter in frame 3
    (wl,) = build_windows(gt, det, info, seq_len=12, num_sources=3, stride=12, clutter=True)
    assert ((wl.obs_source == -1) & wl.obs_mask).sum() == 2


@pytest.mark.parametrize(
    "kw",
    [dict(seq_len=1), dict(seq_len=0), dict(num_sources=0), dict(stride=0), dict(combos_per_window=0)],
)
def test_build_windows_argument_validation(tmp_path, kw):
    gt = _synthetic_gt(tmp_path, 3, 10)
    with pytest.raises(ValueError, match="need"):
        build_windows(gt, None, SeqInfo("syn", 640, 480, 10), **kw)


# ---------------------------------------------------------------------------------------------------------------------
# IoU


def test_xywh_to_xyxy():
    np.testing.assert_allclose(xywh_to_xyxy([1, 2, 3, 4]), [1, 2, 4, 6])
    assert xywh_to_xyxy(np.zeros((5, 7, 4))).shape == (5, 7, 4)


def test_iou_hand_computed():
    a = np.array([[0.0, 0.0, 2.0, 2.0]])
    assert iou_xyxy(a, a)[0, 0] == pytest.approx(1.0)
    assert iou_xyxy(a, [[3.0, 3.0, 4.0, 4.0]])[0, 0] == 0.0
    assert iou_xyxy(a, [[2.0, 0.0, 4.0, 2.0]])[0, 0] == 0.0  # touching edges
    # half of a shifted by 1: intersection 2, union 6
    assert iou_xyxy(a, [[1.0, 0.0, 3.0, 2.0]])[0, 0] == pytest.approx(1 / 3)
    # b is the left half of a: intersection 2, union 4
    assert iou_xyxy(a, [[0.0, 0.0, 1.0, 2.0]])[0, 0] == pytest.approx(0.5)
    # contained box: 1 / 4
    assert iou_xyxy(a, [[0.5, 0.5, 1.5, 1.5]])[0, 0] == pytest.approx(0.25)
    # symmetric
    b = np.array([[1.0, 0.5, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_allclose(iou_xyxy(a, b), iou_xyxy(b, a).T)


def test_iou_nan_and_degenerate():
    a = np.array([[0.0, 0.0, 2.0, 2.0], [np.nan, np.nan, np.nan, np.nan]])
    b = np.array([[0.0, 0.0, 2.0, 2.0], [np.nan, 0.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    with np.errstate(all="raise"):
        iou = iou_xyxy(a, b)
    assert iou.shape == (2, 3)
    assert np.isfinite(iou).all()
    np.testing.assert_allclose(iou, [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_iou_broadcasting():
    rng = np.random.default_rng(0)
    T, N, M = 5, 3, 4
    xy = rng.uniform(0, 1, (T, N + M, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.1, 0.5, (T, N + M, 2))], -1)
    a, b = boxes[:, :N], boxes[:, N:]
    iou = iou_xyxy(a, b)
    assert iou.shape == (T, N, M)
    assert np.all((iou >= 0) & (iou <= 1))
    for t in range(T):
        for n in range(N):
            for m in range(M):
                x1, y1 = np.maximum(a[t, n, :2], b[t, m, :2])
                x2, y2 = np.minimum(a[t, n, 2:], b[t, m, 2:])
                inter = max(x2 - x1, 0) * max(y2 - y1, 0)
                area = lambda z: (z[2] - z[0]) * (z[3] - z[1])  # noqa: E731
                assert iou[t, n, m] == pytest.approx(inter / (area(a[t, n]) + area(b[t, m]) - inter))
    np.testing.assert_allclose(np.diagonal(iou_xyxy(a, a), axis1=1, axis2=2), 1.0)
    # a single box against a batch broadcasts too
    assert iou_xyxy(a[0, :1], b).shape == (T, 1, M)
