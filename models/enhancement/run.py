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
from pyro_dvae.handlers import frozen

from .config import COLLAPSE, DeepOptions, EnhanceConfig, NMFOptions, VEMFitOptions, check_noise_source
from .fit import eval_mode_backward, fit_svi, fit_vem
from .model import EnhancementModel, kept_energy, speech_share


# ------------------------------------------------------------------------------------------------ building
def build_model(prior, noise="nmf", mode="una", noise_checkpoint=None, noise_options=None, seed=0,
                sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop=HOP, *, nmf=None, deep=None):
    """An :class:`EnhancementModel` ready for ``mode``.

    :param DVAE prior: the speech prior (spectral).
    :param str noise: one of :data:`NOISES` or a name added by :func:`pyro_dvae.noise.register` (with a
        checkpoint it must match the stored model; ``None``: take the checkpoint's).
    :param str mode: ``"una"`` (fresh noise model, seeded), ``"und"`` / ``"unda"`` (noise model and encoder
        from ``noise_checkpoint``, a path written by :func:`~pyro_dvae.models.enhancement.training.train_noise`).
    :param dict noise_options: options of a fresh noise model (:func:`pyro_dvae.noise.build`), over the defaults
        of ``nmf`` / ``deep``.
    :param ~pyro_dvae.models.enhancement.config.NMFOptions nmf: a fresh NMF model's rank, smoothing and dictionary
        start (default ``NMFOptions()``).
    :param DeepOptions deep: a fresh deep model's start (default ``DeepOptions()``).
    """
    check_noise_source(noise, mode, noise_checkpoint)
    if mode == "una":
        opts = dict(noise_options or {})
        if noise == "nmf":
            nmf = nmf or NMFOptions()
            opts.setdefault("seed", seed)
            opts.setdefault("rank", nmf.rank)
            for key in ("smooth", "learn_dictionary", "quantile"):
                opts.setdefault(key, getattr(nmf, key))
        else:
            if issubclass(noise_models.get(noise), noise_models.DeepNoise):  # a registered model takes its own options
                opts.setdefault("z_dim", prior.z_dim)
                opts.setdefault("start", (deep or DeepOptions()).start)
            torch.manual_seed(seed)  # the fresh network's initial weights
        return EnhancementModel(prior, noise_models.build(noise, prior.x_dim, **opts))
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


def _fit(model, power, config, gain):
    """One fit of ``model`` to ``power`` for :func:`enhance` under ``config`` (an :class:`EnhanceConfig` with
    ``num_iters`` and ``lr`` set: :meth:`EnhanceConfig.resolved`), from the speech-gain start ``gain`` (see
    :attr:`EnhanceConfig.gain`); returns the InferenceResult (``None`` for U-ND)."""
    if model.noise.name == "nmf":
        d = config.nmf
        high = d.high_share is not None and speech_share(power, model.bins) >= d.high_share
        options = VEMFitOptions(num_iters=config.num_iters, lr=config.lr, e_steps=config.e_steps,
                                num_samples=config.vem_samples, nmf_init=d.init, gain_init=gain, select=d.select,
                                quantile=d.high_share_quantile if high else None,
                                mean_level=high and d.high_share_mean_level, gain_floor=d.gain_floor)
        return fit_vem(model, power, options, progress=config.progress)
    if config.mode in ("una", "unda") and config.num_iters > 0:
        d = config.deep
        return fit_svi(model, power, config.num_iters, config.lr, progress=config.progress, fit_gain=gain,
                       select=d.unda_select if config.mode == "unda" else d.select, check_every=d.check_every,
                       guide=config.guide)
    if gain:  # U-ND: one forward pass, with the closed-form gain
        model.init_gain(power, config.num_samples)
    return None


def _build(prior, config):
    """:func:`build_model` for ``config`` (an :class:`EnhanceConfig`)."""
    return build_model(prior, config.noise, config.mode, config.noise_checkpoint, config.noise_options, config.seed,
                       n_fft=config.n_fft, hop=config.hop, nmf=config.nmf, deep=config.deep)


