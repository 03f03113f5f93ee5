# SPDX-License-Identifier: Apache-2.0
"""The shipped priors and dictionaries (pyro_dvae.pretrained)."""
import json
import os

import pytest
import torch
from common import REALDATA, requires_realdata

from pyro_dvae import pretrained, priors


@pytest.mark.parametrize("name, model", [("speech", "srnn"), ("flute", "srnn"), ("speech_rvae", "rvae"),
                                         ("speech_light", "light-dvae")])
def test_shipped_audio_priors_load_as_spectral_priors(name, model):
    prior = priors.load_spectral(pretrained.path(name))
    assert prior.name == model and prior.x_dim == 513 and prior.emission == "spectral"
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in prior.parameters())
    ckpt = torch.load(pretrained.path(name), weights_only=True)
    assert "training" not in ckpt and ckpt["sample_rate"] == 16000  # no optimiser / resume state shipped
    with torch.no_grad():  # decodes a finite, positive power spectrum
        v = prior.decode(torch.zeros(1, 5, prior.z_dim), torch.ones(1, 5, 513))[1]
    assert v.shape == (1, 5, 513) and torch.isfinite(v).all() and (v > 0).all()


def test_shipped_nmf_dictionaries():
    data = torch.load(pretrained.path("nmf_speech_flute"), weights_only=True)
    assert data["format"] == "pyro-dvae-nmf-dicts" and data["rank"] == 64
    assert sorted(data["dictionaries"]) == ["flute", "speech"]
    assert all(W.shape == (513, 64) and (W >= 0).all() for W in data["dictionaries"].values())


def test_resolve_prefers_files_then_shipped_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pretrained.resolve("speech") == pretrained.path("speech") == pretrained.resolve("speech.pt")
    assert pretrained.resolve("nope.pt") == "nope.pt" and pretrained.resolve(None) is None
    (tmp_path / "speech").write_text("a local file of that name")
    assert pretrained.resolve("speech") == "speech"  # an existing file wins
    assert pretrained.resolve(os.path.join("x", "speech")) == os.path.join("x", "speech")
    with pytest.raises(FileNotFoundError, match="shipped"):
        pretrained.path("nope")


def test_export_keeps_weights_only_in_half_precision(tmp_path):
    from pyro_dvae.training import TrainConfig, train_prior

    torch.manual_seed(0)
    p = priors.build("vae", x_dim=33, z_dim=2, emission="spectral", dense_dim=40, rnn_dim=8, z_dense=[8])
    x = torch.rand(12, 6, 33) + 0.1
    train_prior(p, x[4:], x[:4], TrainConfig(epochs=1, batch_size=4), out=str(tmp_path / "full.pt"))
    assert "training" in torch.load(tmp_path / "full.pt", weights_only=True)  # resume state, not shipped
    size = pretrained.export(tmp_path / "full.pt", tmp_path / "small.pt")
    assert size == os.path.getsize(tmp_path / "small.pt") < os.path.getsize(tmp_path / "full.pt")
    state = torch.load(tmp_path / "small.pt", weights_only=True)["state_dict"]
    assert {v.dtype for k, v in state.items() if v.numel() >= pretrained.HALF_MIN} == {torch.float16}
    assert all(v.dtype == torch.float32 for v in state.values() if v.numel() < pretrained.HALF_MIN)
    q = priors.load(tmp_path / "small.pt")
    for (n, a), b in zip(p.state_dict().items(), q.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=n)


@requires_realdata("speech/librispeech/train-clean-100", "music/iowa_flute")
def test_shipped_priors_beat_is_nmf_on_an_unseen_mixture(tmp_path):
    """The first T = 100 test mixture of the held-out protocol (a test speaker, test flute notes, flute 5 dB above
    the speech), through ``pyro-dvae separate`` with the shipped priors and NMF dictionaries: MixDVAE is above
    IS-NMF on both sources (benchmark: 7.90 / 13.20 against 5.32 / 11.18 dB)."""
    sf = pytest.importorskip("soundfile")
    from pyro_dvae.cli import main
    from pyro_dvae.data import heldout
    from pyro_dvae.data import mixtures as mx

    speech_dir, flute_dir = REALDATA / "speech" / "librispeech" / "train-clean-100", REALDATA / "music" / "iowa_flute"
    notes = heldout.note_split(str(flute_dir))["test"]
    melodies = [mx.concatenate_notes(notes, 4, seed=k) for k in range(8)]
    m = mx.make_mixtures(heldout.speech_split(str(speech_dir))["test"], melodies, 8, num_frames=100, smr_db=-5.0,
                         seed=100)[0]
    for name, x in (("mix", m.mix), ("speech_ref", m.sources["speech"]), ("flute_ref", m.sources["music"])):
        sf.write(tmp_path / f"{name}.wav", x, 16000, subtype="FLOAT")
    assert main(["separate", str(tmp_path / "mix.wav"), "--priors", "speech", "flute", "--method", "mixdvae",
                 "--method", "is-nmf", "--nmf-dicts", "nmf_speech_flute", "--out-dir", str(tmp_path / "out"),
                 "--refs", str(tmp_path / "speech_ref.wav"), str(tmp_path / "flute_ref.wav"), "--out-json",
                 str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    scores = {k: {n: v["estimate"][n]["si_sdr"] for n in ("speech", "flute")} for k, v in summary["methods"].items()}
    for source in ("speech", "flute"):
        assert scores["mixdvae"][source] > scores["is-nmf"][source] + 1.0, scores
    assert scores["mixdvae"]["speech"] > 6.0 and scores["mixdvae"]["flute"] > 11.0, scores


def test_enhance_defaults_to_the_shipped_prior_of_its_noise_model(tmp_path):
    """Without --prior, enhance takes LigHT-DVAE, for nmf and for the deep noise models."""
    sf = pytest.importorskip("soundfile")
    import numpy as np

    from pyro_dvae.cli import main
    from pyro_dvae.data.synthetic_audio import speech_like

    x = speech_like(0.5, seed=0) + 0.05 * np.random.default_rng(0).normal(size=8000)
    sf.write(tmp_path / "noisy.wav", 0.5 * x / np.abs(x).max(), 16000)
    for noise, prior in (("nmf", "speech_rvae"), ("lv", "speech_rvae")):
        js = tmp_path / f"{noise}.json"
        assert main(["enhance", str(tmp_path / "noisy.wav"), "--noise", noise, "--iters", "1", "--out",
                     str(tmp_path / f"{noise}.wav"), "--out-json", str(js)]) == 0
        assert json.loads(js.read_text())["prior"] == prior
