# SPDX-License-Identifier: Apache-2.0
"""Audio front end: reading, mono/resampling to 16 kHz, STFT with a sine window and its inverse.

Analysis: 1024-sample sine window ``w[n] = sin(pi (n + 1/2) / 1024)``, hop 256 (75 % overlap), no zero
padding, centred frames; a 16 kHz signal gives 513 frequency bins. The inverse uses the same window
(weighted overlap-add), which reconstructs perfectly for this window/hop pair.

Frame count: with centred frames a signal of ``L`` samples gives ``1 + L // hop`` frames (:func:`num_frames`),
so ``(T - 1) * hop`` samples give exactly ``T`` frames (:func:`num_samples`).

Bad input: multi-channel files are averaged to mono with a warning; unsupported formats, unreadable files
(the soundfile error is wrapped with the file name), empty files, NaN / inf samples and signals shorter than
half a frame are :class:`ValueError`. Clipping is only *reported*: a file whose peak reaches full scale on
many samples, or exceeds it (float files), triggers a warning and is returned unchanged (no de-clipping).
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
CLIP_LEVEL = 0.999  # |x| at or above this fraction of full scale counts as a clipped sample
CLIP_FRACTION = 1e-3  # warn when more than this fraction of the samples is clipped


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
    _warn_if_clipped(data, path)
    if sr != sample_rate:
        from scipy.signal import resample_poly

        g = math.gcd(int(sr), int(sample_rate))
        data = resample_poly(data, sample_rate // g, int(sr) // g)
    return data


def _warn_if_clipped(data, name):
    """Warn when ``data`` looks clipped: more than :data:`CLIP_FRACTION` of the samples at or above
    :data:`CLIP_LEVEL` of full scale (1.0), or any sample beyond full scale (possible in float files)."""
    mag = np.abs(data)
    peak = float(mag.max())
    frac = float((mag >= CLIP_LEVEL).mean())
    if peak > 1.0 or frac > CLIP_FRACTION:
        warnings.warn(f"{name}: looks clipped (peak {peak:.4f} of full scale, {100 * frac:.2f} % of samples at "
                      f">= {CLIP_LEVEL}); kept as is", stacklevel=3)


def num_frames(length, hop=HOP):
    """Number of STFT frames :func:`stft` gives for ``length`` samples (centred frames: ``1 + length // hop``)."""
    return 1 + int(length) // int(hop)


def num_samples(frames, hop=HOP):
    """The shortest signal length giving exactly ``frames`` STFT frames: ``(frames - 1) * hop``."""
    if int(frames) < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    return (int(frames) - 1) * int(hop)


def normalise(x, peak=1.0):
    """Scale a signal so that its peak absolute value is ``peak``; returns ``(x / scale, scale)``.

    Undo it on an output with :func:`denormalise` (``y * scale``), e.g. after enhancing or separating
    the normalised mixture. Works on numpy arrays and torch tensors. A silent (all-zero) or non-finite
    signal is a :class:`ValueError`.
    """
    is_tensor = isinstance(x, torch.Tensor)
    mag = float((x.abs().max() if x.numel() else 0.0) if is_tensor else np.abs(np.asarray(x)).max(initial=0.0))
    if not math.isfinite(mag):
        raise ValueError("cannot normalise a signal with NaN or inf samples")
    if mag == 0.0:
        raise ValueError("cannot normalise a silent (all-zero or empty) signal")
    scale = mag / float(peak)
    return x / scale, scale


def denormalise(x, scale):
    """Inverse of :func:`normalise`: ``x * scale``."""
    return x * scale


def stft(signal, n_fft=N_FFT, hop=HOP):
    """Complex STFT ``(*batch, frames, n_fft // 2 + 1)`` of a real signal ``(*batch, samples)``.

    ``frames = 1 + samples // hop`` (:func:`num_frames`). Signals shorter than half a frame
    (``n_fft // 2 + 1`` samples, which the centred reflect padding needs) and NaN / inf samples are errors.
    """
    signal = torch.as_tensor(signal)
    if not torch.isfinite(signal).all():
        raise ValueError("signal contains NaN or inf samples")
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


def power_chunks(signals, seq_len=50, silence_db=30.0):
    """Power-spectrogram sequences ``(N, seq_len, 513)`` from signals already at 16 kHz (1-D arrays).

    Each signal is normalised by its peak absolute amplitude before the STFT and cut into non-overlapping
    chunks of ``seq_len`` frames; chunks whose mean power is more than ``silence_db`` below the signal's
    loudest chunk (silence) are dropped. Silent signals and signals shorter than one chunk give nothing.
    """
    chunks = []
    for sig in signals:
        sig = np.asarray(sig, dtype=np.float64)
        peak = np.abs(sig).max(initial=0.0)
        if peak == 0 or len(sig) < N_FFT // 2 + 1:
            continue
        pw = stft(torch.as_tensor(sig / peak, dtype=torch.float32)).abs() ** 2
        n = pw.shape[0] // seq_len
        if n:
            c = pw[: n * seq_len].reshape(n, seq_len, -1)
            level = c.mean((1, 2))
            keep = level >= level.max() * 10 ** (-silence_db / 10)
            chunks.append(c[keep])
    if not chunks or sum(len(c) for c in chunks) == 0:
        return torch.zeros(0, seq_len, N_FFT // 2 + 1)
    return torch.cat(chunks)


def power_sequences(folder, seq_len=50, silence_db=30.0):
    """Power-spectrogram training sequences ``(N, seq_len, 513)`` from every audio file in a folder
    (:func:`power_chunks` of the files read with :func:`load_audio`)."""
    files = audio_files(folder)
    if not files:
        raise ValueError(f"{folder}: no {'/'.join(AUDIO_EXTENSIONS)} files found")
    seqs = power_chunks((load_audio(path) for path in files), seq_len, silence_db)
    if len(seqs) == 0:
        raise ValueError(f"{folder}: no non-silent chunk of {seq_len} frames")
    return seqs