def enhance(noisy, prior, config=None, mode=None, *, model=None, **overrides):
    """Enhance one noisy utterance.

    :param noisy: 1-D waveform at the prior's sample rate (16 kHz), any level (peak-normalised inside, the
        output is scaled back).
    :param DVAE prior: spectral speech prior. Its weights are frozen for the run and unchanged after it, unless
        ``fine_tune_prior=True`` (:class:`EnhanceConfig`); the encoder is fine-tuned on the model's own copy.
    :param config: the settings, an :class:`EnhanceConfig` (default ``EnhanceConfig()``: ``no``, ``una``, the
        dev-chosen settings), or the noise model's name in the short form ``enhance(noisy, prior, "nolv",
        "unda", noise_checkpoint=...)``.
    :param str mode: ``"una"``, ``"und"`` or ``"unda"`` in that short form (the same as ``mode=...``).
    :param model: an :class:`EnhancementModel` from :func:`build_model` to use instead of building one (one
        attempt; the config's ``noise`` is the model's unless given).
    :param overrides: fields of :class:`EnhanceConfig` to replace (:meth:`EnhanceConfig.replace`), e.g.
        ``num_iters=10``, ``speech_shape=math.inf``, ``noise_checkpoint="nolv.pt"``, ``nmf={"quantile": 0.2}``.
    :returns: :class:`EnhancementResult`. **Collapse recovery**: a fit whose Wiener estimate keeps under
        :data:`COLLAPSE` (5 %) of the input energy has failed (the noise model took the speech over, or the speech
        gain went to zero, e.g. on a narrowband input); it is run again from the other speech-gain start (``gain``
        flipped), with a warning. If that fails too the output is the input unchanged (never a near-silent file),
        with a warning (the input may be noise only). ``info["attempts"]`` lists each fit's kept energy and
        ``info["recovered"]`` is ``None``, ``"restart"`` or ``"input"``. With ``model`` given there is one attempt.

    Example::

        prior = load_speech_prior("speech.pt")
        out = enhance(noisy, prior, EnhanceConfig(noise="nolv", mode="unda", noise_checkpoint="nolv.pt"))
        out = enhance(noisy, prior, "nolv", "unda", noise_checkpoint="nolv.pt")  # the same
        out.waveform, out.info["rtf"]
    """
    if isinstance(config, str):  # the short form: the noise model's name
        if "noise" in overrides:
            raise TypeError("enhance() got the noise model twice (positionally and as noise=)")
        config, overrides = None, {"noise": config, **overrides}
    if mode is not None:
        overrides["mode"] = mode
    if model is not None and config is None and "noise" not in overrides:
        overrides["noise"] = model.noise.name
    config = (config or EnhanceConfig()).replace(**overrides)
    with eval_mode_backward((model.prior if model is not None else prior).x_loc.device), \
            frozen(prior, enabled=not config.fine_tune_prior):  # the prior passed in keeps its weights
        return _enhance(noisy, prior, config, model)


def _enhance(noisy, prior, config, model):
    start = time.perf_counter()
    X, peak = prepare_noisy(noisy, config.n_fft, config.hop)
    length = int(torch.as_tensor(noisy).shape[-1]) if torch.is_tensor(noisy) else len(noisy)
    given = model
    if model is None:
        model = _build(prior, config)
    kind = "nmf" if model.noise.name == "nmf" else "deep"
    run = config.resolved(model.noise.name)
    power = (X.abs() ** 2).to(model.prior.x_loc.device, model.prior.x_loc.dtype)  # CPU or CUDA alike
    speech_shape = None if run.speech_shape == math.inf else run.speech_shape
    attempts = []
    # the first start, then (after a collapse) the other gain start; a caller's model allows one attempt only
    for g in ([run.gain, not run.gain] if given is None else [run.gain]):
        if attempts:
            model = _build(prior, config)
        pyro.set_rng_seed(run.seed)
        model.set_band(power)
        model.speech_shape = speech_shape
        result = _fit(model, power, run, g)
        mask = model.selected_mask[0] if model.selected_mask is not None else model.wiener_gain(power,
                                                                                                run.num_samples)[0]
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
    wave = istft(S, length, config.n_fft, config.hop).double().numpy() * peak
    seconds = time.perf_counter() - start
    info = {"noise": model.noise.name, "mode": run.mode, "num_iters": run.num_iters if result is not None else 0,
            "lr": run.lr, "num_samples": run.num_samples, "seconds": seconds, "rtf": seconds / (length / SAMPLE_RATE),
            "seconds_per_iter": result.seconds_per_iter if result is not None else None,
            "band_bins": int(model.bins.sum()) if model.bins is not None else int(power.shape[-1]),
            "attempts": attempts, "recovered": recovered, "selected_iter": model.selected_iter,
            "dictionary_quantile": model.noise.start_quantile if kind == "nmf" else None,
            "speech_shape": speech_shape}
    return EnhancementResult(wave, S.detach(), mask.detach(), result, info)
