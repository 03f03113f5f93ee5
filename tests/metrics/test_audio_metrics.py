# SPDX-License-Identifier: Apache-2.0
import math

import numpy as np
import pytest
import torch
from common import REALDATA, requires_realdata

from pyro_dvae.metrics import audio as M

PESQ_PAIR = REALDATA / "speech" / "pesq_pair"


def test_si_sdr_hand_case_and_invariances():
    ref = np.array([1.0, -1.0, 1.0, -1.0])  # zero mean, energy 4
    noise = 0.5 * np.array([1.0, 1.0, -1.0, -1.0])  # zero mean, orthogonal to ref, energy 1
    est = ref + noise
    assert M.si_sdr(est, ref) == pytest.approx(10 * math.log10(4.0), abs=1e-12)
    assert M.si_sdr(3.0 * est, ref) == pytest.approx(10 * math.log10(4.0), abs=1e-12)
    assert M.si_sdr(est, -5.0 * ref) == pytest.approx(10 * math.log10(4.0), abs=1e-12)
    assert M.si_sdr(est + 7.0, ref) == pytest.approx(10 * math.log10(4.0), abs=1e-12)  # zero-mean both
    assert M.si_sdr(torch.tensor(est), torch.tensor(ref)) == pytest.approx(M.si_sdr(est, ref))
    assert M.si_sdr(ref, ref) == math.inf
    assert M.si_sdr(noise, ref) == -math.inf
    assert M.si_sdr(np.full(4, 2.0), ref) == -math.inf  # silent (constant) estimate
    rng = np.random.default_rng(0)
    r, e = rng.normal(size=1000), rng.normal(size=1000)
    assert M.si_sdr(e, r) != pytest.approx(M.si_sdr(e + 0.5 * r, r))


def test_rmse_hand_case():
    assert M.rmse(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 3.0, 0.0])) == pytest.approx(math.sqrt(5.0))
    assert M.rmse(torch.zeros(3), torch.zeros(3)) == 0.0


def test_bad_inputs_raise():
    x = np.ones(100)
    with pytest.raises(ValueError, match="est has 99 samples, ref has 100"):
        M.rmse(np.ones(99), x)
    with pytest.raises(ValueError, match="est has 100 samples, ref has 101"):
        M.si_sdr(x, np.ones(101))
    bad = x.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        M.si_sdr(bad, x)
    with pytest.raises(ValueError, match="NaN"):
        M.rmse(x, bad)
    with pytest.raises(ValueError, match="zero-energy"):
        M.si_sdr(np.arange(100.0), np.full(100, 3.0))
    with pytest.raises(ValueError, match="1-D"):
        M.rmse(np.ones((2, 50)), np.ones((2, 50)))
    with pytest.raises(ValueError, match="empty"):
        M.rmse(np.ones(0), np.ones(0))
    with pytest.raises(ValueError, match="mode"):
        M.pesq_score(x, x, 16000, mode="xx")
    with pytest.raises(ValueError, match="sample rate"):
        M.estoi(x, x, -1)


def _speech_like(sr=16000, seconds=2.0, seed=0):
    """Amplitude-modulated harmonic signal with pauses: enough 'speech' for ESTOI's silence removal."""
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(seed)
    voiced = sum(np.sin(2 * np.pi * 150 * k * t + rng.uniform(0, 6)) / k for k in range(1, 15))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) + 0.05
    return voiced * envelope + 0.01 * rng.normal(size=t.size)


def test_estoi_identity_and_degradation():
    ref = _speech_like()
    assert M.estoi(ref, ref, 16000) == pytest.approx(1.0, abs=1e-6)
    noisy = ref + 2.0 * np.random.default_rng(1).normal(size=ref.size) * ref.std()
    assert M.estoi(noisy, ref, 16000) < 0.8
    with pytest.raises(ValueError, match="30 non-silent frames"):
        M.estoi(ref[:2000], ref[:2000], 16000)


def _pesq_pair():
    pytest.importorskip("pesq")
    sf = pytest.importorskip("soundfile")
    ref, sr = sf.read(PESQ_PAIR / "speech.wav")
    deg, sr_deg = sf.read(PESQ_PAIR / "speech_bab_0dB.wav")
    assert sr == sr_deg == 16000
    return ref, deg


@requires_realdata("speech/pesq_pair")
def test_pesq_matches_published_scores():
    ref, deg = _pesq_pair()
    assert M.pesq_score(deg, ref, 16000, "wb") == pytest.approx(1.0832337, abs=1e-4)
    assert M.pesq_score(torch.tensor(deg), torch.tensor(ref), 16000, "nb") == pytest.approx(1.6072081, abs=1e-4)
    # the same pair at 48 kHz is resampled back to 16 kHz: close to, not exactly, the published value
    from scipy.signal import resample_poly

    up = M.pesq_score(resample_poly(deg, 3, 1), resample_poly(ref, 3, 1), 48000, "wb")
    assert up == pytest.approx(1.0832337, abs=0.05)
    scores = M.separation_scores(deg, ref, 16000)
    assert set(scores) == {"si_sdr", "rmse", "pesq_wb", "estoi"}
    assert scores["pesq_wb"] == pytest.approx(1.0832337, abs=1e-4)
    assert -5.0 < scores["si_sdr"] < 5.0  # babble at 0 dB
    assert 0.0 < scores["estoi"] < 1.0
    assert M.separation_scores(deg, ref, 16000, pesq=False)["pesq_wb"] is None


def test_pesq_failure_is_value_error():
    pytest.importorskip("pesq")
    with pytest.raises(ValueError, match="silent"):
        M.pesq_score(np.ones(16000), np.zeros(16000), 16000)
    short = np.random.default_rng(0).normal(size=1000)
    with pytest.raises(ValueError, match="PESQ failed .*BufferTooShort"):
        M.pesq_score(short, short, 16000)


def test_missing_pesq_package_message(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pesq", None)  # makes `import pesq` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "pyro-dvae\[audio\]"'):
        M.pesq_score(np.ones(8000), np.ones(8000), 16000)


def test_speech_scores_row():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    clean = 0.5 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    noisy = clean + 0.1 * rng.standard_normal(len(t))
    row = M.speech_scores(noisy, clean)
    assert list(row) == ["si_sdr", "pesq_wb", "pesq_nb", "estoi"]
    assert row["si_sdr"] == pytest.approx(M.si_sdr(noisy, clean))
    assert all(v is None or math.isfinite(v) for v in row.values())
    assert M.speech_scores(clean, clean)["si_sdr"] is None  # infinite for a perfect estimate: reported as None
    with pytest.raises(ValueError):
        M.speech_scores(noisy[:100], clean)  # lengths differ: SI-SDR raises
