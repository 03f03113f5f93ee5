# SPDX-License-Identifier: Apache-2.0
"""Noisy speech for speech enhancement: mixing at an exact SNR, held-out noise segments, synthetic noises,
and reading / writing the files of the ``enhance`` command.

- :func:`mix_at_snr` adds a noise segment to a clean utterance so that ``10 log10(sum s^2 / sum n^2)`` is
  exactly the requested SNR over the utterance;
- :func:`split_noise` cuts a noise recording in time into a training part and a held-out part, so that test
  mixtures use noise never seen in training (same noise type, other segments);
- :func:`synthetic_noise`: seeded stand-ins for real noise (``"hum"``: mains hum with harmonics over a
  low-frequency rumble; ``"tones"``: a few steady whistles over weak white noise; ``"modulated"``: band noise
  with a slow random amplitude modulation plus hum, non-stationary; ``"pink"``: stationary 1/f noise;
  ``"babble"``: a sum of synthetic speech-like talkers). **They are not real noise**;
- :func:`read_noisy` / :func:`write_like`: a noisy file read at the model rate with the checks of
  :func:`~pyro_dvae.data.audio.load_audio` (format, NaN, clipping warning), plus silence and length checks,
  and an estimate written back at the input's own sample rate and length.

**References:**

[1] C. Valentini-Botinhao, X. Wang, S. Takaki, J. Yamagishi (2016), "Investigating RNN-based speech
    enhancement methods for noise-robust Text-to-Speech", SSW (VoiceBank-DEMAND: clean speech plus noise at
    fixed SNRs, test speakers and noises held out).
"""

import math
import warnings

import numpy as np

from .audio import N_FFT, SAMPLE_RATE, load_audio
from .synthetic_audio import speech_like

NOISE_KINDS = ("hum", "tones", "modulated", "pink", "babble")
#: A file whose peak is below this (about 1 LSB of 16-bit PCM, -90 dBFS) is treated as silent.
SILENCE_PEAK = 10 ** (-90 / 20)


def mix_at_snr(speech, noise, snr_db, offset=0):
    """``(noisy, scaled_noise)``: ``speech`` plus the segment of ``noise`` starting at ``offset`` (same length
    as ``speech``), scaled so that the speech-to-noise energy ratio is ``snr_db``."""
    speech, noise = np.asarray(speech, dtype=np.float64), np.asarray(noise, dtype=np.float64)
    if speech.ndim != 1 or noise.ndim != 1:
        raise ValueError("speech and noise must be 1-D signals")
    if offset < 0 or offset + len(speech) > len(noise):
        raise ValueError(f"a noise segment of {len(speech)} samples at offset {offset} does not fit in {len(noise)}")
    seg = noise[offset:offset + len(speech)]
    es, en = float(speech @ speech), float(seg @ seg)
    if es <= 0 or en <= 0:
        raise ValueError("cannot set an SNR with a silent speech or noise segment")
    seg = seg * math.sqrt(es / en * 10 ** (-snr_db / 10))
    return speech + seg, seg


def split_noise(noise, test_fraction=0.3):
    """``(train, test)``: the first ``1 - test_fraction`` of a noise recording and the rest."""
    noise = np.asarray(noise, dtype=np.float64)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    cut = int(round(len(noise) * (1 - test_fraction)))
    return noise[:cut], noise[cut:]


def _pink(n, rng):
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)


def synthetic_noise(kind, duration, seed=0, sr=SAMPLE_RATE):
    """A synthetic noise of ``duration`` seconds, peak 1 (module docstring; ``kind`` in :data:`NOISE_KINDS`)."""
    rng = np.random.default_rng(seed)
    n = int(duration * sr)
    t = np.arange(n) / sr
    if kind == "hum":
        f0 = rng.uniform(48.0, 62.0)
        rumble = np.cumsum(rng.standard_normal(n))
        rumble = rumble - np.convolve(rumble, np.ones(801) / 801, "same")  # brown noise, drift removed
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 9))
        x = x + 0.5 * rumble / rumble.std()
    elif kind == "tones":
        freqs = rng.uniform(500.0, 4000.0, 4)
        x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in freqs) + 0.1 * rng.standard_normal(n)
    elif kind == "pink":
        x = _pink(n, rng)
    elif kind == "modulated":
        from scipy.signal import butter, sosfilt

        band = sosfilt(butter(4, [300, 3000], btype="band", fs=sr, output="sos"), rng.standard_normal(n))
        knots = rng.uniform(0.2, 1.0, int(duration * 2) + 2)  # a new level every 0.5 s, smoothly interpolated
        env = np.interp(t, np.arange(len(knots)) * 0.5, knots)
        hum = sum(np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k, f0 in enumerate((100, 200, 300), 1))
        x = band * env / band.std() + 0.3 * hum + 0.2 * _pink(n, rng) / _pink(n, rng).std()
    elif kind == "babble":
        x = sum(speech_like(duration, seed=seed * 100 + k, sr=sr) for k in range(4))
    else:
        raise ValueError(f"unknown noise kind {kind!r}; available: {', '.join(NOISE_KINDS)}")
    return x / np.abs(x).max()


def read_noisy(path, sample_rate=SAMPLE_RATE, n_fft=N_FFT):
    """``(signal at sample_rate, file rate, file length)`` of a noisy file.

    :func:`~pyro_dvae.data.audio.load_audio` checks the file (a missing one is a :class:`FileNotFoundError`, one
    that is not audio a :class:`ValueError`, each naming it), the format and NaN samples and warns on clipping; a silent
    file (peak below :data:`SILENCE_PEAK`) or one shorter than one STFT frame (``n_fft`` samples at the model
    rate) is a :class:`ValueError`.
    """
    import soundfile as sf

    x = load_audio(path, sample_rate)
    info = sf.info(path)
    if len(x) < n_fft:
        raise ValueError(f"{path}: {len(x)} samples at {sample_rate} Hz, shorter than one STFT frame ({n_fft})")
    peak = float(np.abs(x).max())
    if peak < SILENCE_PEAK:
        raise ValueError(f"{path}: the input is silent (peak {peak:.3g}, below -90 dBFS): nothing to enhance")
    return x, int(info.samplerate), int(info.frames)


def write_like(path, signal, rate, length, sample_rate=SAMPLE_RATE):
    """Write ``signal`` (at ``sample_rate``) resampled to ``rate`` and cut / zero-padded to ``length`` samples:
    16-bit PCM, or 32-bit float (with a warning) when it exceeds full scale."""
    import soundfile as sf

    signal = np.asarray(signal, dtype=np.float64)
    if int(rate) != int(sample_rate):
        from scipy.signal import resample_poly

        g = math.gcd(int(rate), int(sample_rate))
        signal = resample_poly(signal, int(rate) // g, int(sample_rate) // g)
    signal = np.pad(signal, (0, max(0, int(length) - len(signal))))[: int(length)]
    over = float(np.abs(signal).max(initial=0.0)) > 1.0
    if over:
        warnings.warn(f"{path}: the estimate exceeds full scale, written as 32-bit float", stacklevel=2)
    sf.write(path, signal, int(rate), subtype="FLOAT" if over else "PCM_16")
    return signal
