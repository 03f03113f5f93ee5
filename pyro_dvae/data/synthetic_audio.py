# SPDX-License-Identifier: Apache-2.0
"""Synthetic stand-ins for speech and flute, for examples and tests that must run without real audio.

Both are 16 kHz float64 signals with peak 1, built from seeded random draws:

- :func:`flute_like`: a melody of sustained harmonic notes (drawn from a chromatic scale, by default the
  18 semitones G4-C6, 392-1047 Hz, in the concert flute's range), a few harmonics decaying like ``k^-1.5``,
  5 Hz vibrato, attack/release ramps and faint breath noise;
- :func:`speech_like`: syllables of a source-filter model: voiced ones are glottal harmonic series
  (a speaker's fundamental, 90-220 Hz, gliding within the syllable, ``1/k`` spectral tilt) shaped by three
  formants at a random vowel's positions; unvoiced ones are high-passed noise bursts (fricatives); short
  pauses separate words.

They differ the way real speech and flute do (pitch, harmonic density, formants, noise), which is what a
spectral prior can learn in seconds. **They are not speech or music**: results on them say the pipeline
works, not how well it separates real sources.

**References:**

[1] G. Fant (1960), "Acoustic Theory of Speech Production", Mouton (source-filter model, formants).
[2] N. H. Fletcher, T. D. Rossing (1998), "The Physics of Musical Instruments", Springer, ch. 16 (flute).
"""

import numpy as np

SR = 16000


def _ramp(n, sr, attack=0.03, release=0.05):
    env = np.ones(n)
    a, r = min(int(attack * sr), n // 2), min(int(release * sr), n // 2)
    env[:a] = np.linspace(0.0, 1.0, a)
    if r:
        env[n - r:] = np.linspace(1.0, 0.0, r)
    return env


def _normalise(x):
    peak = np.abs(x).max()
    return x / peak if peak > 0 else x


def chromatic(low_midi=67, high_midi=84):
    """Equal-tempered frequencies (Hz) of the MIDI notes ``low_midi .. high_midi`` (A4 = 69 = 440 Hz)."""
    return 440.0 * 2 ** ((np.arange(low_midi, high_midi + 1) - 69) / 12)


def flute_like(duration, seed=0, sr=SR, notes=None, note_len=(0.25, 0.7)):
    """A synthetic flute-like melody of ``duration`` seconds on ``notes`` (Hz; default
    :func:`chromatic` G4-C6), see the module docstring."""
    rng = np.random.default_rng(seed)
    notes = chromatic() if notes is None else np.asarray(notes, dtype=float)
    L = int(duration * sr)
    out, start = np.zeros(L), 0
    while start < L:
        n = min(int(rng.uniform(*note_len) * sr), L - start)
        t = np.arange(n) / sr
        f0 = rng.choice(notes)
        f = f0 * (1 + 0.006 * np.sin(2 * np.pi * 5.0 * t + rng.uniform(0, 2 * np.pi)))
        phase = 2 * np.pi * np.cumsum(f) / sr
        k = np.arange(1, int(sr / 2 / (f0 * 1.01)) + 1)[:8]
        amps = k**-1.5 * rng.uniform(0.6, 1.0, len(k))
        note = (amps[:, None] * np.sin(k[:, None] * phase[None])).sum(0)
        note = note + 0.01 * rng.standard_normal(n)
        out[start:start + n] = note * _ramp(n, sr) * rng.uniform(0.6, 1.0)
        start += n
    return _normalise(out)


def _formant_gain(freqs, formants, bandwidths):
    return sum(np.exp(-0.5 * ((freqs - F) / bw) ** 2) for F, bw in zip(formants, bandwidths)) + 0.02


def speech_like(duration, seed=0, sr=SR, f0_range=(90.0, 220.0), syllable_len=(0.1, 0.28)):
    """A synthetic speech-like signal of ``duration`` seconds (module docstring)."""
    rng = np.random.default_rng(seed)
    L = int(duration * sr)
    out, start = np.zeros(L), 0
    speaker_f0 = np.exp(rng.uniform(np.log(f0_range[0]), np.log(f0_range[1])))
    bandwidths = (90.0, 120.0, 180.0)
    while start < L:
        kind = rng.choice(3, p=[0.72, 0.18, 0.10])  # voiced, fricative, pause
        n = min(int(rng.uniform(*syllable_len) * sr), L - start)
        if kind == 2:
            start += n // 2
            continue
        t = np.arange(n) / sr
        if kind == 0:
            f0 = speaker_f0 * np.exp(np.linspace(*rng.normal(0.0, 0.12, 2), n))
            phase = 2 * np.pi * np.cumsum(f0) / sr
            formants = (rng.uniform(300, 800), rng.uniform(900, 2200), rng.uniform(2400, 3100))
            k = np.arange(1, int(4000 / speaker_f0) + 1)
            gains = _formant_gain(k * speaker_f0, formants, bandwidths) / k
            x = (gains[:, None] * np.sin(k[:, None] * phase[None])).sum(0)
        else:
            noise = rng.standard_normal(n + 2)
            x = 0.3 * (noise[2:] - 2 * noise[1:-1] + noise[:-2])  # second difference: a high-pass
        env = np.sin(np.pi * np.clip(t / max(t[-1], 1e-9), 0, 1)) ** 0.7
        out[start:start + n] += x * env * rng.uniform(0.5, 1.0)
        start += n
    return _normalise(out)
