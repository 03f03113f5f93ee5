# SPDX-License-Identifier: Apache-2.0
"""Audio front end: reading, mono/resampling to 16 kHz, STFT with a sine window and its inverse.

Analysis: 1024-sample sine window ``w[n] = sin(pi (n + 1/2) / 1024)``, hop 256 (75 % overlap), no zero
padding, centred frames; a 16 kHz signal gives 513 frequency bins. The inverse uses the same window
(weighted overlap-add), which reconstructs perfectly for this window/hop pair.
"""

import math
import os
import warnings

import numpy as np
import torch

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 256
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


def sine_window(n=N_FFT, device=None, dtype=torch.float32):
    return torch.sin(math.pi * (torch.arange(n, device=device, dtype=dtype) + 0.5) / n)


def load_audio(path, sample_rate=SAMPLE_RATE):
    """Read a wav / flac / ogg file as a mono float64 numpy array at ``sample_rate``.

    Multi-channel files are averaged to mono (with a warning); other rates are resampled with
    :func:`scipy.signal.resample_poly`. Unsupported formats, empty files and NaN samples are errors.
    """
    try:
        import soundfile as sf
    except ImportError:  # pragma: no cover - soundfile is in the audio extra
        raise ImportError("reading audio needs soundfile: pip install 'pyro-dvae[audio]'") from None
    if not str(path).lower().endswith(AUDIO_EXTENSIONS):
        raise ValueError(f"{path}: unsupported audio format (use {', '.join(AUDIO_EXTENSIONS)})")
    try:
        data, sr = sf.read(path, dtype="float64", always_2d=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read audio ({e})") from None
    if data.shape[1] > 1:
        warnings.warn(f"{path}: {data.shape[1]} channels averaged to mono", stacklevel=2)
    data = data.mean(1)
    if data.size == 0:
        raise ValueError(f"{path}: no samples")
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: contains NaN or inf samples")
    if sr != sample_rate:
        from scipy.signal import resample_poly

        g = math.gcd(int(sr), int(sample_rate))
        data = resample_poly(data, sample_rate // g, int(sr) // g)
    return data


def stft(signal, n_fft=N_FFT, hop=HOP):
    """Complex STFT ``(*batch, frames, n_fft // 2 + 1)`` of a real signal ``(*batch, samples)``."""
    signal = torch.as_tensor(signal)
    if signal.shape[-1] < n_fft // 2 + 1:
        raise ValueError(f"signal of {signal.shape[-1]} samples is shorter than half a frame ({n_fft // 2 + 1})")
    batch = signal.shape[:-1]
    spec = torch.stft(signal.reshape(-1, signal.shape[-1]), n_fft, hop, window=sine_window(n_fft, signal.device,
                      signal.dtype), center=True, return_complex=True)
    return spec.transpose(-1, -2).reshape(*batch, spec.shape[-1], spec.shape[-2])


def istft(spec, length, n_fft=N_FFT, hop=HOP):
    """Inverse of :func:`stft` (``length`` samples)."""
    batch = spec.shape[:-2]
    flat = spec.reshape(-1, *spec.shape[-2:]).transpose(-1, -2)
    real_dtype = flat.real.dtype
    out = torch.istft(flat, n_fft, hop, window=sine_window(n_fft, spec.device, real_dtype), center=True,
                      length=length)
    return out.reshape(*batch, length)


def audio_files(folder):
    """Sorted audio files under ``folder`` (recursive)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such data folder: {folder}")
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.lower().endswith(AUDIO_EXTENSIONS)]
    return sorted(found)


def power_sequences(folder, seq_len=50, silence_db=30.0):
    """Power-spectrogram training sequences ``(N, seq_len, 513)`` from every audio file in a folder.

    Each file is normalised by its peak absolute amplitude before the STFT, cut into non-overlapping
    chunks of ``seq_len`` frames; chunks whose mean power is more than ``silence_db`` below the file's
    loudest chunk (silence) are dropped.
    """
    files = audio_files(folder)
    if not files:
        raise ValueError(f"{folder}: no {'/'.join(AUDIO_EXTENSIONS)} files found")
    chunks = []
    for path in files:
        sig = load_audio(path)
        peak = np.abs(sig).max()
        if peak == 0:
            continue
        pw = stft(torch.as_tensor(sig / peak, dtype=torch.float32)).abs() ** 2
        n = pw.shape[0] // seq_len
        if n:
            c = pw[: n * seq_len].reshape(n, seq_len, -1)
            level = c.mean((1, 2))
            keep = level >= level.max() * 10 ** (-silence_db / 10)
            chunks.append(c[keep])
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise ValueError(f"{folder}: no non-silent chunk of {seq_len} frames")
    return torch.cat(chunks)
