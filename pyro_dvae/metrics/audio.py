# SPDX-License-Identifier: Apache-2.0
"""Audio quality metrics for source separation and speech enhancement: RMSE, SI-SDR, PESQ, ESTOI.

Every function takes an estimate and a reference as 1-D numpy arrays or torch tensors of the same length
(sample-aligned, same sample rate). Lengths that differ, other shapes, empty signals and NaN / inf samples
are :class:`ValueError`. PESQ needs the ``pesq`` package and ESTOI ``pystoi`` (both in the ``audio`` extra);
they are imported only when used.

References:
    - J. Le Roux, S. Wisdom, H. Erdogan, J. R. Hershey, "SDR - half-baked or well done?", ICASSP 2019.
    - ITU-T Rec. P.862 (PESQ, narrow band) and P.862.2 (wide-band extension), 2001 / 2007.
    - J. Jensen, C. H. Taal, "An algorithm for predicting the intelligibility of speech masked by modulated
      noise maskers", IEEE/ACM TASLP 24(11), 2016 (ESTOI).
"""

import importlib.util
import math
import warnings

import numpy as np

PESQ_RATES = {"wb": (16000,), "nb": (8000, 16000)}
_INSTALL = 'pip install "pyro-dvae[audio]"'


def _signal(x, name):
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D signal, got shape {tuple(x.shape)}")
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf samples")
    return x


def _pair(est, ref):
    est, ref = _signal(est, "est"), _signal(ref, "ref")
    if est.shape != ref.shape:
        raise ValueError(f"est and ref lengths differ: est has {est.size} samples, ref has {ref.size}")
    return est, ref


def _rate(sr):
    if int(sr) != sr or sr <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {sr}")
    return int(sr)


