# SPDX-License-Identifier: Apache-2.0
"""MOTChallenge result files: write / read round trip, strict checks, the MOT17 val-half."""

import numpy as np
import pytest

from pyro_dvae.data.mot_results import MOTResults, read_results, val_half, write_results


def _rows():
    frames = np.array([3, 1, 1, 2, 3])
    ids = np.array([2, 5, 1, 1, 1])
    boxes = np.array([[10.5, 20.25, 30.0, 60.125], [0, 0, 5, 5], [100, 200, 40, 80], [101.5, 201, 40, 80],
                      [-3.5, 7, 12.75, 9]])
    scores = np.array([0.9, 0.5, 1.0, 0.75, 0.125])
    return frames, ids, boxes, scores


def test_val_half():
    assert val_half(600) == (302, 600)  # MOT17-02
    assert val_half(1050) == (527, 1050)  # MOT17-04
    assert val_half(525) == (264, 525)  # MOT17-09
    assert val_half(3) == (3, 3)
    for bad in (2, 0, -5, 10.5, True, float("nan")):
        with pytest.raises(ValueError, match="n_frames"):
            val_half(bad)


def test_round_trip_sorted(tmp_path):
    frames, ids, boxes, scores = _rows()
    path = tmp_path / "sub" / "seq.txt"  # the folder is created
    assert write_results(path, frames, ids, boxes, scores) == 5
    lines = path.read_text().splitlines()
    assert lines[0] == "1,1,100.000,200.000,40.000,80.000,1,-1,-1,-1"
    assert all(len(line.split(",")) == 10 for line in lines)
    res = read_results(path)
    assert isinstance(res, MOTResults)
    order = np.lexsort((ids, frames))
    np.testing.assert_array_equal(res.frame, frames[order])
    np.testing.assert_array_equal(res.ids, ids[order])
    np.testing.assert_allclose(res.boxes, boxes[order], atol=5e-4)
    np.testing.assert_allclose(res.score, scores[order], rtol=1e-6)
    assert res.frame.dtype == np.int64 and res.ids.dtype == np.int64
    frame, ident, box, score = res  # unpacks as a tuple
    assert box.shape == (5, 4)


def test_round_trip_default_scores_and_empty(tmp_path):
    frames, ids, boxes, _ = _rows()
    write_results(tmp_path / "a.txt", frames.astype(float), ids.astype(float), boxes)  # integral floats are fine
    np.testing.assert_array_equal(read_results(tmp_path / "a.txt").score, np.ones(5))
    assert write_results(tmp_path / "e.txt", [], [], np.zeros((0, 4))) == 0
    assert (tmp_path / "e.txt").read_text() == ""
    res = read_results(tmp_path / "e.txt")
    assert res.frame.shape == (0,) and res.boxes.shape == (0, 4)


@pytest.mark.parametrize("change, match", [
    (lambda f, i, b, s: (f, i, b[:, :3], s), "shape"),
    (lambda f, i, b, s: (f[:-1], i, b, s), "frames must have shape"),
    (lambda f, i, b, s: (f * 0, i, b, s), "frames must be >= 1"),
    (lambda f, i, b, s: (f + 0.5, i, b, s), "frames must be integers"),
    (lambda f, i, b, s: (f, i - 1, b, s), "ids must be >= 1"),
    (lambda f, i, b, s: (f, i, np.where(np.arange(4) == 2, -1.0, b), s), "width and height must be > 0"),
    (lambda f, i, b, s: (f, i, np.where(np.arange(4) == 0, np.nan, b), s), "finite"),
    (lambda f, i, b, s: (f, i, b, s * np.inf), "finite"),
    (lambda f, i, b, s: (f, i * 0 + 1, b, s), "more than one box in frame"),
])
def test_write_checks(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        write_results(tmp_path / "x.txt", *change(*_rows()))
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.parametrize("line, match", [
    ("1,1,10,10,5,5", "expected 7 to 10"),
    ("1,1,10,10,5,5,1,-1,-1,-1,7", "expected 7 to 10"),
    ("1 1 10 10 5 5 1 -1 -1 -1", "expected 7 to 10"),
    ("frame,id,x,y,w,h,score,a,b,c", "non-numeric"),
    ("1,1,10,nan,5,5,1,-1,-1,-1", "NaN or infinite"),
    ("0,1,10,10,5,5,1,-1,-1,-1", "frame must be an integer >= 1"),
    ("1.5,1,10,10,5,5,1,-1,-1,-1", "frame must be an integer >= 1"),
    ("1,-1,10,10,5,5,1,-1,-1,-1", "identity must be an integer >= 1"),
    ("1,2.5,10,10,5,5,1,-1,-1,-1", "identity must be an integer >= 1"),
    ("1,1,10,10,0,5,1,-1,-1,-1", "width and height must be > 0"),
    ("1,1,10,10,5,5,1,2,-1,-1", "column 8"),
    ("2,1,10,10,5,5,1,-1,-1,-1", "already has a box in frame 2"),
])
def test_read_bad_rows(tmp_path, line, match):
    path = tmp_path / "bad.txt"
    path.write_text("1,1,10,10,5,5,1,-1,-1,-1\n\n2,1,11,10,5,5,1,-1,-1,-1\n" + line + "\n")
    with pytest.raises(ValueError, match=match) as e:
        read_results(path)
    assert f"{path}:4:" in str(e.value)  # the file and the line (blank lines count)


def test_read_a_binary_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "bin.txt"
    path.write_bytes(b"1,1,10,10,5,5,1,-1,-1,-1\n\xd2\x04\xff\n")
    with pytest.raises(ValueError, match=r"not a text file \(byte 0xd2") as e:
        read_results(path)
    assert f"{path}:2:" in str(e.value) and "codec" not in str(e.value)


def test_read_accepts_short_and_spaced_rows(tmp_path):
    path = tmp_path / "ok.txt"
    path.write_text("\ufeff2, 7, 1.5, 2.5, 3, 4, 0.5\n1,3,0,0,1,1,0.25,1,-1,-1\n")
    res = read_results(path)
    np.testing.assert_array_equal(res.frame, [1, 2])
    np.testing.assert_array_equal(res.ids, [3, 7])
    np.testing.assert_allclose(res.boxes[1], [1.5, 2.5, 3, 4])
    np.testing.assert_allclose(res.score, [0.25, 0.5])
