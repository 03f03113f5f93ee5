# SPDX-License-Identifier: Apache-2.0
import numpy as np
import pytest
import torch
from common import REALDATA, requires_realdata

from pyro_dvae.data import audio
from pyro_dvae.data import mixtures as mx

SR = 16000


def _speech_like(seconds, seed, pause=None):
    """Harmonic 'voice' with a syllable-rate envelope; ``pause=(a, b)`` zeroes seconds a..b."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 200)
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    if pause is not None:
        x[int(pause[0] * SR):int(pause[1] * SR)] = 0.0
    return 0.3 * x


def _flute_like(seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(400, 900)
    return 0.5 * (np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * 2 * f0 * t))


def _energy_db(a, b):
    return 10 * np.log10((a @ a) / (b @ b))


@pytest.mark.parametrize("smr_db", [-10.0, 0.0, 5.0])
def test_exact_smr_frames_and_sum(smr_db):
    speech = [_speech_like(3.0, s) for s in range(3)]
    music = [_flute_like(2.5, s) for s in range(2)]
    out = mx.make_mixtures(speech, music, 4, num_frames=50, smr_db=smr_db, seed=1)
    assert len(out) == 4
    for m in out:
        s, mu = m.sources["speech"], m.sources["music"]
        assert len(m.mix) == len(s) == len(mu) == 49 * 256
        assert audio.stft(torch.as_tensor(m.mix)).shape[0] == 50
        assert _energy_db(s, mu) == pytest.approx(smr_db, abs=1e-9)
        assert np.array_equal(m.mix, s + mu) and np.abs(m.mix).max() == pytest.approx(0.9)
        assert m.smr_db == smr_db and m.names["speech"].startswith("<speech array")
        i = int(m.names["speech"].split()[-1][:-1])
        ratio = s / speech[i][m.offsets["speech"]:m.offsets["speech"] + len(s)]  # a scaled copy of the file
        assert np.allclose(ratio[np.isfinite(ratio)], ratio[np.isfinite(ratio)][0])
    assert mx.make_mixtures(speech, music, 1, num_frames=4, peak=None)[0].mix.shape == (3 * 256,)


def test_reproducible_and_seed_dependent():
    speech = [_speech_like(3.0, s) for s in range(3)]
    music = [_flute_like(2.5, s) for s in range(3)]
    a = mx.make_mixtures(speech, music, 3, num_frames=30, seed=7)
    b = mx.make_mixtures(speech, music, 3, num_frames=30, seed=7)
    c = mx.make_mixtures(speech, music, 3, num_frames=30, seed=8)
    assert all(np.array_equal(x.mix, y.mix) and x.offsets == y.offsets for x, y in zip(a, b))
    assert not all(np.array_equal(x.mix, y.mix) for x, y in zip(a, c))


def test_silent_segments_rejected():
    # the speech is silent from 1 s to 3 s; a 1 s segment (63 frames) must avoid most of that gap
    speech = [_speech_like(4.0, 0, pause=(1.0, 3.0))]
    music = [_flute_like(2.0, 0)]
    hop, length = 256, 62 * 256
    out = mx.make_mixtures(speech, music, 30, num_frames=63, seed=0, max_silent_fraction=0.2)
    for m in out:
        start = m.offsets["speech"]
        silent = np.clip(min(start + length, 3 * SR) - max(start, SR), 0, None)
        assert silent <= 0.2 * length + 1024 + hop  # frame granularity
    starts = [m.offsets["speech"] for m in out]
    assert min(starts) < SR and max(starts) > 2.5 * SR  # both loud parts are used
    with pytest.raises(ValueError, match="silent"):
        mx.make_mixtures([np.zeros(SR * 2)], music, 1, num_frames=20, max_tries=50)
    with pytest.raises(ValueError, match="silent"):  # music all silent
        mx.make_mixtures(speech, [np.zeros(SR * 2)], 1, num_frames=20, max_tries=50)


def test_bad_arguments():
    speech, music = [_speech_like(1.0, 0)], [_flute_like(1.0, 0)]
    with pytest.raises(ValueError, match="concatenate_notes"):
        mx.make_mixtures(speech, [_flute_like(0.5, 0)], 1, num_frames=40)
    with pytest.raises(ValueError, match="no speech files"):
        mx.make_mixtures([], music, 1)
    with pytest.raises(ValueError, match="n must be"):
        mx.make_mixtures(speech, music, -1)
    with pytest.raises(ValueError, match="frames"):
        mx.make_mixtures(speech, music, 1, num_frames=0)
    with pytest.raises(ValueError, match="half a frame"):
        mx.make_mixtures(speech, music, 1, num_frames=2)
    with pytest.raises(ValueError, match="1-D"):
        mx.make_mixtures([np.full(SR, np.nan)], music, 1, num_frames=20)


def test_mixture_spec_is_the_keywords():
    speech, music = [_speech_like(3.0, s) for s in range(2)], [_flute_like(2.5, s) for s in range(2)]
    spec = mx.MixtureSpec(num_frames=30, smr_db=-5.0, peak=None)
    a = mx.make_mixtures(speech, music, 2, spec, seed=3)
    b = mx.make_mixtures(speech, music, 2, num_frames=30, smr_db=-5.0, peak=None, seed=3)
    c = mx.make_mixtures(speech, music, 2, mx.MixtureSpec(num_frames=50), num_frames=30, smr_db=-5.0, peak=None,
                         seed=3)  # keywords replace the spec's fields
    assert all(np.array_equal(x.mix, y.mix) and np.array_equal(x.mix, z.mix) for x, y, z in zip(a, b, c))
    assert spec.length == 29 * 256
    with pytest.raises(TypeError, match="'frames'"):
        mx.make_mixtures(speech, music, 1, frames=30)
    with pytest.raises(TypeError, match="MixtureSpec"):
        mx.make_mixtures(speech, music, 1, 30)
    with pytest.raises(ValueError, match="half a frame"):
        mx.MixtureSpec(num_frames=2)


def test_speaker_and_note_ids_and_disjoint_splits():
    files = ["a/103-1240-0000.flac", "a/103-1240-0001.flac", "b/1034-121119-0000.flac", "c/p286_011.wav",
             "c/p286_012_mic1.flac", "d/cmu_arctic_us_axb_a0006.wav", "d/arctic_a0007.wav",
             "cmu_us_slt_arctic/wav/arctic_a0001.wav", "e/p225_001.wav"]
    ids = [mx.speaker_id(f) for f in files]
    assert ids == ["librispeech:103", "librispeech:103", "librispeech:1034", "vctk:p286", "vctk:p286",
                   "cmu_arctic:axb", "cmu_arctic:unknown", "cmu_arctic:slt", "vctk:p225"]
    train, test = mx.speaker_split(files, test_fraction=0.3, seed=0)
    assert sorted(train + test) == sorted(files) and len(test) >= 1
    assert not {mx.speaker_id(f) for f in train} & {mx.speaker_id(f) for f in test}
    assert (train, test) == mx.speaker_split(files, test_fraction=0.3, seed=0)
    tr, te = mx.speaker_split(files, test_speakers=["vctk:p286"])
    assert te == ["c/p286_011.wav", "c/p286_012_mic1.flac"]
    with pytest.raises(ValueError, match="unknown speakers"):
        mx.speaker_split(files, test_speakers=["vctk:p999"])
    with pytest.raises(ValueError, match="at least 2 speakers"):
        mx.speaker_split(files[:2])
    with pytest.raises(ValueError, match="cannot tell the speaker"):
        mx.speaker_id("x/hello.wav")
    notes = ["Flute.vib.ff.A4.wav", "Flute.nonvib.pp.A4.wav", "Flute.vib.ff.Bb5.stereo.wav", "Flute.vib.ff.C4.wav"]
    assert [mx.note_id(f) for f in notes] == ["A4", "A4", "Bb5", "C4"]
    train, test = mx.note_split(notes, test_fraction=0.5, seed=3)
    assert not {mx.note_id(f) for f in train} & {mx.note_id(f) for f in test}
    assert sorted(train + test) == sorted(notes)
    with pytest.raises(ValueError, match="note name"):
        mx.note_id("Flute.vib.ff.wav")


@requires_realdata("speech", "music/iowa_flute")
def test_real_speech_and_flute():
    pytest.importorskip("soundfile")
    speech_dir, flute_dir = REALDATA / "speech", REALDATA / "music" / "iowa_flute"
    speech = sorted(p for p in speech_dir.rglob("*") if p.suffix in (".flac", ".wav") and "pesq_pair" not in p.parts)
    flute = sorted(flute_dir.glob("*.wav"))
    sp_train, sp_test = mx.speaker_split(speech, test_fraction=0.2, seed=0)
    fl_train, fl_test = mx.note_split(flute, test_fraction=0.2, seed=0)
    assert not {mx.speaker_id(f) for f in sp_train} & {mx.speaker_id(f) for f in sp_test}
    assert not {mx.note_id(f) for f in fl_train} & {mx.note_id(f) for f in fl_test}
    assert len(fl_test) == round(0.2 * len({mx.note_id(f) for f in flute}))
    out = mx.make_mixtures(sp_test[:3], fl_test[:3], 3, num_frames=100, smr_db=-10.0, seed=0)
    for m in out:
        assert audio.stft(torch.as_tensor(m.mix)).shape[0] == 100
        assert _energy_db(m.sources["speech"], m.sources["music"]) == pytest.approx(-10.0, abs=1e-9)
        assert m.names["speech"] in map(str, sp_test[:3]) and m.names["music"] in map(str, fl_test[:3])
    melody = mx.concatenate_notes(fl_train[:4], 5, seed=0)
    assert len(melody) > 5 * SR and np.abs(melody).max() <= 1.0
    libri = [f for f in sp_train if "librispeech" in f][:2]  # CMU ARCTIC utterances are shorter than 300 frames
    long = mx.make_mixtures(libri, [melody], 1, num_frames=300, seed=0)[0]
    assert len(long.mix) == 299 * 256
