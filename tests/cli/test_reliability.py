# SPDX-License-Identifier: Apache-2.0
"""What a newcomer hits: missing or empty inputs, unwritable outputs, out-of-range options, corrupt
checkpoints and undefined scores are one-line errors (exit 2) or documented safe handling, before any work,
and every JSON written is strict."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from common import tud_gt, write_tud

from pyro_dvae import priors
from pyro_dvae.cli import main

SR = 16000


def strict_load(path):
    """``json.load`` that refuses NaN / Infinity (what Python's json writes with ``allow_nan=True``)."""
    def refuse(token):
        raise ValueError(f"non-strict JSON token {token}")

    with open(path) as f:
        return json.load(f, parse_constant=refuse)


@pytest.fixture
def mot_dir(tmp_path):
    """One short MOTChallenge sequence (the TUD-Stadtmitte gt shipped in motmetrics, 70 frames) with
    detections made from the gt (score 0.9)."""
    gt = tud_gt(70)
    det = np.column_stack([gt[:, 0], -np.ones(len(gt)), gt[:, 2:6], np.full(len(gt), 0.9)])
    return write_tud(tmp_path / "mot", gt, det, 70)


def track(mot_dir, *extra):
    return main(["track", "--mot-dir", str(mot_dir), "--seq-len", "30", "--stride", "30", "--combos", "1",
                 "--iters", "2", "--method", "vkf", *extra])


@pytest.fixture
def speech_prior(tmp_path):
    p = priors.build("rvae", x_dim=513, z_dim=4, emission="spectral", dense_dim=16, rnn_dim=8, z_dense=[8])
    path = tmp_path / "speech.pt"
    p.save(path, sample_rate=SR, n_fft=1024, hop=256)
    return path


@pytest.fixture
def noisy_wav(tmp_path):
    sf = pytest.importorskip("soundfile")
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    clean = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    sf.write(tmp_path / "clean.wav", clean, SR, subtype="FLOAT")
    sf.write(tmp_path / "noisy.wav", clean + 0.05 * rng.normal(size=SR), SR, subtype="FLOAT")
    sf.write(tmp_path / "silent.wav", np.zeros(SR), SR, subtype="FLOAT")
    return tmp_path / "noisy.wav"


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.count("error:") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


# ---------------------------------------------------------------------------------------------- 1. detections
def test_missing_or_empty_detection_file_is_an_error(mot_dir, capsys):
    assert track(mot_dir, "--det-file", "det/nope.txt") == 2
    one_line_error(capsys, "--det-file det/nope.txt", "no such file", "TUD")
    (mot_dir / "TUD" / "det" / "empty.txt").write_text("")
    assert track(mot_dir, "--det-file", "det/empty.txt") == 2
    one_line_error(capsys, "--det-file det/empty.txt", "no detections")


def test_every_detection_filtered_out_warns_and_writes_strict_json(mot_dir, tmp_path, capsys):
    out = tmp_path / "t.json"
    with pytest.warns(UserWarning, match="--min-score 2 removes every detection of TUD"):
        assert track(mot_dir, "--min-score", "2", "--out-json", str(out)) == 0
    captured = capsys.readouterr()
    assert "0 of" in captured.out and "n/a" in captured.out  # MOTP undefined: no matched box
    res = strict_load(out)
    assert res["detections"]["TUD"]["kept"] == 0 and res["detections"]["TUD"]["detections"] > 0
    assert res["vkf"]["motp"] is None and res["vkf"]["mota"] <= 0


def test_a_binary_detection_file_names_the_file_line_and_option(mot_dir, capsys):
    det = mot_dir / "TUD" / "det" / "bin.txt"
    det.write_bytes(b"\xd2\x00\x13binary")
    assert track(mot_dir, "--det-file", "det/bin.txt") == 2
    err = one_line_error(capsys, "--det-file det/bin.txt", f"{det}:1", "not a text file")
    assert "codec" not in err


# ---------------------------------------------------------------------------------------------- 2. out paths
def test_out_json_in_a_missing_folder_is_created(mot_dir, tmp_path):
    out = tmp_path / "new" / "deeper" / "t.json"
    assert track(mot_dir, "--out-json", str(out)) == 0
    assert strict_load(out)["vkf"]["mota"] > 0.5


def test_unwritable_outputs_fail_before_any_work(mot_dir, tmp_path, speech_prior, noisy_wav, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert track(mot_dir, "--out-json", str(blocker / "t.json")) == 2
    one_line_error(capsys, "--out-json", "is a file")
    assert capsys.readouterr().out == ""  # nothing ran
    assert track(mot_dir, "--out-json", str(tmp_path)) == 2
    one_line_error(capsys, "--out-json", "is a folder")
    enhance = ["enhance", str(noisy_wav), "--prior", str(speech_prior), "--noise", "nmf", "--iters", "1"]
    assert main([*enhance, "--out", str(tmp_path / "out.mp3")]) == 2
    one_line_error(capsys, "--out", ".wav / .flac / .ogg")
    assert main([*enhance, "--out", str(blocker / "out.wav")]) == 2
    one_line_error(capsys, "--out", "is a file")
    assert main([*enhance, "--out", str(tmp_path / "o.wav"), "--out-json", str(tmp_path / "o.wav")]) == 2
    one_line_error(capsys, "name the same file")
    separate = ["separate", str(noisy_wav), "--priors", str(speech_prior), str(speech_prior), "--iters", "1"]
    assert main([*separate, "--out-dir", str(blocker)]) == 2
    one_line_error(capsys, "--out-dir", "not a folder")
    assert not (tmp_path / "out.mp3").exists() and not (tmp_path / "o.wav").exists()


def test_outputs_go_to_new_folders(tmp_path, speech_prior, noisy_wav):
    out, js = tmp_path / "x" / "out.wav", tmp_path / "y" / "s.json"
    assert main(["enhance", str(noisy_wav), "--prior", str(speech_prior), "--noise", "nmf", "--iters", "1",
                 "--out", str(out), "--out-json", str(js)]) == 0
    assert out.exists() and strict_load(js)["noise"] == "nmf"
    assert main(["enhance", str(noisy_wav), "--prior", str(speech_prior), "--noise", "nmf", "--iters", "1",
                 "--speech-shape", "inf", "--out", str(out), "--out-json", str(js)]) == 0
    assert strict_load(js)["speech_shape"] is None  # inf: the Gaussian speech of the fit (the Wiener gain)


# ---------------------------------------------------------------------------------------------- 3. option ranges
@pytest.mark.parametrize("argv, needle", [
    (["separate", "m.wav", "--priors", "a.pt", "b.pt", "--out-dir", "o", "--chunk", "-5"], "argument --chunk"),
    (["separate", "m.wav", "--priors", "a.pt", "b.pt", "--out-dir", "o", "--chunk", "1"], "argument --chunk"),
    (["separate", "m.wav", "--priors", "a.pt", "b.pt", "--out-dir", "o", "--iters", "0"], "argument --iters"),
    (["track", "--mot-dir", "m", "--iters", "0"], "argument --iters: must be an integer >= 1, got 0"),
    (["track", "--mot-dir", "m", "--clutter-prob", "1.5"], "argument --clutter-prob: must be in [0, 1)"),
    (["track", "--mot-dir", "m", "--num-sources", "0"], "argument --num-sources"),
    (["enhance", "n.wav", "--prior", "p.pt", "--noise", "lv", "--iters", "0", "--out", "o.wav"], "argument --iters"),
    (["enhance", "n.wav", "--noise", "nmf", "--speech-shape", "0", "--out", "o.wav"], "argument --speech-shape"),
    (["enhance", "n.wav", "--noise", "nmf", "--speech-shape", "x", "--out", "o.wav"], "argument --speech-shape"),
    (["train-prior", "--model", "vae", "--data", "d", "--out", "o.pt", "--epochs", "0"], "argument --epochs"),
    (["train-prior", "--model", "vae", "--data", "d", "--out", "o.pt", "--lr", "-1"], "argument --lr"),
    (["train-prior", "--model", "vae", "--data", "d", "--out", "o.pt", "--val-fraction", "1"], "--val-fraction"),
    (["train-prior", "--model", "vae", "--data", "d", "--out", "o.pt", "--threads", "0"], "argument --threads"),
    (["train-noise", "--noisy-dir", "d", "--prior", "p.pt", "--noise", "lv", "--out", "o.pt", "--batch-size", "0"],
     "argument --batch-size"),
    (["train-noise", "--noisy-dir", "d", "--prior", "p.pt", "--noise", "lv", "--out", "o.pt", "--lr", "nan"],
     "argument --lr"),
])
def test_option_ranges_are_checked_where_parsed(argv, needle, capsys):
    assert main(argv) == 2
    one_line_error(capsys, needle, f"pyro-dvae {argv[0]}: error:", "--help")


# ---------------------------------------------------------------------------------------------- 4. checkpoints
@pytest.mark.parametrize("content", [b"", os.urandom(4096), b"PK\x03\x04 truncated zip"])
def test_corrupt_checkpoint_says_so_without_unsafe_advice(tmp_path, noisy_wav, content, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    assert main(["enhance", str(noisy_wav), "--prior", str(bad), "--noise", "nmf", "--out",
                 str(tmp_path / "o.wav")]) == 2
    err = one_line_error(capsys, str(bad), "not a valid pyro_dvae prior checkpoint")
    assert "weights_only" not in err and "Traceback" not in err


def test_checkpoint_with_python_objects_is_refused_for_safety(tmp_path, noisy_wav, capsys):
    bad = tmp_path / "obj.pt"
    torch.save({"format": "x", "thing": shutil.Error("not a tensor")}, bad)
    assert main(["enhance", str(noisy_wav), "--prior", str(bad), "--noise", "nmf", "--out",
                 str(tmp_path / "o.wav")]) == 2
    err = one_line_error(capsys, "not loaded for safety")
    assert "weights_only" not in err


# ---------------------------------------------------------------------------------------------- 5. silent --ref
def test_noise_model_for_another_prior_says_to_pass_its_prior(tmp_path, speech_prior, noisy_wav, capsys):
    """A U-ND noise model trained for another speech prior than enhance's default: the error says to pass
    --prior; with --prior it runs."""
    from pyro_dvae import noise
    from pyro_dvae.models.enhancement import EnhancementModel, load_speech_prior

    prior = load_speech_prior(str(speech_prior))
    model = EnhancementModel(prior, noise.build("lv", 513, z_dim=4, rnn_dim=4, dense_dim=4))
    ckpt = tmp_path / "lv.pt"
    noise.save_noise(ckpt, model.noise, prior, model.encoder_state(), SR, 1024, 256)
    argv = ["enhance", str(noisy_wav), "--noise", "lv", "--mode", "und", "--noise-model", str(ckpt), "--out",
            str(tmp_path / "o.wav")]
    assert main(argv) == 2
    one_line_error(capsys, "noise model trained for a 'rvae' speech prior", "pass --prior")
    assert not (tmp_path / "o.wav").exists()
    assert main(argv + ["--prior", str(speech_prior)]) == 0


def test_silent_reference_gives_null_scores_and_succeeds(tmp_path, speech_prior, noisy_wav, capsys):
    js = tmp_path / "s.json"
    with pytest.warns(UserWarning, match="--ref .* is silent"):
        assert main(["enhance", str(noisy_wav), "--prior", str(speech_prior), "--noise", "nmf", "--iters", "1",
                     "--out", str(tmp_path / "o.wav"), "--ref", str(tmp_path / "silent.wav"),
                     "--out-json", str(js)]) == 0
    assert "n/a" in capsys.readouterr().out
    res = strict_load(js)
    for kind in ("output", "input"):
        assert res[kind]["si_sdr"] is None and res[kind]["estoi"] is None
    assert res["selected_iter"] is None  # nmf writes its last iteration's fit
    assert res["dictionary_quantile"] in (0.2, 0.5)  # the median, or the 0.2-quantile when speech dominates
    assert (tmp_path / "o.wav").exists()


# ---------------------------------------------------------------------------------------------- 6. limits
def test_limits_are_consistent(tmp_path, speech_prior, noisy_wav, capsys):
    base = ["enhance", str(noisy_wav), "--prior", str(speech_prior), "--out", str(tmp_path / "o.wav")]
    for noise in ("nmf", "lv"):
        assert main([*base, "--noise", noise, "--iters", "0"]) == 2
        one_line_error(capsys, "argument --iters: must be an integer >= 1")
    assert main([*base, "--noise", "lv", "--mode", "und", "--noise-model", "n.pt", "--iters", "5"]) == 2
    one_line_error(capsys, "--mode und", "drop --iters")
    assert main([*base, "--noise", "lv", "--mode", "unda"]) == 2
    one_line_error(capsys, "--mode unda needs --noise-model")
    assert main(["separate", str(noisy_wav), "--priors", str(speech_prior), "--out-dir", str(tmp_path / "s")]) == 2
    one_line_error(capsys, "--priors", "at least two sources")
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------------------------- 7. tracking priors
def test_track_takes_shipped_prior_names(mot_dir, tmp_path):
    js = tmp_path / "t.json"
    assert track(mot_dir, "--method", "mixdvae", "--method", "deepar", "--prior", "srnn_mot", "--deepar-prior",
                 "deepar_mot", "--out-json", str(js)) == 0
    res = strict_load(js)
    assert all(res[m]["num_windows"] == 2 and res[m]["mota"] > 0.9 for m in ("vkf", "mixdvae", "deepar"))


@pytest.mark.parametrize("extra, needles", [
    (["--prior", "speech"], ["--prior", "'spectral'-emission", "gaussian prior with x_dim=4"]),
    (["--prior", "deepar_mot"], ["--prior", "no latent variables"]),
    (["--deepar-prior", "srnn_mot"], ["--deepar-prior srnn_mot", "expected 'deepar'"]),
    (["--prior", "nope"], ["--prior nope", "no shipped prior of that name"]),
])
def test_track_refuses_a_wrong_prior_before_any_output(mot_dir, capsys, extra, needles):
    assert track(mot_dir, *extra) == 2
    one_line_error(capsys, *needles)
    assert capsys.readouterr().out == ""  # not even the windows line


# ---------------------------------------------------------------------------------------------- 8. audio inputs
def test_a_missing_or_non_audio_input_is_a_one_line_error(tmp_path, speech_prior, noisy_wav, capsys):
    missing, text = tmp_path / "missing.wav", tmp_path / "text.wav"
    text.write_text("not audio\n")
    for path, needle in ((missing, "no such audio file"), (text, "cannot read audio")):
        assert main(["enhance", str(path), "--prior", str(speech_prior), "--noise", "nmf", "--out",
                     str(tmp_path / "o.wav")]) == 2
        err = one_line_error(capsys, str(path), needle)
        assert "System error" not in err
        assert main(["separate", str(path), "--priors", str(speech_prior), str(speech_prior), "--out-dir",
                     str(tmp_path / "s")]) == 2
        one_line_error(capsys, str(path), needle)
        assert main(["enhance", str(noisy_wav), "--prior", str(speech_prior), "--noise", "nmf", "--out",
                     str(tmp_path / "o.wav"), "--ref", str(path)]) == 2
        one_line_error(capsys, str(path), needle)
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "s").exists()


def test_a_non_audio_file_in_a_data_folder_is_named(tmp_path, speech_prior, noisy_wav, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(noisy_wav, folder / "a.wav")
    (folder / "b.wav").write_bytes(b"\x00\x01 not audio")
    assert main(["eval-prior", "--prior", str(speech_prior), "--data", str(folder)]) == 2
    one_line_error(capsys, str(folder / "b.wav"), "cannot read audio")
    assert main(["train-noise", "--noisy-dir", str(folder), "--prior", str(speech_prior), "--noise", "lv", "--out",
                 str(tmp_path / "n.pt"), "--epochs", "1", "--quiet"]) == 2
    one_line_error(capsys, str(folder / "b.wav"), "cannot read audio")
    assert not (tmp_path / "n.pt").exists()
