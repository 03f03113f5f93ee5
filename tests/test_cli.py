# SPDX-License-Identifier: Apache-2.0
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pyro_dvae import priors
from pyro_dvae.cli import main

TINY = ["--epochs", "3", "--num-train", "128", "--num-val", "32", "--seq-len", "20", "--batch-size", "32",
        "--lr", "3e-3", "--warmup-epochs", "1", "--ss-start", "1", "--ss-end", "3", "--quiet"]


def test_train_prior_synthetic_beats_untrained(tmp_path):
    out, log, summary = tmp_path / "srnn.pt", tmp_path / "log.json", tmp_path / "summary.json"
    rc = main(["train-prior", "--model", "srnn", "--data", "synthetic-trajectories", "--out", str(out),
               "--log-json", str(log), "--out-json", str(summary), "--seed", "1", *TINY])
    assert rc == 0
    s = json.loads(summary.read_text())
    assert s["best_val_loss"] < s["untrained_val_loss"]
    assert len(json.loads(log.read_text())["history"]) == 3
    prior = priors.load(out, expect="srnn")
    assert prior.x_dim == 4 and prior.z_dim == 4


def test_train_prior_init_fine_tunes_a_checkpoint(tmp_path, capsys):
    """--init starts from a checkpoint's weights, sizes and normalisation: its initial validation loss is the
    trained prior's (far below a new prior's), its sizes are kept, and clashing options are one-line errors."""
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    args = ["train-prior", "--model", "srnn", "--data", "synthetic-trajectories", "--seed", "1", *TINY]
    assert main([*args, "--out", str(first), "--out-json", str(tmp_path / "a.json")]) == 0
    assert main([*args, "--out", str(second), "--out-json", str(tmp_path / "b.json"), "--init", str(first),
                 "--ss-mode", "sequential"]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert b["untrained_val_loss"] < a["untrained_val_loss"] - 1.0
    assert "initial (--init)" in capsys.readouterr().out
    p, q = priors.load(first), priors.load(second)
    assert p.config == q.config and torch.equal(p.x_loc, q.x_loc)  # the normalisation was not refitted
    for extra, message in ((["--dense-dim", "8"], "drop --dense-dim"), (["--model", "vae"], "holds a srnn prior"),
                           (["--resume", str(first)], "give one of them")):
        rc = main([*args, "--out", str(tmp_path / "c.pt"), "--init", str(first), *extra])
        assert rc == 2 and message in capsys.readouterr().err


def test_train_prior_audio_folder(tmp_path):
    sf = pytest.importorskip("soundfile")
    rng = np.random.default_rng(0)
    for i in range(2):
        sf.write(tmp_path / f"s{i}.wav", rng.normal(0, 0.2, 16000), 16000)
    out = tmp_path / "spec.pt"
    rc = main(["train-prior", "--model", "vae", "--data", str(tmp_path), "--out", str(out), "--epochs", "2",
               "--seq-len", "10", "--z-dim", "4", "--dense-dim", "16", "--rnn-dim", "8", "--z-dense", "8",
               "--quiet"])
    assert rc == 0
    prior = priors.load(out)
    assert prior.emission == "spectral" and prior.x_dim == 513


def test_train_prior_model_option(tmp_path, capsys):
    """--model-option KEY=VALUE reaches priors.build (VALUE read as JSON); a bad one is named in a one-line error."""
    out = tmp_path / "srnn.pt"
    assert main(["train-prior", "--model", "srnn", "--data", "synthetic-trajectories", "--out", str(out), *TINY,
                 "--model-option", "residual=false"]) == 0
    assert priors.load(out, expect="srnn").residual is False  # the command turns it on for trajectories
    capsys.readouterr()
    assert main(["train-prior", "--model", "vae", "--data", "synthetic-trajectories", "--out", str(out), *TINY,
                 "--model-option", "residual=true"]) == 2
    err = capsys.readouterr().err
    assert "--model-option residual=True" in err and "autoregressive" in err
    assert main(["train-prior", "--model", "vae", "--data", "synthetic-trajectories", "--out", str(out),
                 "--model-option", "no equals sign"]) == 2
    assert "argument --model-option: expected KEY=VALUE" in capsys.readouterr().err


def test_cli_errors(tmp_path, capsys):
    rc = main(["train-prior", "--model", "vae", "--data", str(tmp_path / "nowhere"), "--out", "x.pt"])
    err = capsys.readouterr().err
    assert rc == 2 and "--data" in err and "no such folder" in err
    assert main(["train-prior", "--model", "lstm", "--data", "synthetic-trajectories", "--out", "x.pt"]) == 2
    assert "argument --model: invalid choice: 'lstm'" in capsys.readouterr().err


def test_console_script_entry_point(tmp_path):
    out = tmp_path / "vae.pt"
    proc = subprocess.run([sys.executable, "-m", "pyro_dvae.cli", "train-prior", "--model", "vae", "--data",
                           "synthetic-trajectories", "--out", str(out), *TINY], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "untrained" in proc.stdout
    assert torch.load(out, weights_only=True)["prior"] == "vae"


# --------------------------------------------------------------------------------- separate: NMF baselines
SR = 16000
BANDS = {"low": (100, 1500), "high": (2500, 6000)}


def band_noise(seconds, lo, hi, seed):
    """Noise band-limited to ``[lo, hi]`` Hz with a slow random envelope, peak 0.5."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    f = np.fft.rfftfreq(n, 1 / SR)
    x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * ((f >= lo) & (f <= hi)), n)
    x *= np.convolve(rng.random(n) < 4 / SR, np.hanning(3000), "same") + 0.1
    return 0.5 * x / np.abs(x).max()


@pytest.fixture
def nmf_files(tmp_path):
    """Two training folders (two files each), a 22.05 kHz mixture of held-out signals and its references."""
    sf = pytest.importorskip("soundfile")
    from scipy.signal import resample_poly

    for k, (name, (lo, hi)) in enumerate(BANDS.items()):
        (tmp_path / name).mkdir()
        for i in range(2):
            sf.write(tmp_path / name / f"{i}.wav", band_noise(1.0, lo, hi, seed=10 * k + i), SR)
    refs = [band_noise(1.0, lo, hi, seed=100 + k) for k, (lo, hi) in enumerate(BANDS.values())]
    up = lambda x: resample_poly(x, 441, 320)  # noqa: E731  16 kHz -> 22.05 kHz
    sf.write(tmp_path / "mix.wav", up(refs[0] + refs[1]) / 2, 22050)
    for name, r in zip(BANDS, refs):
        sf.write(tmp_path / f"ref_{name}.wav", up(r) / 2, 22050)
    return tmp_path


def _nmf_args(d):
    return ["--nmf-train", str(d / "low"), str(d / "high"), "--nmf-rank", "3", "--nmf-iters", "30"]


def test_separate_is_nmf_without_priors(nmf_files, capsys):
    import soundfile as sf

    d, out = nmf_files, nmf_files / "out"
    rc = main(["separate", str(d / "mix.wav"), "--method", "is-nmf", "--names", "low", "high", *_nmf_args(d),
               "--out-dir", str(out), "--refs", str(d / "ref_low.wav"), str(d / "ref_high.wav"),
               "--out-json", str(d / "s.json")])
    assert rc == 0, capsys.readouterr().err
    mix = sf.info(d / "mix.wav")
    for name in BANDS:
        info = sf.info(out / f"{name}.wav")
        assert info.samplerate == 22050 and info.frames == mix.frames
    s = json.loads((d / "s.json").read_text())
    assert list(s["methods"]) == ["is-nmf"] and s["outputs"]["low"] == str(out / "low.wav")
    assert s["estimate"] == s["methods"]["is-nmf"]["estimate"] and s["nmf_rank"] == 3
    for name in BANDS:  # two disjoint bands: NMF must separate them well
        assert s["estimate"][name]["si_sdr"] > s["mixture"][name]["si_sdr"] + 5, s
    assert "is-nmf" in capsys.readouterr().out


def test_separate_nmf_dicts_learnt_once_then_reused(nmf_files, capsys):
    d = nmf_files
    base = ["separate", str(d / "mix.wav"), "--method", "is-nmf", "--names", "low", "high",
            "--refs", str(d / "ref_low.wav"), str(d / "ref_high.wav"), "--nmf-rank", "3", "--nmf-iters", "30"]
    dicts = d / "cache" / "dicts.pt"
    assert main([*base, *_nmf_args(d), "--nmf-dicts", str(dicts), "--out-dir", str(d / "a"),
                 "--out-json", str(d / "a.json")]) == 0
    assert dicts.exists()
    # the second run reads the file: no training folder needed, same scores
    assert main([*base, "--nmf-dicts", str(dicts), "--out-dir", str(d / "b"), "--out-json", str(d / "b.json")]) == 0
    a, b = (json.loads((d / f"{k}.json").read_text()) for k in "ab")
    assert a["estimate"] == b["estimate"] and b["nmf_fit_seconds"] is None
    # another rank, another source set, or a file that is not a dictionaries file: clear errors
    bad = base[:]
    bad[bad.index("--nmf-rank") + 1] = "4"
    assert main([*bad, "--nmf-dicts", str(dicts), "--out-dir", str(d / "c")]) == 2
    assert "--nmf-rank 4" in capsys.readouterr().err
    (d / "junk.pt").write_bytes(b"not a checkpoint")
    assert main([*base, "--nmf-dicts", str(d / "junk.pt"), "--out-dir", str(d / "c")]) == 2
    assert "--nmf-dicts" in capsys.readouterr().err


def test_separate_compares_methods(nmf_files, capsys):
    d, out = nmf_files, nmf_files / "out"
    for name in BANDS:  # untrained spectral priors: only the plumbing is tested here
        priors.build("vae", x_dim=513, z_dim=2, emission="spectral", dense_dim=8, rnn_dim=8,
                     z_dense=[8]).save(d / f"{name}.pt")
    rc = main(["separate", str(d / "mix.wav"), "--priors", str(d / "low.pt"), str(d / "high.pt"),
               *[a for m in ("mixdvae", "is-nmf", "temporal-nmf") for a in ("--method", m)], *_nmf_args(d),
               "--iters", "2", "--out-dir", str(out), "--refs", str(d / "ref_low.wav"), str(d / "ref_high.wav"),
               "--out-json", str(d / "s.json")])
    assert rc == 0, capsys.readouterr().err
    s = json.loads((d / "s.json").read_text())
    assert list(s["methods"]) == ["mixdvae", "is-nmf", "temporal-nmf"] and "estimate" not in s
    for method, entry in s["methods"].items():
        assert set(entry["estimate"]) == set(BANDS)
        for name in BANDS:
            path = out / method / f"{name}.wav"
            assert path.exists() and entry["outputs"][name] == str(path)
    assert s["methods"]["mixdvae"]["iters"] == 2 and s["methods"]["temporal-nmf"]["nmf_iters"] == 30
    assert set(s["mixture"]) == set(BANDS)


def test_separate_nmf_bad_inputs(nmf_files, capsys):
    import soundfile as sf

    d = nmf_files
    (d / "empty").mkdir()
    (d / "empty" / "notes.txt").write_text("no audio here")
    (d / "silent").mkdir()
    sf.write(d / "silent" / "0.wav", np.zeros(SR), SR)
    base = ["separate", str(d / "mix.wav"), "--out-dir", str(d / "o")]
    names = ["--names", "low", "high"]
    cases = [
        (["--method", "is-nmf", *names], "needs --nmf-train"),
        (["--method", "is-nmf", *names, "--nmf-train", str(d / "low")], "one --nmf-train folder per source"),
        (["--method", "is-nmf", *names, "--nmf-train", str(d / "low"), str(d / "nowhere")],
         "no such folder"),
        (["--method", "is-nmf", *names, "--nmf-train", str(d / "low"), str(d / "empty")], "--nmf-train " + str(d)),
        (["--method", "is-nmf", *names, "--nmf-train", str(d / "low"), str(d / "silent")], "silent"),
        (["--method", "is-nmf", *names, *_nmf_args(d), "--nmf-rank", "0"], "argument --nmf-rank: must be an"),
        (["--method", "temporal-nmf", *names, *_nmf_args(d), "--nmf-iters", "0"], "argument --nmf-iters: must be"),
        (["--method", "is-nmf", "--names", "a", "a", *_nmf_args(d)], "(--names) must differ"),
        (["--method", "is-nmf", "--priors", str(d / "a" / "x.pt"), str(d / "b" / "x.pt"), *_nmf_args(d)],
         "(--priors file stems) must differ"),
        (["--method", "is-nmf", *_nmf_args(d)], "--names"),
        ([*names, *_nmf_args(d)], "--method mixdvae needs --priors"),  # mixdvae, the default
        (["--method", "is-nmf", "--method", "mixdvae", *names, *_nmf_args(d)], "--method mixdvae needs --priors"),
        (["--method", "is-nmf", *names, *_nmf_args(d), "--refs", str(d / "ref_low.wav")], "one --refs file"),
        (["--priors", str(d / "low.pt"), str(d / "high.pt"), *_nmf_args(d)], "--nmf-train is for --method"),
    ]
    for extra, option in cases:
        rc = main(base + extra)
        err = capsys.readouterr().err
        assert rc == 2 and option in err and len(err.strip().splitlines()) == 1, (extra, err)
    assert not (d / "o").exists()  # every error before any output


def test_train_prior_transformer_dvae_schedules(tmp_path, capsys):
    """Scheduled sampling by default (chosen on the dev speakers, README), teacher forcing with --ss-max 0."""
    out, summary = tmp_path / "light.pt", tmp_path / "s.json"
    args = ["train-prior", "--model", "light-dvae", "--data", "synthetic-trajectories", "--out", str(out),
            "--out-json", str(summary), "--epochs", "2", "--num-train", "64", "--num-val", "16", "--seq-len", "12",
            "--batch-size", "32", "--quiet"]
    assert main(args + ["--ss-max", "0"]) == 0
    assert "teacher forcing" in capsys.readouterr().out
    assert main(args) == 0
    assert "scheduled sampling epochs 1-2 up to 1" in capsys.readouterr().out
    s = json.loads(summary.read_text())
    assert s["best_val_loss"] < s["untrained_val_loss"]
    assert priors.load(out, expect="light-dvae").x_dim == 4


def test_main_applies_threads_once_and_restores_them(tmp_path, monkeypatch):
    from pyro_dvae.cli import track, train_prior

    seen = {}
    monkeypatch.setattr(train_prior, "run", lambda args: seen.setdefault("threads", torch.get_num_threads()) and {})
    before = torch.get_num_threads()
    assert main(["train-prior", "--model", "vae", "--data", "synthetic-trajectories", "--out", str(tmp_path / "p.pt"),
                 "--threads", "2"]) == 0
    assert seen["threads"] == 2 and torch.get_num_threads() == before
    from pyro_dvae.models.tracking import METHODS

    assert track.METHODS == METHODS  # the parser's copy, kept so that --help does not import the tracking model


def test_main_restores_the_warning_format(tmp_path):
    """Warnings inside a command read ``pyro-dvae COMMAND: warning: ...``; after it, Python's own format is back."""
    import warnings

    before = warnings.formatwarning
    assert main(["train-prior", "--model", "vae", "--data", str(tmp_path / "nowhere"), "--out", "x.pt"]) == 2
    assert main(["train-prior", "--model", "vae", "--data", "synthetic-trajectories", "--out", str(tmp_path / "p.pt"),
                 *TINY]) == 0
    assert warnings.formatwarning is before
