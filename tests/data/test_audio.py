# SPDX-License-Identifier: Apache-2.0
import numpy as np
import pytest
import torch

from pyro_dvae.data import audio

sf = pytest.importorskip("soundfile")


def test_stft_shape_and_perfect_reconstruction():
    torch.manual_seed(0)
    sig = torch.randn(2, 16000, dtype=torch.float64)
    spec = audio.stft(sig)
    assert spec.shape == (2, 16000 // 256 + 1, 513)
    back = audio.istft(spec, 16000)
    assert torch.allclose(back, sig, atol=1e-9)


def test_load_resample_and_mono(tmp_path):
    t = np.arange(48000) / 48000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], 1) * 0.5
    path = tmp_path / "a.wav"
    sf.write(path, stereo, 48000)
    with pytest.warns(UserWarning, match="mono"):
        sig = audio.load_audio(str(path))
    assert sig.shape == (16000,)
    spec = np.abs(np.fft.rfft(sig))
    assert abs(np.argmax(spec) * 16000 / len(sig) - 440) < 2


def test_power_sequences_drop_silence(tmp_path):
    rng = np.random.default_rng(0)
    tone = rng.normal(0, 0.3, 16000 * 2)
    tone[16000:] = 0.0  # the second second is silent
    sf.write(tmp_path / "a.flac", tone, 16000)
    seqs = audio.power_sequences(str(tmp_path), seq_len=20)
    assert seqs.shape[1:] == (20, 513)
    assert 3 <= len(seqs) <= 4  # 126 frames = 6 chunks; 62 loud frames touch 4, the silent 2 are dropped
    assert (seqs >= 0).all()


def test_bad_audio(tmp_path):
    (tmp_path / "x.mp3").write_bytes(b"abc")
    with pytest.raises(ValueError, match="unsupported"):
        audio.load_audio(str(tmp_path / "x.mp3"))
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000WAVE")
    with pytest.raises(ValueError, match="cannot read"):
        audio.load_audio(str(tmp_path / "broken.wav"))
    with pytest.raises(ValueError, match="shorter"):
        audio.stft(torch.zeros(100))
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1] * 100), 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN"):
        audio.load_audio(str(tmp_path / "nan.wav"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .* files"):
        audio.power_sequences(str(empty))


def test_missing_or_non_audio_file_names_it(tmp_path):
    """A missing file is a FileNotFoundError naming it (not soundfile's \"System error\"), a file that is not audio or
    a folder a one-line ValueError naming it; read_noisy (enhance) says the same."""
    from pyro_dvae.data.noisy import read_noisy

    missing = tmp_path / "missing.wav"
    for read in (audio.load_audio, read_noisy):
        with pytest.raises(FileNotFoundError, match="no such audio file") as e:
            read(str(missing))
        assert str(missing) in str(e.value) and "System error" not in str(e.value)
    (tmp_path / "text.wav").write_text("hello\nworld\n")
    for read in (audio.load_audio, read_noisy):
        with pytest.raises(ValueError, match="cannot read audio") as e:
            read(str(tmp_path / "text.wav"))
        assert str(tmp_path / "text.wav") in str(e.value) and len(str(e.value).splitlines()) == 1
        assert str(e.value).count(str(tmp_path)) == 1  # soundfile's own copy of the path is dropped
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(ValueError, match="folder.wav: is a folder"):
        audio.load_audio(str(tmp_path / "folder.wav"))


def test_empty_file_and_nan_signal(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(ValueError, match="no samples"):
        audio.load_audio(str(tmp_path / "empty.wav"))
    with pytest.raises(ValueError, match="shorter"):
        audio.stft(torch.zeros(0))
    sig = torch.randn(2000)
    sig[7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        audio.stft(sig)


def test_clipping_warns_and_is_kept(tmp_path):
    rng = np.random.default_rng(0)
    sig = np.clip(rng.normal(0, 0.8, 16000), -1.0, 1.0)  # ~21 % of the samples hit full scale
    sf.write(tmp_path / "clip.wav", sig, 16000, subtype="FLOAT")
    with pytest.warns(UserWarning, match="clipped"):
        out = audio.load_audio(str(tmp_path / "clip.wav"))
    assert np.allclose(out, sig, atol=1e-6)
    sf.write(tmp_path / "ok.wav", sig * 0.5, 16000, subtype="FLOAT")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio.load_audio(str(tmp_path / "ok.wav"))


def test_frame_count_and_normalise_round_trip():
    for frames in (4, 50, 100):
        n = audio.num_samples(frames)
        assert audio.num_frames(n) == frames == audio.stft(torch.zeros(n)).shape[0]
        assert audio.stft(torch.zeros(n + audio.HOP - 1)).shape[0] == frames
    with pytest.raises(ValueError, match="frames"):
        audio.num_samples(0)
    x = np.array([0.1, -0.4, 0.2])
    xn, scale = audio.normalise(x, peak=0.9)
    assert np.isclose(np.abs(xn).max(), 0.9) and np.allclose(audio.denormalise(xn, scale), x)
    xt, st = audio.normalise(torch.tensor([2.0, -8.0]))
    assert torch.allclose(xt, torch.tensor([0.25, -1.0])) and st == 8.0
    with pytest.raises(ValueError, match="silent"):
        audio.normalise(np.zeros(5))
    with pytest.raises(ValueError, match="silent"):
        audio.normalise(torch.zeros(0))
    with pytest.raises(ValueError, match="NaN"):
        audio.normalise(np.array([1.0, np.nan]))
