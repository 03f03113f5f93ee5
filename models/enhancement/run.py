# SPDX-License-Identifier: Apache-2.0
"""The enhancement entry point: build the model, fit it to one noisy recording, resynthesise the speech."""

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch

from pyro_dvae import noise as noise_models
from pyro_dvae.data.audio import HOP, N_FFT, SAMPLE_RATE, istft, stft

from .config import COLLAPSE, DEFAULTS, MODES, NOISES
from .fit import eval_mode_backward, fit_svi, fit_vem
from .model import EnhancementModel, kept_energy, speech_share


# ------------------------------------------------------------------------------------------------ building
def build_model(prior, noise="nmf", mode="una", noise_checkpoint=None, noise_options=None, seed=0,
                sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop=HOP):
    """An :class:`EnhancementModel` ready for ``mode``.

    :param DVAE prior: the speech prior (spectral).
    :param str noise: one of :data:`NOISES` (with a checkpoint it must match the stored model; ``None``: take
        the checkpoint's).
    :param str mode: ``"una"`` (fresh noise model, seeded), ``"und"`` / ``"unda"`` (noise model and encoder
        from ``noise_checkpoint``, a path written by :func:`~pyro_dvae.models.enhancement.training.train_noise`).
    :param dict noise_options: options of a fresh noise model (:func:`pyro_dvae.noise.build`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if noise is not None and noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    if noise == "nmf" and mode != "una":
        raise ValueError(f"mode {mode!r} needs a noise model trained on noisy speech, but 'nmf' is fitted per "
                         "utterance (its W, H belong to one utterance): use mode 'una' with nmf, or a deep noise "
                         "model (lv, no, nolv) trained by train-noise for und / unda")
    if mode == "una":
        if noise_checkpoint is not None:
            raise ValueError("mode 'una' starts from a fresh noise model: a noise checkpoint is for 'und' / 'unda'")
        if noise is None:
            raise ValueError("mode 'una' needs the noise model's name")
        opts = dict(noise_options or {})
        if noise == "nmf":
            opts.setdefault("seed", seed)
            opts.setdefault("rank", DEFAULTS["nmf"]["rank"])
            for key in ("smooth", "learn_dictionary", "quantile"):
                opts.setdefault(key, DEFAULTS["nmf"][key])
        else:
            opts.setdefault("z_dim", prior.z_dim)
            opts.setdefault("start", DEFAULTS["deep"]["start"])
            torch.manual_seed(seed)  # the fresh network's initial weights
        return EnhancementModel(prior, noise_models.build(noise, prior.x_dim, **opts))
    if noise_checkpoint is None:
        raise ValueError(f"mode {mode!r} needs a noise model trained by train-noise (noise_checkpoint / --noise-model)")
    ckpt = noise_checkpoint
    if not isinstance(ckpt, dict):
        ckpt = noise_models.load_noise_checkpoint(ckpt, prior, sample_rate, n_fft, hop)
    if noise is not None and ckpt["noise"] != noise:
        raise ValueError(f"the noise checkpoint holds a {ckpt['noise']!r} model, not {noise!r}")
    model = EnhancementModel(prior, noise_models.from_checkpoint(ckpt))
    model.load_encoder_state(ckpt["encoder_state"])
    return model


def load_speech_prior(path, sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop=HOP):
    """Load a speech prior checkpoint, checking that it is spectral and matches the STFT front end.

    A checkpoint may carry ``sample_rate``, ``n_fft`` and ``hop`` entries (``prior.save(path, **extra)``); one
    without them is taken to use the package's front end (16 kHz, 1024, 256, what ``pyro-dvae train-prior``
    uses for audio). Another value, a Gaussian (trajectory) prior, a prior without latent variables or one of
    another number of bins than ``n_fft // 2 + 1`` is a :class:`ValueError`.
    """
    from pyro_dvae import priors as zoo

    prior = zoo.load_spectral(path, sample_rate, n_fft, hop, task="enhancement")
    if prior.z_dim < 1 or not prior.latent_sites:
        raise ValueError(f"{path}: the {prior.name} prior has no latent variables to infer")
    return prior.eval()


# ------------------------------------------------------------------------------------------------ front end
@dataclass
class EnhancementResult:
    """Output of :func:`enhance`: ``waveform`` (16 kHz, the input's length, the input's level), ``stft``
    ``(T, F)`` of the estimate, the Wiener ``mask`` ``(T, F)``, the ``result`` of the inference run (``None``
    for U-ND) and ``info`` (noise, mode, iterations, seconds, real-time factor ``rtf``)."""

    waveform: np.ndarray
    stft: torch.Tensor
    mask: torch.Tensor
    result: object = None
    info: dict = field(default_factory=dict)


def prepare_noisy(noisy, n_fft=N_FFT, hop=HOP):
    """Check and peak-normalise a noisy waveform ``(L,)``; returns ``(X (1, T, F) complex, scale)``."""
    x = torch.as_tensor(np.asarray(noisy, dtype=np.float64) if not torch.is_tensor(noisy) else noisy)
    x = x.to(torch.float64)
    if x.dim() != 1:
        raise ValueError(f"the noisy signal must be 1-D (mono), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("the noisy signal contains NaN or inf samples")
    if x.numel() < n_fft:
        raise ValueError(f"the noisy signal has {x.numel()} samples, shorter than one STFT frame ({n_fft})")
    peak = float(x.abs().max())
    if peak == 0.0:
        raise ValueError("the noisy signal is silent (all samples are zero): nothing to enhance")
    X = stft((x / peak).to(torch.float32), n_fft, hop).unsqueeze(0)
    return X, peak


def _fit(model, power, kind, mode, num_iters, lr, e_steps, vem_samples, num_samples, progress, nmf_init, gain):
    """One fit of ``model`` to ``power`` for :func:`enhance`; returns the InferenceResult (``None`` for U-ND)."""
    if kind == "nmf":
        d = DEFAULTS["nmf"]
        high = d["high_share"] is not None and speech_share(power, model.bins) >= d["high_share"]
        return fit_vem(model, power, num_iters, lr, e_steps, vem_samples, progress, nmf_init, gain, d["select"],
                       d["high_share_quantile"] if high else None, high and d["high_share_mean_level"],
                       d["gain_floor"])
    if mode in ("una", "unda") and num_iters > 0:
        return fit_svi(model, power, num_iters, lr, progress=progress, fit_gain=gain,
                       select=DEFAULTS["deep"]["unda_select" if mode == "unda" else "select"],
                       check_every=DEFAULTS["deep"]["check_every"])
    if gain:  # U-ND: one forward pass, with the closed-form gain
        model.init_gain(power, num_samples)
    return None


def enhance(noisy, prior, noise="nmf", mode="una", *, noise_checkpoint=None, num_iters=None, lr=None,
            num_samples=8, e_steps=1, vem_samples=4, noise_options=None, seed=0, n_fft=N_FFT, hop=HOP,
            progress=False, model=None, gain=False, nmf_init=None, speech_shape=None):
    """Enhance one noisy utterance.

    :param noisy: 1-D waveform at the prior's sample rate (16 kHz), any level (peak-normalised inside, the
        output is scaled back).
    :param DVAE prior: spectral speech prior.
    :param str noise: ``"nmf"``, ``"lv"``, ``"no"`` or ``"nolv"``.
    :param str mode: ``"una"``, ``"und"`` or ``"unda"`` (``nmf``: ``"una"`` only).
    :param noise_checkpoint: path of a :func:`~pyro_dvae.models.enhancement.training.train_noise` checkpoint
        (``und`` / ``unda``).
    :param int num_iters: VEM iterations (nmf) or SVI steps (U-NA / U-NDA); default :data:`DEFAULTS`.
    :param float lr: encoder (and noise network) learning rate; default :data:`DEFAULTS` (U-NDA: a fifth of U-NA's).
    :param int num_samples: posterior draws of ``z`` averaged in the Wiener filter.
    :param int e_steps: Adam steps per VEM E-step; ``vem_samples``: draws per VEM M-step.
    :param dict noise_options: options of a fresh noise model (``rank`` for nmf, default 4; network sizes).
    :param int seed: seeds Pyro / torch (posterior draws, a fresh noise network, NMF initialisation).
    :param model: an :class:`EnhancementModel` from :func:`build_model` to use instead of building one.
    :param bool gain: nmf: start the per-frame gain at its closed-form value instead of 1; deep models: fit one
        speech gain per utterance (closed form for U-ND). Off by default (measured worse on real speech).
    :param str nmf_init: ``"uniform"`` (the reference's) or ``"floor"`` (:meth:`~pyro_dvae.noise.NMFNoise.initialise`);
        default :data:`DEFAULTS`.
    :param float speech_shape: the output's speech model (:meth:`EnhancementModel.wiener_gain`): the shape of the
        Gamma scale of each bin's speech variance (heavier-tailed speech for smaller values), ``math.inf`` for the
        Gaussian speech of the fit (the Wiener gain); default :data:`DEFAULTS` (sets ``model.speech_shape``).
    :returns: :class:`EnhancementResult`. **Collapse recovery**: a fit whose Wiener estimate keeps under
        :data:`COLLAPSE` (5 %) of the input energy has failed (the noise model took the speech over, or the speech
        gain went to zero, e.g. on a narrowband input); it is run again from the other speech-gain start (``gain``
        flipped), with a warning. If that fails too the output is the input unchanged (never a near-silent file),
        with a warning (the input may be noise only). ``info["attempts"]`` lists each fit's kept energy and
        ``info["recovered"]`` is ``None``, ``"restart"`` or ``"input"``. With ``model`` given there is one attempt.

    Example::

        prior = load_speech_prior("speech.pt")
        out = enhance(noisy, prior, "nolv", "unda", noise_checkpoint="nolv.pt")
        out.waveform, out.info["rtf"]
    """
    with eval_mode_backward((model.prior if model is not None else prior).x_loc.device):
        return _enhance(noisy, prior, noise, mode, noise_checkpoint, num_iters, lr, num_samples, e_steps, vem_samples,
                        noise_options, seed, n_fft, hop, progress, model, gain, nmf_init, speech_shape)


def _enhance(noisy, prior, noise, mode, noise_checkpoint, num_iters, lr, num_samples, e_steps, vem_samples,
             noise_options, seed, n_fft, hop, progress, model, gain, nmf_init, speech_shape):
    start = time.perf_counter()
    X, peak = prepare_noisy(noisy, n_fft, hop)
    length = int(torch.as_tensor(noisy).shape[-1]) if torch.is_tensor(noisy) else len(noisy)
    given = model
    if model is None:
        model = build_model(prior, noise, mode, noise_checkpoint, noise_options, seed, n_fft=n_fft, hop=hop)
    kind = "nmf" if model.noise.name == "nmf" else "deep"
    if num_iters is None:
        num_iters = DEFAULTS[kind]["unda_num_iters" if kind == "deep" and mode == "unda" else "num_iters"]
    num_iters = int(num_iters)
    lr = DEFAULTS[kind]["unda_lr" if mode == "unda" else "lr"] if lr is None else float(lr)
    if num_iters < 0 or (kind == "nmf" and num_iters < 1):
        raise ValueError(f"num_iters must be >= {1 if kind == 'nmf' else 0} for {model.noise.name}, got {num_iters}")
    power = (X.abs() ** 2).to(model.prior.x_loc.device, model.prior.x_loc.dtype)  # CPU or CUDA alike
    nmf_init = DEFAULTS["nmf"]["init"] if nmf_init is None else nmf_init
    speech_shape = DEFAULTS[kind]["speech_shape"] if speech_shape is None else speech_shape
    speech_shape = math.inf if speech_shape is None else float(speech_shape)
    if not speech_shape > 0.0:  # NaN too
        raise ValueError(f"speech_shape must be > 0 (inf: Gaussian speech, the Wiener gain), got {speech_shape}")
    speech_shape = None if speech_shape == math.inf else speech_shape
    attempts, gain = [], bool(gain)
    # the first start, then (after a collapse) the other gain start; a caller's model allows one attempt only
    for g in ([gain, not gain] if given is None else [gain]):
        if attempts:
            model = build_model(prior, noise, mode, noise_checkpoint, noise_options, seed, n_fft=n_fft, hop=hop)
        pyro.set_rng_seed(seed)
        model.set_band(power)
        model.speech_shape = speech_shape
        result = _fit(model, power, kind, mode, num_iters, lr, e_steps, vem_samples, num_samples, progress, nmf_init,
                      g)
        mask = model.selected_mask[0] if model.selected_mask is not None else model.wiener_gain(power, num_samples)[0]
        kept = kept_energy(mask, power[0])
        attempts.append({"gain_start": "closed-form" if g else "one", "kept_energy": kept})
        if kept >= COLLAPSE:
            break
    recovered = None
    if attempts[-1]["kept_energy"] < COLLAPSE:
        recovered = "input"  # no start gave a speech estimate: the input is returned as it is
        mask = torch.ones_like(mask)
        kept = ", ".join(f"{100 * a['kept_energy']:.2g} %" for a in attempts)
        warnings.warn(f"no reliable speech estimate: every fit kept under {100 * COLLAPSE:g} % of the input energy "
                      f"({kept}); the input may be noise "
                      "only. The output is the input, unchanged", stacklevel=2)
    elif len(attempts) > 1:
        recovered = "restart"
        warnings.warn(f"the first fit collapsed (its speech estimate kept {100 * attempts[0]['kept_energy']:.2g} % of "
                      f"the input energy); restarted with the other speech-gain start, which kept "
                      f"{100 * attempts[-1]['kept_energy']:.2g} %", stacklevel=2)
    mask = mask.cpu()
    S = mask.to(X.real.dtype) * X[0]
    wave = istft(S, length, n_fft, hop).double().numpy() * peak
    seconds = time.perf_counter() - start
    info = {"noise": model.noise.name, "mode": mode, "num_iters": num_iters if result is not None else 0, "lr": lr,
            "num_samples": num_samples, "seconds": seconds, "rtf": seconds / (length / SAMPLE_RATE),
            "seconds_per_iter": result.seconds_per_iter if result is not None else None,
            "band_bins": int(model.bins.sum()) if model.bins is not None else int(power.shape[-1]),
            "attempts": attempts, "recovered": recovered, "selected_iter": model.selected_iter,
            "dictionary_quantile": model.noise.start_quantile if kind == "nmf" else None,
            "speech_shape": speech_shape}
    return EnhancementResult(wave, S.detach(), mask.detach(), result, info)
