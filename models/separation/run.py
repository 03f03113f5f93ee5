# SPDX-License-Identifier: Apache-2.0
"""Running MixDVAE separation and its baselines (:func:`run_separation`), described in
:mod:`pyro_dvae.models.separation`."""

import time
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from pyro import poutine

from pyro_dvae.data.audio import HOP, N_FFT, SAMPLE_RATE, istft, stft
from pyro_dvae.handlers import frozen
from pyro_dvae.likelihoods import ComplexGaussianBins, abs2
from pyro_dvae.masks import nmf_masks, oracle_masks

from .config import NMFOptions, apply_overrides
from .guide import SeparationGuide, check_mixture
from .model import SeparationModel, check_priors

# ------------------------------------------------------------------------------------------------- running


@dataclass
class SeparationResult:
    """The output of :func:`run_separation`.

    :ivar list names: source names, in the order of the source dim.
    :ivar torch.Tensor stft: estimated source STFTs ``(B, N, T, F)`` (``(N, T, F)`` for an unbatched input),
        in the units of the input.
    :ivar numpy.ndarray waveforms: ``(B, N, L)`` / ``(N, L)`` estimated source signals (waveform input only).
    :ivar result: the :class:`~pyro_dvae.inference.InferenceResult` (``None`` for mask baselines).
    :ivar dict info: method, algorithm, final residual scale and gains, seconds.
    """

    names: list
    stft: torch.Tensor
    waveforms: object = None
    result: object = None
    info: dict = field(default_factory=dict)


def _as_batch(x, what, dims):
    """``x`` as a tensor with a leading batch dim; ``dims`` is the unbatched rank."""
    x = torch.as_tensor(x)
    if x.dim() not in (dims, dims + 1):
        raise ValueError(f"{what} must have {dims} or {dims + 1} dims, got shape {tuple(x.shape)}")
    return (x.unsqueeze(0), False) if x.dim() == dims else (x, True)


def prepare_mixture(mix, n_fft=N_FFT, hop=HOP):
    """A waveform ``(L,)`` / ``(B, L)`` (peak-normalised per mixture here, as the priors' training files
    were) or a complex STFT ``(T, F)`` / ``(B, T, F)`` (used as given) -> ``(stft (B, T, F), length or None,
    scale (B,), batched)``. Silent, too short (under one frame of ``n_fft`` samples) or non-finite
    input is a :class:`ValueError`."""
    if torch.is_tensor(mix) and mix.is_complex():
        X, batched = _as_batch(mix, "a mixture STFT", 2)
        return check_mixture(X), None, torch.ones(X.shape[0]), batched
    x, batched = _as_batch(torch.as_tensor(mix, dtype=torch.float32), "a mixture waveform", 1)
    if x.shape[-1] < n_fft:
        raise ValueError(f"the mixture has {x.shape[-1]} samples, shorter than one STFT frame ({n_fft})")
    if not torch.isfinite(x).all():
        raise ValueError("the mixture contains NaN or inf samples")
    scale = x.abs().amax(-1)
    if not (scale > 0).all():
        raise ValueError("the mixture is silent (all samples are zero)")
    return stft(x / scale[:, None], n_fft, hop), x.shape[-1], scale, batched


def _prepare_refs(refs, X, length, scale, num_sources, n_fft, hop):
    if refs is None:
        return None
    refs = torch.as_tensor(np.asarray(refs) if not torch.is_tensor(refs) else refs)
    if refs.is_complex():
        R, _ = _as_batch(refs, "reference STFTs", 3)
    else:
        R, _ = _as_batch(refs.to(torch.float32), "reference waveforms", 2)
        if length is None or R.shape[-1] != length:
            raise ValueError(f"reference waveforms need a waveform mixture of the same length ({length}), got "
                             f"{R.shape[-1]} samples")
        if not torch.isfinite(R).all():
            raise ValueError("the references contain NaN or inf samples")
        R = stft(R / scale[:, None, None], n_fft, hop)
    if R.shape[0] != X.shape[0] or R.shape[1] != num_sources or R.shape[2:] != X.shape[1:]:
        raise ValueError(f"references must be {num_sources} sources matching the mixture, got shape "
                         f"{tuple(R.shape)} for a mixture STFT {tuple(X.shape)}")
    return R.to(X.dtype)


