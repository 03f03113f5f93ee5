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

**References:**

[1] X. Lin, X. Bie, S. Leglaive, L. Girin, X. Alameda-Pineda (2023), "Speech Modeling with a Hierarchical
    Transformer Dynamical VAE", ICASSP.
[2] L. Girin, S. Leglaive, X. Bie, J. Diard, T. Hueber, X. Alameda-Pineda (2021), "Dynamical Variational
    Autoencoders: A Comprehensive Review", Foundations and Trends in Machine Learning 15(1-2).
"""

import numpy as np
import torch

from pyro_dvae.data.audio import HOP, N_FFT, SAMPLE_RATE, istft, stft
from pyro_dvae.metrics.audio import rmse, speech_scores
from pyro_dvae.priors import SequentialNormal

PASTS = ("gen", "gt")
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
