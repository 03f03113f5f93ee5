# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae eval-prior``: resynthesised files keep the input's name, sample rate and length; strict JSON."""
import json

import numpy as np
import pytest

from pyro_dvae import priors
from pyro_dvae.cli import main
from pyro_dvae.data.synthetic_audio import speech_like


@pytest.fixture
def folder(tmp_path):
    sf = pytest.importorskip("soundfile")
    from scipy.signal import resample_poly

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    sf.write(data / "a.wav", 0.5 * speech_like(1.0, seed=0), 16000, subtype="PCM_16")
    sf.write(data / "sub" / "b.flac", resample_poly(0.5 * speech_like(0.7, seed=1), 441, 320), 22050)
    sf.write(data / "silent.wav", np.zeros(16000), 16000)
    return data


@pytest.fixture
def prior_path(tmp_path):
    p = priors.build("srnn", x_dim=513, z_dim=4, emission="spectral", dense_dim=16, rnn_dim=8, z_dense=[8])
    path = tmp_path / "p.pt"
    p.save(path, sample_rate=16000, n_fft=1024, hop=256)
    return path


def test_eval_prior_writes_files_like_the_inputs(tmp_path, folder, prior_path, capsys):
    sf = pytest.importorskip("soundfile")
    out, js = tmp_path / "out", tmp_path / "s.json"
    with pytest.warns(UserWarning, match="silent"):
        assert main(["eval-prior", "--prior", str(prior_path), "--data", str(folder), "--segment", "20",
                     "--out-dir", str(out), "--out-json", str(js)]) == 0
    res = json.loads(js.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert res["files"] == 2 and res["past"] == "gen" and res["model"] == "srnn" and len(res["skipped"]) == 1
    assert {r["file"] for r in res["per_file"]} == {"a.wav", "sub/b.flac"}
    for r in res["per_file"]:
        src, dst = sf.info(folder / r["file"]), sf.info(out / r["file"])
        assert (dst.samplerate, dst.frames) == (src.samplerate, src.frames)
        assert np.isfinite(r["si_sdr"]) and r["rmse"] > 0
    assert res["mean"]["si_sdr"] == pytest.approx(np.mean([r["si_sdr"] for r in res["per_file"]]))
    assert "past gen, 2 files" in capsys.readouterr().out


def test_eval_prior_bad_inputs_name_the_option(tmp_path, folder, prior_path, capsys):
    assert main(["eval-prior", "--prior", str(prior_path), "--data", str(tmp_path / "nope")]) == 2
    assert "--data" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval-prior", "--prior", str(prior_path), "--data", str(tmp_path / "empty")]) == 2
    assert "no audio files" in capsys.readouterr().err
    assert main(["eval-prior", "--prior", str(prior_path), "--data", str(folder), "--segment", "-1"]) == 2
    assert "--segment" in capsys.readouterr().err
    traj = priors.build("srnn", x_dim=4, z_dim=2)
    traj.save(tmp_path / "t.pt")
    assert main(["eval-prior", "--prior", str(tmp_path / "t.pt"), "--data", str(folder)]) == 2
    assert "spectral" in capsys.readouterr().err