def run_separation(mix, priors=None, *, names=None, refs=None, nmf=None, config=None, **overrides):
    """Separate the sources of one or a batch of mixtures.

    :param mix: waveform ``(L,)`` / ``(B, L)`` (peak-normalised here, outputs scaled back) or complex STFT
        ``(T, F)`` / ``(B, T, F)`` of a peak-normalised mixture (:func:`prepare_mixture`).
    :param list priors: one spectral prior per source (``mixdvae``); also gives the number of sources. Their weights
        are frozen for the run and unchanged after it, unless ``fine_tune_prior=True`` (:class:`SeparationConfig`).
    :param list names: source names (default: ``source0``, ...; NMF dictionaries are looked up by name).
    :param refs: reference sources (waveforms ``([B,] N, L)`` or STFTs ``([B,] N, T, F)``), for the oracle masks.
    :param nmf: an :class:`~pyro_dvae.nmf.NMFSeparator` with one dictionary per source name, for the NMF
        methods and ``init="nmf"``.
    :param SeparationConfig config: the settings (default: ``SeparationConfig()``); the docstrings of
        :class:`~pyro_dvae.models.separation.SeparationConfig`, :class:`~pyro_dvae.models.separation.VEMOptions`
        and :class:`~pyro_dvae.models.separation.NMFOptions` describe each one and its default.
    :param overrides: settings applied to ``config`` (:func:`~pyro_dvae.models.separation.config.apply_overrides`):
        a ``SeparationConfig`` field by name (``method``, ``algo``, ``num_iters``, ``lr``, ``output``, ``chunk``,
        ``seed``, ``n_fft``, ``hop``, ``progress``, ``vem``; not ``nmf``, which here is the separator: the NMF
        group goes in ``config``), a ``VEMOptions`` field by name (``init``, ``mode``, ``family``, ``noise``,
        ``noise_ratio``, ``learn_noise``, ``learn_gain``, ``learn_weights``, ``sample_z``, ``parallel_z``,
        ``average``), an ``NMFOptions`` field as ``nmf_iters``, ``nmf_alpha``, ``nmf_beta``. An unknown name is a
        :class:`TypeError`, a value out of range a :class:`ValueError`.
    :returns: :class:`SeparationResult`.
    """
    if isinstance(nmf, NMFOptions):
        raise TypeError("run_separation() nmf= is the NMFSeparator holding the dictionaries; NMFOptions go in "
                        "SeparationConfig(nmf=...) or as nmf_iters= / nmf_alpha= / nmf_beta=")
    cfg = apply_overrides(config, **overrides)
    priors = None if priors is None else list(priors)
    with frozen(*(priors or ()), enabled=not cfg.fine_tune_prior):  # the priors passed in keep their weights
        return _run_separation(mix, priors, names, refs, nmf, cfg)


def _run_separation(mix, priors, names, refs, nmf, cfg):
    """:func:`run_separation` under the resolved config ``cfg``."""
    from pyro_dvae import inference

    vem, method, init = cfg.vem, cfg.method, cfg.vem.init
    if method == "mixdvae" or priors is not None:
        priors, names = check_priors(priors, names)
    elif names is None:
        raise ValueError(f"method {method!r} without priors needs names=[...] (one per source)")
    names = list(names)
    X, length, scale, batched = prepare_mixture(mix, cfg.n_fft, cfg.hop)
    R = _prepare_refs(refs, X, length, scale, len(names), cfg.n_fft, cfg.hop)
    if method.startswith("oracle") and R is None:
        raise ValueError(f"method {method!r} needs the reference sources (refs=...)")
    if (method.endswith("nmf") or (isinstance(init, str) and init == "nmf")) and nmf is None:
        raise ValueError("NMF (method or init) needs nmf=NMFSeparator(...) fitted on each source's training audio")
    pyro.set_rng_seed(cfg.seed)
    start = time.perf_counter()
    result, info = None, {"method": method}
    if method == "mixture":
        S = X.unsqueeze(1).expand(-1, len(names), -1, -1)
    elif method.startswith("oracle"):
        S = oracle_masks(R, method[len("oracle_"):]) * X.unsqueeze(1)
    elif method.endswith("nmf"):
        kind = "is" if method == "is_nmf" else "temporal"
        S = nmf_masks(X, nmf, names, kind, cfg.nmf.iters, cfg.nmf.alpha, cfg.nmf.beta) * X.unsqueeze(1)
    else:
        param = next(priors[0].parameters())  # the priors' device and precision (CPU or CUDA alike)
        X = check_mixture(X.to(param.device, torch.complex128 if param.dtype == torch.float64 else torch.complex64),
                          priors[0].x_dim)
        if isinstance(init, str) and init == "nmf":
            init = nmf_masks(X.cpu(), nmf, names, "is", cfg.nmf.iters)
        if torch.is_tensor(init):
            init = init.to(X.device, X.real.dtype)
        frames = X.shape[1]
        chunk = cfg.chunk
        if chunk is not None and frames > chunk:
            X = _split(X, chunk)
            init = _split(init.transpose(1, 2), chunk).transpose(1, 2) if torch.is_tensor(init) else init
        model = SeparationModel(priors, names, ComplexGaussianBins(vem.noise_ratio, kind=vem.noise),
                                learn_noise=vem.learn_noise, learn_gain=vem.learn_gain,
                                learn_weights=vem.learn_weights).to(X.device)
        guide = SeparationGuide(model, mode=vem.mode, family=vem.family, sample_z=vem.sample_z,
                                parallel_z=vem.parallel_z).initialise(X, init)
        if cfg.algo == "vem":
            acc = []

            def collect(i, _):
                if i >= cfg.num_iters - vem.average:
                    acc.append(guide.source_moments() + (guide["w"].eta,))

            with torch.no_grad():
                result = inference.run("vem", model, guide, X, num_iters=cfg.num_iters, progress=cfg.progress,
                                       callback=collect if vem.average > 1 else None)
            moments = tuple(sum(m) / len(acc) for m in zip(*acc)) if acc else None
            S = guide.estimate(X, cfg.output, moments)
        else:
            S, result = _run_svi(model, guide, X, cfg)
        info.update(algo=cfg.algo, noise_scale=model.likelihood.scale.tolist(), gain=model.gain.tolist())
        if S.shape[2] != frames:  # chunked: (B * K, N, chunk, F) -> (B, N, T, F)
            S = S.unflatten(0, (scale.shape[0], -1)).movedim(1, 2).flatten(2, 3)[:, :, :frames]
    info["seconds"] = time.perf_counter() - start
    S = S.detach().cpu() * scale.to(S.real.dtype).view(-1, 1, 1, 1)
    waves = None
    if length is not None:
        waves = istft(S, length, cfg.n_fft, cfg.hop).numpy()
    if not batched:
        S, waves = S[0], (None if waves is None else waves[0])
    return SeparationResult(names, S, waves, result, info)


