# SPDX-License-Identifier: Apache-2.0
"""A fixed train / dev / test protocol for the audio tasks on real recordings.

Settings are chosen on the **dev** part only; the **test** part is never used for any choice. Everything is
split so that nothing heard in training or development comes back in the test:

- speech: by speaker (:func:`~pyro_dvae.data.mixtures.speaker_split`, seeded): 20 % of the speakers for test,
  then 15 % of the rest for dev;
- instrument notes: by note name (:func:`~pyro_dvae.data.mixtures.note_split`): 20 % of the notes for test,
  then 20 % of the rest for dev (unseen pitches);
- noise recordings: in time (:func:`~pyro_dvae.data.noisy.split_noise`): the first 60 % of each recording for
  training, the next 20 % for dev, the last 20 % for test.

:func:`noisy_set` draws reproducible noisy utterances (clean speech of the part's speakers plus a random
segment of the part's noise at given SNRs), optionally as narrowband telephone audio (:func:`narrowband`:
both signals band-limited by resampling to 8 kHz and back, so nothing is left above 4 kHz).
"""

import math
import os

import numpy as np

from . import audio
from . import mixtures as mx
from .noisy import mix_at_snr, split_noise

PARTS = ("train", "dev", "test")
SEED = 0


def _identified(files, key):
    keep = []
    for f in files:
        try:
            key(f)
            keep.append(f)
        except ValueError:
            pass
    return keep


def _three_way(files, group_split, what, dev_fraction, seed):
    if len(files) < 3:
        raise ValueError(f"need at least 3 {what} files with recognisable names, got {len(files)}")
    train, test = group_split(files, test_fraction=0.2, seed=seed)
    train, dev = group_split(train, test_fraction=dev_fraction, seed=seed + 1)
    return {"train": train, "dev": dev, "test": test}


def speech_split(speech_dir, seed=SEED):
    """``{"train", "dev", "test"}`` lists of speech files, disjoint by speaker (module docstring)."""
    files = _identified(audio.audio_files(speech_dir), mx.speaker_id)
    return _three_way(files, mx.speaker_split, f"{speech_dir}: speech", 0.15, seed)


def note_split(music_dir, seed=SEED):
    """``{"train", "dev", "test"}`` lists of instrument-note files, disjoint by note (module docstring)."""
    files = _identified(audio.audio_files(music_dir), mx.note_id)
    return _three_way(files, mx.note_split, f"{music_dir}: note (e.g. Flute.vib.ff.A4.wav)", 0.2, seed)


def noise_split(noise_dir):
    """``{name: {"train", "dev", "test"}}``: each noise recording (16 kHz) cut in time 60 / 20 / 20 %."""
    out = {}
    for f in audio.audio_files(noise_dir):
        x = audio.load_audio(f)
        train, rest = split_noise(x, 0.4)
        dev, test = split_noise(rest, 0.5)
        out[os.path.splitext(os.path.basename(f))[0]] = {"train": train, "dev": dev, "test": test}
    if not out:
        raise ValueError(f"{noise_dir}: no noise recording found")
    return out


def link_files(files, folder):
    """Make ``folder`` hold symbolic links to ``files`` (a training folder for ``pyro-dvae train-prior``);
    returns ``folder``."""
    os.makedirs(folder, exist_ok=True)
    for f in files:
        dst = os.path.join(folder, os.path.basename(f))
        if not os.path.lexists(dst):
            os.symlink(os.path.abspath(f), dst)
    return folder


def narrowband(x, rate=audio.SAMPLE_RATE, narrow=8000):
    """``x`` band-limited to ``narrow / 2`` Hz, at its own rate: resampled to ``narrow`` Hz and back (what a
    telephone-band recording played at 16 kHz holds)."""
    from scipy.signal import resample_poly

    g = math.gcd(int(rate), int(narrow))
    y = resample_poly(resample_poly(np.asarray(x, dtype=np.float64), narrow // g, rate // g), rate // g, narrow // g)
    return y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))


def active_segment(x, seconds, rate=audio.SAMPLE_RATE):
    """The ``seconds``-long segment of ``x`` with the most energy (the whole signal when shorter)."""
    n = int(seconds * rate)
    if len(x) <= n:
        return np.asarray(x, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(x, dtype=np.float64) ** 2)])
    starts = np.arange(0, len(x) - n + 1, rate // 4)
    best = starts[np.argmax(cum[starts + n] - cum[starts])]
    return np.asarray(x[best:best + n], dtype=np.float64)


def noisy_set(speech_files, noises, snrs=(-5, 0, 5, 10), seconds=4.0, per_snr=None, narrow=False, seed=SEED,
              part="test"):
    """Reproducible noisy utterances: a list of dicts ``{"name", "clean", "noisy", "snr", "noise", "speaker"}``.

    :param list speech_files: clean utterances (one part of :func:`speech_split`); the loudest ``seconds`` of each.
    :param dict noises: :func:`noise_split` output; the ``part`` segment of a noise drawn per utterance.
    :param snrs: input SNRs in dB; every utterance is used at every SNR unless ``per_snr`` limits the count.
    :param bool narrow: band-limit speech and noise to 4 kHz (:func:`narrowband`) before mixing.
    """
    rng = np.random.default_rng(seed)
    names = sorted(noises)
    files = list(speech_files)
    out = []
    for snr in snrs:
        chosen = files if per_snr is None else [files[i] for i in rng.permutation(len(files))[:per_snr]]
        for f in chosen:
            clean = active_segment(audio.load_audio(f), seconds)
            kind = names[rng.integers(len(names))]
            noise = noises[kind][part]
            if len(noise) < len(clean):
                noise = np.tile(noise, int(np.ceil(len(clean) / len(noise))))
            offset = int(rng.integers(0, len(noise) - len(clean) + 1))
            if narrow:
                clean, noise = narrowband(clean), narrowband(noise)
            noisy, _ = mix_at_snr(clean, noise, snr, offset)
            peak = np.abs(noisy).max()
            scale = 0.5 / peak if peak > 0 else 1.0  # a file that could be written as 16-bit PCM
            stem = os.path.splitext(os.path.basename(f))[0]
            out.append({"name": f"{stem}_{kind}_{snr:+d}dB{'_8k' if narrow else ''}", "clean": clean * scale,
                        "noisy": noisy * scale, "snr": snr, "noise": kind, "speaker": mx.speaker_id(f)})
    return out
