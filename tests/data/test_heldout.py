# SPDX-License-Identifier: Apache-2.0
import numpy as np
import pytest
import torch

from pyro_dvae.data import audio, heldout
from pyro_dvae.data import mixtures as mx
from pyro_dvae.data.synthetic_audio import speech_like
from pyro_dvae.metrics import si_sdr


@pytest.fixture()
def corpus(tmp_path):
    sf = pytest.importorskip("soundfile")
    (tmp_path / "speech").mkdir()
    (tmp_path / "noise").mkdir()
    for spk in range(20):
        sf.write(tmp_path / "speech" / f"{100 + spk}-7-0000.flac", 0.3 * speech_like(1.5, seed=spk), 16000)
    rng = np.random.default_rng(0)
    for name in ("hiss", "rumble"):
        sf.write(tmp_path / "noise" / f"{name}.wav", 0.1 * rng.standard_normal(16000 * 10), 16000, subtype="FLOAT")
    return tmp_path


def test_splits_are_disjoint_by_speaker_and_in_time(corpus):
    parts = heldout.speech_split(str(corpus / "speech"))
    spk = {k: {mx.speaker_id(f) for f in v} for k, v in parts.items()}
    assert all(spk[k] for k in heldout.PARTS)
    assert not (spk["train"] & spk["dev"] or spk["train"] & spk["test"] or spk["dev"] & spk["test"])
    assert sum(len(v) for v in parts.values()) == 20
    assert heldout.speech_split(str(corpus / "speech")) == parts  # reproducible
    noises = heldout.noise_split(str(corpus / "noise"))
    for cut in noises.values():
        assert [len(cut[k]) for k in heldout.PARTS] == [96000, 32000, 32000]
    folder = heldout.link_files(parts["train"], str(corpus / "train"))
    assert sorted(audio.audio_files(folder)) == sorted(str(corpus / "train" / f.split("/")[-1]) for f in parts["train"])


def test_noisy_set_snr_and_narrowband(corpus):
    parts = heldout.speech_split(str(corpus / "speech"))
    noises = heldout.noise_split(str(corpus / "noise"))
    items = heldout.noisy_set(parts["test"], noises, snrs=(-5, 10), seconds=1.0, part="test")
    assert len(items) == 2 * len(parts["test"])
    for it in items:  # the SNR is exact, the noise comes from the test segment only
        n = it["noisy"] - it["clean"]
        assert 10 * np.log10((it["clean"] ** 2).sum() / (n**2).sum()) == pytest.approx(it["snr"], abs=1e-6)
        assert abs(si_sdr(it["noisy"], it["clean"]) - it["snr"]) < 0.5
    narrow = heldout.noisy_set(parts["test"], noises, snrs=(5,), seconds=1.0, narrow=True, part="test")
    P = audio.stft(torch.as_tensor(narrow[0]["noisy"], dtype=torch.float32)).abs() ** 2
    prof = P.mean(0)
    assert prof[300:].max() < 1e-6 * prof.max()  # nothing above ~4.7 kHz
    assert 256 <= int(audio.live_bins(P).sum()) < 320
    assert bool(audio.live_bins(audio.stft(torch.as_tensor(items[0]["noisy"], dtype=torch.float32)).abs() ** 2).all())