def _split(X, size):
    """``(B, T, ...)`` -> ``(B * K, size, ...)``, ``K = ceil(T / size)``; the last chunk is completed by
    mirroring the frames before the end (``T > size``)."""
    pad = -X.shape[1] % size
    if pad:
        X = torch.cat([X, X[:, -pad - 1:-1].flip(1)], 1)
    return X.unflatten(1, (-1, size)).flatten(0, 1)


def _run_svi(model, guide, X, cfg):
    from pyro.infer.autoguide import AutoNormal, init_to_value

    from pyro_dvae import inference

    values = {"s": torch.view_as_real(guide.source_moments()[0]).contiguous()}
    for n, lat in zip(model.names, guide["z"].latents):
        values.update({f"{k}_{n}": v for k, v in lat.items() if v.shape[-1] > 0})
    blocked = poutine.block(model.model, hide_types=["param"])  # the priors stay fixed
    if cfg.guide is None:
        auto = AutoNormal(poutine.block(model.model, hide=["w"]), init_scale=1e-2,
                          init_loc_fn=init_to_value(values=values))
    else:  # a named autoguide or a factory starts where the default does; a callable guide is used as it is
        auto = inference.svi.build_guide(cfg.guide, model.model, ["w"], init_values=values, init_scale=1e-2,
                                         model_args=(X,))
    pyro.clear_param_store()
    result = inference.run(cfg.algo, blocked, auto, X, num_steps=cfg.num_iters, lr=cfg.lr, progress=cfg.progress)
    with torch.no_grad():
        S = torch.view_as_complex(inference.svi.guide_estimate(auto, "s", X).contiguous())
    if cfg.output == "wiener":
        P = abs2(S)
        S = P / P.sum(1, keepdim=True).clamp_min(1e-30) * X.unsqueeze(1)
    elif cfg.output == "mask":
        raise ValueError("output='mask' needs the closed-form q(w) of algo='vem'")
    return S, result


# ------------------------------------------------------------------------------------------------- files
def load_separation_prior(path, sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop=HOP):
    """Load a spectral prior checkpoint for separation, checking that it matches the front end.

    Checkpoints may carry ``sample_rate``, ``n_fft`` and ``hop`` entries (``prior.save(path, **extra)``);
    a checkpoint without them is taken to use the package's front end (16 kHz, 1024, 256: what
    ``pyro-dvae train-prior`` uses for audio). Another value, a Gaussian (trajectory) prior or a prior of
    another number of bins than ``n_fft // 2 + 1`` is a :class:`ValueError`.
    """
    from pyro_dvae import priors as zoo

    return zoo.load_spectral(path, sample_rate, n_fft, hop, task="separation")