def _resample(x, sr, target):
    if sr == target:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(sr, target)
    return resample_poly(x, target // g, sr // g)


def rmse(est, ref):
    """Root-mean-square error ``sqrt(mean((est - ref)^2))`` (in the signals' own units)."""
    est, ref = _pair(est, ref)
    return float(np.sqrt(np.mean((est - ref) ** 2)))


def si_sdr(est, ref):
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019).

    Both signals are made zero-mean; the reference is scaled by ``a = <est, ref> / ||ref||^2`` and
    ``SI-SDR = 10 log10(||a ref||^2 / ||est - a ref||^2)``. It is unchanged when ``est`` or ``ref`` is scaled
    or offset. A perfect estimate gives ``+inf``; a silent (constant) estimate or one orthogonal to the
    reference gives ``-inf``. A
    zero-energy (silent or constant) reference is a :class:`ValueError`.

    References:
        - J. Le Roux, S. Wisdom, H. Erdogan, J. R. Hershey, "SDR - half-baked or well done?", ICASSP 2019.
    """
    est, ref = _pair(est, ref)
    est = est - est.mean()
    ref = ref - ref.mean()
    ref_energy = float(ref @ ref)
    if ref_energy <= np.finfo(np.float64).tiny:
        raise ValueError("SI-SDR is undefined for a zero-energy (silent or constant) reference")
    if float(est @ est) == 0.0:
        return -math.inf
    target = (est @ ref) / ref_energy * ref
    noise = est - target
    with np.errstate(divide="ignore"):
        return float(10 * np.log10(float(target @ target)) - 10 * np.log10(float(noise @ noise)))


def pesq_score(est, ref, sr=16000, mode="wb"):
    """PESQ (ITU-T P.862 / P.862.2) of ``est`` against the clean ``ref`` with the ``pesq`` package.

    ``mode="wb"`` (wide band, P.862.2) runs at 16 kHz; ``mode="nb"`` (narrow band, P.862) at 8 kHz when
    ``sr`` is 8 kHz and at 16 kHz otherwise (``pesq`` filters 16 kHz input to the narrow band itself). Other
    rates are resampled with :func:`scipy.signal.resample_poly` first. All-zero signals and failures of the
    PESQ algorithm (``pesq.PesqError``: no utterance found, shorter than 1/4 s, ...) are :class:`ValueError`
    naming the cause.

    References:
        - ITU-T Rec. P.862 (2001) and P.862.2 (2007).
    """
    if mode not in PESQ_RATES:
        raise ValueError(f"mode must be 'wb' or 'nb', got {mode!r}")
    try:
        import pesq as _pesq
    except ImportError:
        raise ImportError(f"PESQ needs the 'pesq' package: {_INSTALL}") from None
    est, ref = _pair(est, ref)
    sr = _rate(sr)
    target = sr if sr in PESQ_RATES[mode] else 16000
    est, ref = _resample(est, sr, target), _resample(ref, sr, target)
    if not np.abs(ref).max() > 0 or not np.abs(est).max() > 0:
        raise ValueError("PESQ is undefined for an all-zero (silent) signal")
    try:
        return float(_pesq.pesq(target, ref, est, mode))
    except _pesq.PesqError as e:
        raise ValueError(f"PESQ failed ({type(e).__name__}): {e}") from None


def estoi(est, ref, sr):
    """Extended short-time objective intelligibility (Jensen & Taal 2016) with ``pystoi``, in [-1, 1].

    ``pystoi`` removes silent frames and needs at least 30 analysis frames (about 0.4 s of active speech at
    its internal 10 kHz rate); when fewer remain it would return 1e-5 with a warning, which is raised here
    as a :class:`ValueError` instead.

    References:
        - J. Jensen, C. H. Taal, "An algorithm for predicting the intelligibility of speech masked by
          modulated noise maskers", IEEE/ACM TASLP 24(11), 2016.
    """
    try:
        from pystoi import stoi
    except ImportError:
        raise ImportError(f"ESTOI needs the 'pystoi' package: {_INSTALL}") from None
    est, ref = _pair(est, ref)
    sr = _rate(sr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = stoi(ref, est, sr, extended=True)
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            raise ValueError("ESTOI needs at least 30 non-silent frames (~0.4 s of active speech in ref)")
    return float(value)


def separation_scores(est, ref, sr, pesq=True):
    """All four scores of one estimated source: ``{"si_sdr", "rmse", "pesq_wb", "estoi"}``.

    ``pesq=False`` skips PESQ (slow, and it needs the ``pesq`` package): ``"pesq_wb"`` is then ``None``.
    With ``pesq=True`` a missing package is an :class:`ImportError`, not a silent ``None``.
    """
    return {
        "si_sdr": si_sdr(est, ref),
        "rmse": rmse(est, ref),
        "pesq_wb": pesq_score(est, ref, sr, "wb") if pesq else None,
        "estoi": estoi(est, ref, sr),
    }


def _silent(ref):
    """True for a reference with no energy once its mean is removed (every score against it is undefined)."""
    ref = np.asarray(ref, dtype=np.float64)
    return bool(np.all(np.isfinite(ref))) and float(np.sum((ref - ref.mean()) ** 2)) <= np.finfo(np.float64).tiny


def score_sources(estimates, refs, names, sr=16000, pesq=None):
    """``{name: {"si_sdr", "rmse", "pesq_wb", "estoi"}}`` of estimated signals ``(N, L)`` against references
    ``(N, L)`` (a table row per source, as in separation papers).

    ``pesq=None`` computes PESQ-wb when the ``pesq`` package is installed and gives ``None`` otherwise. PESQ
    and ESTOI are ``None`` where they are undefined (PESQ finding no utterance, e.g. on some music; ESTOI with
    under 30 active frames), and so is every score but RMSE against a silent reference; SI-SDR and RMSE errors
    (lengths, NaN) are raised.
    """
    if pesq is None:
        pesq = importlib.util.find_spec("pesq") is not None

    def defined(fn, *a):
        try:
            return fn(*a)
        except ValueError:
            return None

    out = {}
    for name, est, ref in zip(names, estimates, refs):
        if _silent(ref):
            out[name] = {"si_sdr": None, "rmse": rmse(est, ref), "pesq_wb": None, "estoi": None}
            continue
        out[name] = {"si_sdr": si_sdr(est, ref), "rmse": rmse(est, ref),
                     "pesq_wb": defined(pesq_score, est, ref, sr, "wb") if pesq else None,
                     "estoi": defined(estoi, est, ref, sr)}
    return out


def speech_scores(est, ref, sr=16000):
    """``{"si_sdr", "pesq_wb", "pesq_nb", "estoi"}`` of an enhanced (or noisy) signal against the clean one.

    PESQ and ESTOI are ``None`` where they are undefined for the signal or their package is absent; any
    non-finite score is ``None`` too, and every score against a silent (zero-energy) reference; SI-SDR errors
    (lengths, NaN) are raised.
    """
    if _silent(ref):
        _pair(est, ref)  # the length and NaN checks still apply
        return {"si_sdr": None, "pesq_wb": None, "pesq_nb": None, "estoi": None}
    row = {"si_sdr": si_sdr(est, ref)}
    for key, fn in (("pesq_wb", lambda: pesq_score(est, ref, sr, "wb")),
                    ("pesq_nb", lambda: pesq_score(est, ref, sr, "nb")),
                    ("estoi", lambda: estoi(est, ref, sr))):
        try:
            row[key] = fn()
        except (ValueError, ImportError):
            row[key] = None
    return {k: (None if v is not None and not math.isfinite(v) else v) for k, v in row.items()}
