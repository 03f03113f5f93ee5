# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae track-mot``: result files in the MOTChallenge format, TrackEval scores, bad detection files, shipped
and wrong priors, options that would be ignored."""

import json

import numpy as np
import pytest
from common import jittered_detections, tud_gt, write_tud

from pyro_dvae.cli import main


@pytest.fixture
def mot_dir(tmp_path):
    """TUD-Stadtmitte (the gt shipped in motmetrics, 179 frames) with detections simulated from the gt: box
    noise, 10 % misses, one low-score false positive per frame."""
    rng = np.random.default_rng(0)
    gt = tud_gt()
    det = jittered_detections(gt, rng, scores=(0.7, 0.95))
    n = int(gt[:, 0].max())
    fp = np.column_stack([np.arange(1, n + 1), -np.ones(n), rng.uniform(0, 500, (n, 2)), np.full((n, 2), 50),
                          rng.uniform(0.1, 0.3, n)])
    return write_tud(tmp_path / "mot", gt, np.vstack([det, fp]), n)


def test_track_mot_writes_motchallenge_results_and_scores_them(mot_dir, tmp_path, capsys):
    pytest.importorskip("trackeval")
    out, js = tmp_path / "res", tmp_path / "t.json"
    assert main(["track-mot", "--mot-dir", str(mot_dir), "--out-dir", str(out), "--eval", "--iters", "3",
                 "--out-json", str(js)]) == 0
    rows = np.loadtxt(out / "TUD.txt", delimiter=",")
    assert rows.shape[1] == 10 and (rows[:, 7:] == -1).all() and (rows[:, 4:6] > 0).all()
    assert np.all(np.diff(rows[:, 0]) >= 0) and rows[:, 0].min() >= 1
    res = json.loads(js.read_text())
    combined = res["eval"]["combined"]
    assert combined["HOTA"] > 60 and combined["IDF1"] > 70 and combined["MOTA"] > 70
    assert res["sequences"]["TUD"]["fps"] > 0 and "HOTA" in capsys.readouterr().out


def test_track_mot_val_half_tracks_only_those_frames(mot_dir, tmp_path):
    out = tmp_path / "res"
    assert main(["track-mot", "--mot-dir", str(mot_dir), "--out-dir", str(out), "--val-half", "--no-refine"]) == 0
    rows = np.loadtxt(out / "TUD.txt", delimiter=",")
    n = 179
    assert rows[:, 0].min() >= n // 2 + 2 and rows[:, 0].max() <= n


def test_track_mot_bad_detection_files(mot_dir, tmp_path, capsys):
    base = ["track-mot", "--mot-dir", str(mot_dir), "--out-dir", str(tmp_path / "o")]
    det = mot_dir / "TUD" / "det"
    assert main([*base, "--det-file", "det/nope.txt"]) == 2
    assert "--det-file det/nope.txt: no such file in TUD" in capsys.readouterr().err
    (det / "empty.txt").write_text("")
    assert main([*base, "--det-file", "det/empty.txt"]) == 2
    assert "no detections" in capsys.readouterr().err
    (det / "raw.txt").write_text("1,-1,10,10,20,40,35.2,-1,-1,-1\n")
    assert main([*base, "--det-file", "det/raw.txt"]) == 2
    assert "outside [0, 1]" in capsys.readouterr().err
    (det / "late.txt").write_text("1,-1,10,10,20,40,0.9,-1,-1,-1\n500,-1,10,10,20,40,0.9,-1,-1,-1\n")
    assert main([*base, "--det-file", "det/late.txt"]) == 2
    assert "beyond seqLength" in capsys.readouterr().err
    assert main([*base, "--seqs", "NOPE"]) == 2
    assert "no such sequence folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_no_detection_in_the_val_half_warns_and_writes_an_empty_result(tmp_path):
    seq = tmp_path / "mot" / "S"
    (seq / "det").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text("[Sequence]\nname=S\nframeRate=30\nseqLength=20\nimWidth=640\nimHeight=480\n")
    (seq / "det" / "det.txt").write_text("1,-1,10,10,20,40,0.9,-1,-1,-1\n2,-1,11,10,20,40,0.9,-1,-1,-1\n")
    with pytest.warns(UserWarning, match="no detections in frames 12-20"):
        assert main(["track-mot", "--mot-dir", str(tmp_path / "mot"), "--val-half", "--out-dir",
                     str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "S.txt").read_text() == ""


def test_eval_without_trackeval_fails_before_tracking(mot_dir, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trackeval" else real(name, *a))
    assert main(["track-mot", "--mot-dir", str(mot_dir), "--out-dir", str(tmp_path / "o"), "--eval"]) == 2
    captured = capsys.readouterr()
    assert "--eval needs TrackEval" in captured.err and captured.out == ""


def _one_line_error(capsys, *needles):
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pyro-dvae track-mot: error: "), err
    for needle in needles:
        assert needle in err, err
    return captured


def test_shipped_prior_names_work(mot_dir, tmp_path, capsys):
    """``--prior srnn_mot_real`` is the shipped default prior (as ``separate`` / ``enhance`` take shipped names):
    the same results as the default; the synthetic ``srnn_mot`` tracks differently."""
    base = ["track-mot", "--mot-dir", str(mot_dir), "--iters", "1", "--window", "30", "--seqs", "TUD"]
    assert main([*base, "--out-dir", str(tmp_path / "named"), "--prior", "srnn_mot_real"]) == 0
    assert main([*base, "--out-dir", str(tmp_path / "default")]) == 0
    assert main([*base, "--out-dir", str(tmp_path / "synthetic"), "--prior", "srnn_mot"]) == 0
    assert (tmp_path / "named" / "TUD.txt").read_text() == (tmp_path / "default" / "TUD.txt").read_text()
    assert (tmp_path / "synthetic" / "TUD.txt").read_text() != (tmp_path / "default" / "TUD.txt").read_text()
    capsys.readouterr()
    assert main([*base, "--out-dir", str(tmp_path / "o"), "--prior", "no_such_prior"]) == 2
    captured = _one_line_error(capsys, "--prior no_such_prior", "no shipped prior of that name", "srnn_mot")
    assert captured.out == "" and not (tmp_path / "o").exists()


def test_an_audio_prior_is_refused_before_any_output(mot_dir, tmp_path, capsys):
    assert main(["track-mot", "--mot-dir", str(mot_dir), "--out-dir", str(tmp_path / "o"), "--prior", "speech"]) == 2
    captured = _one_line_error(capsys, "--prior", "'spectral'-emission", "gaussian prior with x_dim=4")
    assert captured.out == "" and not (tmp_path / "o").exists()  # no table header, no result file


@pytest.mark.parametrize("extra, needles", [
    (["--latency", "10"], ["--latency 10 needs --online"]),
    (["--no-refine", "--dynamics", "cv", "--iters", "50"], ["--dynamics, --iters set the refinement", "--no-refine"]),
    (["--no-refine", "--prior", "srnn_mot"], ["--prior sets the refinement", "--no-refine"]),
    (["--no-refine", "--window", "20"], ["--window sets the refinement"]),
    (["--dynamics", "cv", "--prior", "srnn_mot"], ["--prior with --dynamics cv"]),
])
def test_ignored_options_are_errors(mot_dir, tmp_path, capsys, extra, needles):
    assert main(["track-mot", "--mot-dir", str(mot_dir), "--out-dir", str(tmp_path / "o"), *extra]) == 2
    captured = _one_line_error(capsys, *needles)
    assert captured.out == "" and not (tmp_path / "o").exists()


def test_predict_dvae_uses_the_prior_even_without_refinement(mot_dir, tmp_path):
    """``--predict dvae`` forecasts lost tracks with ``--prior``, so ``--no-refine --prior`` is accepted with it;
    the run writes its results (the forecasting itself: tests/models/test_mot_tracker.py)."""
    out = tmp_path / "o"
    assert main(["track-mot", "--mot-dir", str(mot_dir), "--out-dir", str(out), "--no-refine", "--predict", "dvae",
                 "--prior", "srnn_mot_real"]) == 0
    assert (out / "TUD.txt").read_text().strip()


def test_online_alone_has_the_default_latency_and_no_refine_records_no_dynamics(mot_dir, tmp_path):
    """``--online`` alone runs with a latency of 30 frames; ``--no-refine`` records no dynamics."""
    js = tmp_path / "s.json"
    assert main(["track-mot", "--mot-dir", str(mot_dir), "--out-dir", str(tmp_path / "o"), "--online", "--no-refine",
                 "--out-json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert (res["mode"], res["latency"], res["refine"], res["dynamics"]) == ("online", 30, False, None)


def test_a_binary_detection_file_names_the_file_line_and_option(mot_dir, tmp_path, capsys):
    det = mot_dir / "TUD" / "det" / "bin.txt"
    det.write_bytes(b"1,-1,10,10,20,40,0.9,-1,-1,-1\n\xd2\x04\x00\xff binary\n")
    assert main(["track-mot", "--mot-dir", str(mot_dir), "--out-dir", str(tmp_path / "o"), "--det-file",
                 "det/bin.txt"]) == 2
    captured = _one_line_error(capsys, "--det-file det/bin.txt", f"{det}:2", "not a text file", "0xd2")
    assert "codec" not in captured.err and captured.out == ""
