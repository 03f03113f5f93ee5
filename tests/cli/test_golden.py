# SPDX-License-Identifier: Apache-2.0
"""Fixed-seed output equivalence of every ``pyro-dvae`` command.

Each test runs one command on small inputs made here (seeded), reduces what it wrote (the JSON summary, the
audio, result and checkpoint files) to a fingerprint of numbers, and compares it with the fingerprint stored in
``tests/cli/golden/``. The stored fingerprints were recorded before the package was reorganised: a refactoring
that changes any output number fails here. Timings, thread counts and machine paths are left out.

Re-record (only for a change meant to alter the outputs, with the reason in the commit body)::

    PYRO_DVAE_RECORD_GOLDEN=1 python -m pytest tests/cli/test_golden.py
"""

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from common import jittered_detections, tud_gt, write_tud

from pyro_dvae import priors
from pyro_dvae.cli import main

GOLDEN = Path(__file__).with_name("golden")
RECORD = os.environ.get("PYRO_DVAE_RECORD_GOLDEN") == "1"
VOLATILE = re.compile(r"seconds|rtf|fps|threads|time", re.I)
SR = 16000


REPO = str(Path(__file__).resolve().parents[2])


def _clean(value, tmp):
    """The summary without timings, with the temporary folder replaced by ``<tmp>`` and the repository (where the
    shipped files are) by ``<repo>``."""
    if isinstance(value, dict):
        return {k: _clean(v, tmp) for k, v in value.items() if not VOLATILE.search(str(k))}
    if isinstance(value, list):
        return [_clean(v, tmp) for v in value]
    if isinstance(value, str):
        return value.replace(str(tmp), "<tmp>").replace(REPO, "<repo>")
    return value


def _digest(array):
    """Length, moments and 16 evenly spaced values of a numeric array."""
    a = np.asarray(array, dtype=np.float64).ravel()
    if a.size == 0:
        return {"size": 0}
    picks = np.linspace(0, a.size - 1, 16).round().astype(int)
    return {"size": int(a.size), "mean": float(a.mean()), "std": float(a.std()), "absmax": float(np.abs(a).max()),
            "values": a[picks].tolist()}


def _file_digest(path):
    path = Path(path)
    if path.suffix in (".wav", ".flac", ".ogg"):
        import soundfile as sf

        data, rate = sf.read(path, dtype="float64")
        return {"rate": int(rate), **_digest(data)}
    if path.suffix == ".txt":
        return _digest(np.loadtxt(path, delimiter=",", ndmin=2))
    if path.suffix == ".pt":
        ckpt = torch.load(path, weights_only=True)
        state = ckpt.get("state_dict", ckpt)
        return {k: _digest(v.float().numpy()) for k, v in sorted(state.items()) if torch.is_tensor(v)}
    raise AssertionError(f"no digest for {path}")


def _compare(got, want, where="", rel=1e-4, abs_=1e-6):
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            _compare(got[k], want[k], f"{where}.{k}", rel, abs_)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, f"{where}[{i}]", rel, abs_)
    elif isinstance(want, float) and not isinstance(want, bool):
        assert isinstance(got, (int, float)), f"{where}: {got!r} is not a number"
        assert math.isclose(got, want, rel_tol=rel, abs_tol=abs_), f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def check_golden(name, tmp, summary_path, files=()):
    """Compare (or, with ``PYRO_DVAE_RECORD_GOLDEN=1``, record) the fingerprint of one command's outputs."""
    with open(summary_path) as f:
        summary = json.load(f)
    got = {"summary": _clean(summary, tmp),
           "files": {str(Path(p).relative_to(tmp)): _file_digest(p) for p in files}}
    got = json.loads(json.dumps(got))  # tuples -> lists, as stored
    path = GOLDEN / f"{name}.json"
    if RECORD:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        return
    want = json.loads(path.read_text())
    _compare(got, want, name)


# ------------------------------------------------------------------------------------------------ inputs
def _write(path, x, sr=SR):
    import soundfile as sf

    sf.write(path, x, sr, subtype="FLOAT")
    return path


@pytest.fixture
def tiny_speech_prior(tmp_path):
    torch.manual_seed(0)
    p = priors.build("srnn", x_dim=513, z_dim=4, emission="spectral", dense_dim=16, rnn_dim=8, z_dense=[8])
    path = tmp_path / "speech.pt"
    p.save(path, sample_rate=SR, n_fft=1024, hop=256)
    return path


@pytest.fixture
def noisy(tmp_path):
    pytest.importorskip("soundfile")
    from pyro_dvae.data.noisy import mix_at_snr, synthetic_noise
    from pyro_dvae.data.synthetic_audio import speech_like

    clean = 0.5 * speech_like(1.0, seed=3)
    mix = mix_at_snr(clean, synthetic_noise("hum", 1.5, seed=4), 5.0)[0]
    return _write(tmp_path / "noisy.wav", mix), _write(tmp_path / "clean.wav", clean)


@pytest.fixture
def mot_dir(tmp_path):
    """TUD-Stadtmitte's first 70 frames (gt shipped in motmetrics) with seeded noisy detections."""
    gt = tud_gt(70)
    det = jittered_detections(gt, np.random.default_rng(0), scores=(0.5, 0.95))
    return write_tud(tmp_path / "mot", gt, det, 70, det_fmt="%.3f")


