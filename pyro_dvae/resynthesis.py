# SPDX-License-Identifier: Apache-2.0
"""Speech analysis-resynthesis with a spectral prior: how well a DVAE encodes and regenerates speech.

Each utterance is peak-normalised and cut into consecutive segments of ``segment`` STFT frames (the priors'
training chunk length; the last segment is shorter); each segment goes through the encoder (``z`` at the
posterior mean, static latents such as LigHT-DVAE's ``w`` at theirs), then the decoder, whose variance ``v``
replaces the power while the clean phase is kept (``s_hat = sqrt(v) exp(j angle(s))``), and the inverse STFT
rebuilds the waveform. The decoder's past is its own generated past (``past="gen"``: each ``v_t`` fed back as
the past power, the paper's main rows) or the ground truth (``"gt"``: teacher forcing); priors whose decoder
does not read the past give the same output either way.

Scores against the peak-normalised input: RMSE after the least-squares gain, SI-SDR, PESQ (wide and narrow
band) and ESTOI (:func:`resynthesis_scores`).

Files (what ``pyro-dvae eval-prior`` runs): :func:`resynthesize_files` scores every file of a list and optionally
writes each resynthesis like its input (:func:`write_resynthesis`); :func:`mean_scores` averages the rows;
:func:`resynthesize_folder` does all of it for a folder and returns the command's summary.

**References:**

[1] X. Lin, X. Bie, S. Leglaive, L. Girin, X. Alameda-Pineda (2023), "Speech Modeling with a Hierarchical
    Transformer Dynamical VAE", ICASSP.
[2] L. Girin, S. Leglaive, X. Bie, J. Diard, T. Hueber, X. Alameda-Pineda (2021), "Dynamical Variational
    Autoencoders: A Comprehensive Review", Foundations and Trends in Machine Learning 15(1-2).
"""

import os
import warnings

import numpy as np
import torch

from pyro_dvae.data.audio import HOP, N_FFT, SAMPLE_RATE, istft, stft
from pyro_dvae.metrics.audio import rmse, speech_scores
from pyro_dvae.priors import SequentialNormal

PASTS = ("gen", "gt")
#: the scores of :func:`resynthesis_scores`, in table order
METRICS = ("rmse", "si_sdr", "pesq_wb", "pesq_nb", "estoi")
#: Segment length (frames) of :func:`resynthesize`: the 50-frame chunks ``pyro-dvae train-prior`` trains on.
SEGMENT = 50


def _segments(P, segment):
    """``P (T, F)`` -> list of ``(B, n, F)`` batches: the full segments, then the shorter remainder."""
    T = P.shape[0]
    if not segment or segment >= T:
        return [P.unsqueeze(0)]
    full = T // segment
    out = [P[: full * segment].reshape(full, segment, P.shape[-1])]
    if T > full * segment:
        out.append(P[full * segment:].unsqueeze(0))
    return out


@torch.no_grad()
def decoded_power(prior, power, past="gen"):
    """The decoder's variance ``v`` ``(B, T, F)`` for power spectrograms ``(B, T, F)`` (module docstring)."""
    if past not in PASTS:
        raise ValueError(f"past must be one of {PASTS}, got {past!r}")
    q = prior.encode(power)
    z = q.noiseless() if isinstance(q, SequentialNormal) else q.mean
    if past == "gt" or not prior.autoregressive:
        return prior.decode(z, power)[1]
    return prior.decode_stepwise(z, lambda t, mean, var: mean, x=power)[1]


def resynthesize(prior, wave, past="gen", segment=SEGMENT, n_fft=N_FFT, hop=HOP):
    """Analysis-resynthesis of one waveform ``(L,)`` at the prior's rate; returns ``(estimate, reference)``,
    both peak-normalised float64 arrays of length ``L`` (the reference is the input scaled to peak 1).

    :param DVAE prior: a spectral prior (``emission="spectral"``, ``n_fft // 2 + 1`` bins).
    :param str past: ``"gen"`` or ``"gt"`` (module docstring).
    :param int segment: frames per segment (0: the whole utterance at once).
    """
    if prior.emission != "spectral":
        raise ValueError(f"analysis-resynthesis needs a spectral prior, got a {prior.emission!r}-emission one")
    if prior.x_dim != n_fft // 2 + 1:
        raise ValueError(f"the prior models {prior.x_dim} bins, an STFT of n_fft={n_fft} has {n_fft // 2 + 1}")
    if isinstance(segment, bool) or not isinstance(segment, int) or segment < 0:
        raise ValueError(f"segment must be a nonnegative int (frames; 0: whole utterance), got {segment!r}")
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim != 1 or len(x) < n_fft:
        raise ValueError(f"need a mono signal of at least {n_fft} samples, got shape {x.shape}")
    peak = float(np.abs(x).max())
    if not np.isfinite(peak) or peak == 0.0:
        raise ValueError("the signal is silent or not finite")
    ref = x / peak
    X = stft(torch.as_tensor(ref, dtype=torch.float32), n_fft, hop)
    dtype = prior.x_loc.dtype
    P = (X.abs() ** 2).to(dtype)
    v = torch.cat([decoded_power(prior, seg.to(prior.x_loc.device), past).reshape(-1, P.shape[-1]).cpu()
                   for seg in _segments(P, segment)])
    S = v.clamp_min(0).sqrt().to(X.real.dtype) * torch.exp(1j * X.angle())
    return istft(S, len(ref), n_fft, hop).double().numpy(), ref


