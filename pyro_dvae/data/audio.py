# SPDX-License-Identifier: Apache-2.0
"""Audio front end: reading, mono/resampling to 16 kHz, STFT with a sine window and its inverse.

Analysis: 1024-sample sine window ``w[n] = sin(pi (n + 1/2) / 1024)``, hop 256 (75 % overlap), no zero
padding, centred frames; a 16 kHz signal gives 513 frequency bins. The inverse uses the same window
(weighted overlap-add), which reconstructs perfectly for this window/hop pair.

Frame count: with centred frames a signal of ``L`` samples gives ``1 + L // hop`` frames (:func:`num_frames`),
so ``(T - 1) * hop`` samples give exactly ``T`` frames (:func:`num_samples`).

Bad input: multi-channel files are averaged to mono with a warning; a missing file is a
:class:`FileNotFoundError` naming it; unsupported formats, a folder, a file that is not audio (soundfile's reason
is given with the file name), empty files, NaN / inf samples and signals shorter than half a frame are
:class:`ValueError`. Clipping is only *reported*: a file whose peak reaches full scale on
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
    :func:`scipy.signal.resample_poly`. A missing file is a :class:`FileNotFoundError`; a folder, unsupported
    formats, a file that is not audio, empty files and NaN samples are :class:`ValueError`; each message is one line
    naming the file.
    """
    try:
        import soundfile as sf
    except ImportError:  # pragma: no cover - soundfile is in the audio extra
        raise ImportError("reading audio needs soundfile: pip install 'pyro-dvae[audio]'") from None
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such audio file")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder, expected an audio file")
    if not str(path).lower().endswith(AUDIO_EXTENSIONS):
        raise ValueError(f"{path}: unsupported audio format (use {', '.join(AUDIO_EXTENSIONS)})")
    try:
        data, sr = sf.read(path, dtype="float64", always_2d=True)
    except Exception as e:  # soundfile's message repeats the path: keep its reason ("Format not recognised.")
        reason = " ".join(str(getattr(e, "error_string", None) or e).split()).rstrip(".")
        raise ValueError(f"{path}: cannot read audio, not a valid {os.path.splitext(str(path))[1].lower()} file "
                         f"({reason})") from None
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


def live_bins(power, floor_db=60.0):
    """The frequency bins that hold signal: a boolean ``(F,)`` mask, ``False`` on the empty band above the
    cut-off of a band-limited input (e.g. 8 kHz telephone audio played at 16 kHz has nothing above 4 kHz).

    ``power`` ``(..., T, F)``. The cut-off is the lowest bin above which every bin's mean power (over time and
    leading dims) is more than ``floor_db`` below the loudest bin's; every bin below it is live, so only an
    empty *top* band is ever removed, never a quiet band inside the spectrum. A full-band input gives all
    ``True``.
    """
    profile = power.reshape(-1, *power.shape[-2:]).mean((0, 1)) if power.dim() > 1 else power
    loud = profile > profile.max() * 10 ** (-floor_db / 10)
    top = int(torch.nonzero(loud).max()) + 1 if bool(loud.any()) else profile.shape[-1]
    mask = torch.zeros(profile.shape[-1], dtype=torch.bool, device=power.device)
    mask[:top] = True
    return mask


def audio_files(folder):
    """Sorted audio files under ``folder`` (recursive)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such data folder: {folder}")
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.lower().endswith(AUDIO_EXTENSIONS)]
    return sorted(found)


def pitch_shift(x, semitones):
    """``x`` resampled so that it plays ``semitones`` higher (and shorter) at the same sample rate (a tape-speed
    shift: timbre moves with the pitch; for augmenting instrument notes). ``0`` returns ``x`` unchanged."""
    if semitones == 0:
        return x
    from scipy.signal import resample_poly

    return resample_poly(np.asarray(x, dtype=np.float64), 1000, int(round(1000 * 2 ** (semitones / 12))))


def power_chunks(signals, seq_len=50, silence_db=30.0, hop=None):
    """Power-spectrogram sequences ``(N, seq_len, 513)`` from signals already at 16 kHz (1-D arrays).

    Each signal is normalised by its peak absolute amplitude before the STFT and cut into chunks of ``seq_len``
    frames starting every ``hop`` frames (default ``seq_len``: no overlap); chunks whose mean power is more than
    ``silence_db`` below the signal's loudest chunk (silence) are dropped. Silent signals and signals shorter
    than one chunk give nothing.
    """
    hop = seq_len if hop is None else int(hop)
    if int(seq_len) < 1 or hop < 1:
        raise ValueError(f"need seq_len >= 1 and hop >= 1, got {seq_len} and {hop}")
    chunks = []
    for sig in signals:
        sig = np.asarray(sig, dtype=np.float64)
        peak = np.abs(sig).max(initial=0.0)
        if peak == 0 or len(sig) < N_FFT // 2 + 1:
            continue
        pw = stft(torch.as_tensor(sig / peak, dtype=torch.float32)).abs() ** 2
        if pw.shape[0] < seq_len:
            continue
        c = pw.unfold(0, seq_len, hop).movedim(-1, 1)  # (n, seq_len, F)
        level = c.mean((1, 2))
        keep = level >= level.max() * 10 ** (-silence_db / 10)
        chunks.append(c[keep].contiguous())
    if not chunks or sum(len(c) for c in chunks) == 0:
        return torch.zeros(0, seq_len, N_FFT // 2 + 1)
    return torch.cat(chunks)


def power_sequences(folder, seq_len=50, silence_db=30.0, hop=None, pitch_shifts=(0.0,)):
    """Power-spectrogram training sequences ``(N, seq_len, 513)`` from every audio file in a folder
    (:func:`power_chunks` of the files read with :func:`load_audio`); with ``pitch_shifts`` (semitones), every
    file is also added shifted by each value (:func:`pitch_shift`; ``0`` is the file itself)."""
    files = audio_files(folder)
    if not files:
        raise ValueError(f"{folder}: no {'/'.join(AUDIO_EXTENSIONS)} files found")
    shifts = [float(k) for k in pitch_shifts] or [0.0]
    signals = (pitch_shift(x, k) for x in (load_audio(path) for path in files) for k in shifts)
    seqs = power_chunks(signals, seq_len, silence_db, hop)
    if len(seqs) == 0:
        raise ValueError(f"{folder}: no non-silent chunk of {seq_len} frames")
    return seqs