# ------------------------------------------------------------------------------------------------ commands
def test_train_prior(tmp_path):
    out, log, js = tmp_path / "srnn.pt", tmp_path / "log.json", tmp_path / "s.json"
    assert main(["train-prior", "--model", "srnn", "--data", "synthetic-trajectories", "--out", str(out),
                 "--log-json", str(log), "--out-json", str(js), "--seed", "1", "--epochs", "2", "--num-train", "64",
                 "--num-val", "16", "--seq-len", "12", "--batch-size", "16", "--warmup-epochs", "1", "--ss-start",
                 "1", "--ss-end", "2", "--quiet"]) == 0
    check_golden("train_prior", tmp_path, js, [out])


def test_eval_prior(tmp_path, tiny_speech_prior, noisy):
    data = tmp_path / "data"
    data.mkdir()
    os.replace(noisy[1], data / "clean.wav")
    js = tmp_path / "s.json"
    assert main(["eval-prior", "--prior", str(tiny_speech_prior), "--data", str(data), "--segment", "20",
                 "--out-dir", str(tmp_path / "out"), "--out-json", str(js)]) == 0
    check_golden("eval_prior", tmp_path, js, [tmp_path / "out" / "clean.wav"])


def test_train_noise_and_enhance(tmp_path, tiny_speech_prior, noisy):
    from pyro_dvae.data.noisy import mix_at_snr, synthetic_noise
    from pyro_dvae.data.synthetic_audio import speech_like

    folder = tmp_path / "noisy_dir"
    folder.mkdir()
    for k in range(3):
        _write(folder / f"n{k}.wav", 0.5 * mix_at_snr(speech_like(1.0, seed=60 + k),
                                                        synthetic_noise("hum", 1.5, seed=k), 3.0)[0])
    model, js = tmp_path / "nolv.pt", tmp_path / "tn.json"
    assert main(["train-noise", "--noisy-dir", str(folder), "--prior", str(tiny_speech_prior), "--noise", "nolv",
                 "--out", str(model), "--epochs", "2", "--seq-len", "20", "--batch-size", "4", "--quiet",
                 "--out-json", str(js)]) == 0
    check_golden("train_noise", tmp_path, js, [model])
    runs = {"enhance_nmf": ["--noise", "nmf", "--iters", "3"],
            "enhance_lv_una": ["--noise", "lv", "--iters", "3"],
            "enhance_nolv_unda": ["--noise", "nolv", "--mode", "unda", "--noise-model", str(model), "--iters", "2"]}
    for name, args in runs.items():
        out, js = tmp_path / f"{name}.wav", tmp_path / f"{name}.json"
        assert main(["enhance", str(noisy[0]), "--prior", str(tiny_speech_prior), *args, "--out", str(out),
                     "--ref", str(noisy[1]), "--out-json", str(js)]) == 0
        check_golden(name, tmp_path, js, [out])


def test_separate(tmp_path):
    pytest.importorskip("soundfile")
    from pyro_dvae.data.synthetic_audio import flute_like, speech_like

    s, f = 0.4 * speech_like(1.0, seed=5), 0.3 * flute_like(1.0, seed=6)
    _write(tmp_path / "speech_ref.wav", s)
    _write(tmp_path / "flute_ref.wav", f)
    mix = _write(tmp_path / "mix.wav", s + f)
    js = tmp_path / "s.json"
    assert main(["separate", str(mix), "--priors", "speech", "flute", "--method", "mixdvae", "--method", "is-nmf",
                 "--nmf-dicts", "nmf_speech_flute", "--iters", "2", "--nmf-iters", "5", "--out-dir",
                 str(tmp_path / "sep"), "--refs", str(tmp_path / "speech_ref.wav"), str(tmp_path / "flute_ref.wav"),
                 "--out-json", str(js)]) == 0
    files = [tmp_path / "sep" / m / f"{n}.wav" for m in ("mixdvae", "is-nmf") for n in ("speech", "flute")]
    check_golden("separate", tmp_path, js, files)


def test_track(tmp_path, mot_dir):
    js = tmp_path / "s.json"
    assert main(["track", "--mot-dir", str(mot_dir), "--seq-len", "30", "--stride", "30", "--combos", "2",
                 "--iters", "3", "--method", "mixdvae", "--method", "vkf", "--out-json", str(js)]) == 0
    check_golden("track", tmp_path, js)


def test_track_mot(tmp_path, mot_dir):
    out, js = tmp_path / "res", tmp_path / "s.json"
    assert main(["track-mot", "--mot-dir", str(mot_dir), "--out-dir", str(out), "--iters", "3", "--window", "30",
                 "--out-json", str(js)]) == 0
    out_cv = tmp_path / "res_cv"
    assert main(["track-mot", "--mot-dir", str(mot_dir), "--out-dir", str(out_cv), "--iters", "3", "--dynamics", "cv",
                 "--online", "--latency", "10", "--out-json", str(tmp_path / "cv.json")]) == 0
    check_golden("track_mot", tmp_path, js, [out / "TUD.txt", out_cv / "TUD.txt"])