def resynthesis_scores(est, ref, sr=SAMPLE_RATE):
    """``{"rmse", "si_sdr", "pesq_wb", "pesq_nb", "estoi"}``: RMSE after the least-squares gain
    ``a = <est, ref> / ||est||^2`` and :func:`~pyro_dvae.metrics.speech_scores` (``None`` where undefined)."""
    est, ref = np.asarray(est, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    energy = float(est @ est)
    gain = float(est @ ref) / energy if energy > 0 else 0.0
    return {"rmse": rmse(gain * est, ref), **speech_scores(est, ref, sr)}


def write_resynthesis(path, est, rate, length):
    """Write ``est`` (at the prior's 16 kHz) like the input: resampled to ``rate`` and cut or padded to ``length``
    samples (:func:`pyro_dvae.data.noisy.write_like`); scaled to just below full scale where it would clip (the
    scores do not depend on the level). Creates the folder. Returns whether it was scaled."""
    from pyro_dvae.data.noisy import write_like

    peak = float(np.abs(est).max(initial=0.0))
    scaled = peak > 0.999
    if scaled:
        est = est * (0.999 / peak)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_like(path, est, rate, length)
    return scaled


def resynthesize_files(prior, files, *, root, past="gen", segment=SEGMENT, out_dir=None, report=None):
    """Analysis-resynthesis of every audio file of ``files``, scored (:func:`resynthesis_scores`).

    A file that is silent or shorter than one STFT frame is skipped with a warning.

    :param DVAE prior: a spectral prior.
    :param list files: audio file paths (wav / flac / ogg).
    :param str root: the folder the file names of the rows are relative to.
    :param str past: ``"gen"`` or ``"gt"`` (module docstring); ``segment``: frames per segment (0: whole files).
    :param str out_dir: write each resynthesis here under its path relative to ``root`` (same name, sample rate
        and length as the input; :func:`write_resynthesis`).
    :param callable report: ``report(index, count, row)`` called after each file.
    :returns: ``(rows, skipped)``: one dict per scored file (``file``, the scores, and with ``out_dir`` ``out``
        and ``rescaled``) and the skipped paths.
    """
    from pyro_dvae.data.audio import load_audio

    rows, skipped = [], []
    for k, path in enumerate(files):
        x = load_audio(path)
        if len(x) < N_FFT or not np.abs(x).max() > 0:
            skipped.append(path)
            warnings.warn(f"{path}: silent or shorter than one STFT frame, skipped", stacklevel=2)
            continue
        est, ref = resynthesize(prior, x, past, segment)
        row = {"file": os.path.relpath(path, root), **resynthesis_scores(est, ref, SAMPLE_RATE)}
        if out_dir:
            import soundfile as sf

            info = sf.info(path)
            out = os.path.join(out_dir, row["file"])
            row["out"], row["rescaled"] = out, write_resynthesis(out, est * np.abs(x).max(), info.samplerate,
                                                                 info.frames)
        rows.append(row)
        if report is not None:
            report(k, len(files), row)
    return rows, skipped


def mean_scores(rows):
    """``{metric: mean over the rows}`` of :data:`METRICS` (undefined values left out; ``None`` where none is
    defined)."""
    mean = {}
    for m in METRICS:
        values = [r[m] for r in rows if r[m] is not None]
        mean[m] = float(np.mean(values)) if values else None
    return mean


def resynthesize_folder(prior, data, *, past="gen", segment=SEGMENT, out_dir=None, limit=None, seed=0, log=None):
    """Analysis-resynthesis of every audio file of a folder (searched recursively), scored: ``pyro-dvae
    eval-prior``.

    The messages name the command's options (``--data``). Silent files and files shorter than one STFT frame are
    skipped with a warning; a folder without any other is an error.

    :param str prior: a spectral prior checkpoint or a shipped name (:func:`pyro_dvae.pretrained.resolve`).
    :param str data: the folder of audio files (wav / flac / ogg).
    :param str past: ``"gen"`` or ``"gt"`` (module docstring).
    :param int segment: frames per segment (0: whole files).
    :param str out_dir: write each resynthesis here under its path relative to ``data`` (:func:`resynthesize_files`).
    :param int limit: only the first ``limit`` files (sorted by path; ``None``: all).
    :param int seed: seeds torch before the prior is loaded.
    :param log: called with one line of text per file and one with the means (``None``: silent).
    :returns: the summary dict: ``prior`` (as given), ``model``, ``parameters``, ``past``, ``segment``, ``files``
        (scored), ``skipped`` (paths), ``mean`` (:func:`mean_scores`) and ``per_file`` (the rows).
    """
    from pyro_dvae import pretrained
    from pyro_dvae.data.audio import audio_files
    from pyro_dvae.priors import load_spectral

    say = log if log is not None else (lambda *a, **k: None)
    torch.manual_seed(seed)
    model = load_spectral(pretrained.resolve(prior), task="eval-prior").eval()
    if not os.path.isdir(data):
        raise FileNotFoundError(f"--data {data}: no such folder")
    files = audio_files(data)[:limit]
    if not files:
        raise ValueError(f"--data {data}: no audio files (wav / flac / ogg)")
    rows, skipped = resynthesize_files(
        model, files, root=data, past=past, segment=segment, out_dir=out_dir,
        report=lambda k, n, row: say(f"[{k + 1}/{n}] {row['file']}: SI-SDR {row['si_sdr']:.2f} dB"))
    if not rows:
        raise ValueError(f"--data {data}: every audio file is silent or too short")
    mean = mean_scores(rows)
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    params = sum(p.numel() for p in model.parameters())
    say(f"{model.name} ({params} parameters), past {past}, {len(rows)} files: "
        + ", ".join(f"{m} {fmt(mean[m])}" for m in METRICS))
    return {"prior": prior, "model": model.name, "parameters": params, "past": past, "segment": segment,
            "files": len(rows), "skipped": skipped, "mean": mean, "per_file": rows}
