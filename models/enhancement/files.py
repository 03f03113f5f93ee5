# SPDX-License-Identifier: Apache-2.0
"""Speech enhancement on files: what ``pyro-dvae enhance`` and ``pyro-dvae train-noise`` run.

- :func:`enhance_file`: read a noisy recording, enhance it (:func:`~pyro_dvae.models.enhancement.enhance`), write
  the estimate at the input's sample rate and length, score it against a clean reference; returns the run's
  summary (the command's ``--out-json``).
- :func:`train_noise_folder`: train a deep noise model (U-ND,
  :func:`~pyro_dvae.models.enhancement.train_noise`) on a folder of noisy speech; returns the run's summary.

Their errors name the command-line options too, as the commands report them unchanged.
"""

import dataclasses
import os
import shutil
import warnings

import numpy as np
import torch

from .config import DEFAULT_PRIOR, EnhanceConfig, NoiseTrainConfig
from .run import enhance, load_speech_prior
from .training import train_noise


def _speech_prior(prior):
    """``(name, prior)``: a loaded prior as it is, else a checkpoint path or shipped name loaded."""
    from pyro_dvae import pretrained

    if isinstance(prior, (str, os.PathLike)):
        return str(prior), load_speech_prior(pretrained.resolve(str(prior)))
    return getattr(prior, "name", type(prior).__name__), prior


def _make_parent(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _read_reference(ref, noisy):
    """The clean reference ``ref`` at 16 kHz, checked against the noisy input (length; a silent one warns)."""
    from pyro_dvae.data.audio import SAMPLE_RATE, load_audio

    clean = load_audio(ref)
    if len(clean) != len(noisy):
        raise ValueError(f"--ref {ref}: {len(clean)} samples at {SAMPLE_RATE} Hz, the noisy input has {len(noisy)}")
    if not np.ptp(clean) > 0:
        warnings.warn(f"--ref {ref} is silent: every score against it is undefined (null in --out-json)", stacklevel=3)
    return clean


def check_file_config(config):
    """The checks :func:`enhance_file` makes before reading anything: the noise model can be built
    (:meth:`EnhanceConfig.check_noise_source`), and mode ``"und"`` is given no iterations."""
    config.check_noise_source()
    if config.mode == "und" and config.num_iters is not None:
        raise ValueError("mode 'und' is one forward pass of the trained noise model: leave num_iters unset, or use "
                         "mode 'unda' to fit it further (on the command line: --mode und takes no --iters: drop "
                         "--iters, or use --mode unda)")


def enhance_file(path, out, ref=None, *, prior=None, config=None, **overrides):
    """Enhance the noisy recording ``path`` and write the estimate to ``out``: ``pyro-dvae enhance``.

    :param str path: the noisy speech (wav / flac / ogg, any sample rate: resampled to the model's 16 kHz inside;
        format, NaN, clipping (a warning), silence and length are checked).
    :param str out: the enhanced speech (.wav / .flac / .ogg), at the input's sample rate and length; missing
        folders are created.
    :param str ref: a clean reference of the same length: the summary then holds SI-SDR, PESQ (wb / nb) and ESTOI
        of the output and of the input (``None`` where undefined or where the scoring package is absent).
    :param prior: the spectral speech prior: a checkpoint path, a shipped name or a loaded prior; default
        :data:`DEFAULT_PRIOR`. A U-ND noise model must have been trained for it.
    :param EnhanceConfig config: the settings (default ``EnhanceConfig()``); ``overrides``: fields of it to
        replace. Checked (:func:`check_file_config`) before anything is read.
    :returns: the summary: ``out``, ``prior``, ``noise``, ``mode``, ``iters``, the input's ``sample_rate`` and
        ``samples``, ``seconds``, ``rtf``, ``band_bins``, ``attempts``, ``recovered``, ``selected_iter`` (see
        :func:`~pyro_dvae.models.enhancement.enhance`), ``dictionary_quantile``, ``speech_shape``, ``threads``,
        and with ``ref`` the scores ``output`` and ``input``.
    """
    from pyro_dvae.data.audio import SAMPLE_RATE
    from pyro_dvae.data.noisy import read_noisy, write_like
    from pyro_dvae.metrics import speech_scores
    from pyro_dvae.noise import PriorMismatchError

    config = (config or EnhanceConfig()).replace(**overrides)
    check_file_config(config)
    noisy, rate, length = read_noisy(path)
    clean = _read_reference(ref, noisy) if ref is not None else None
    name, speech_prior = _speech_prior(DEFAULT_PRIOR if prior is None else prior)
    try:
        result = enhance(noisy, speech_prior, config)
    except PriorMismatchError as e:
        if prior is not None:
            raise
        raise ValueError(f"{e}; without --prior, enhance uses the shipped {name}: pass --prior (prior=) with the "
                         "speech prior the noise model was trained for") from None
    _make_parent(out)
    write_like(out, result.waveform, rate, length)
    info = result.info
    summary = {"out": out, "prior": name, "noise": info["noise"], "mode": config.mode, "iters": info["num_iters"],
               "sample_rate": rate, "samples": length, "seconds": info["seconds"], "rtf": info["rtf"],
               "band_bins": info["band_bins"], "attempts": info["attempts"], "recovered": info["recovered"],
               "selected_iter": info["selected_iter"], "dictionary_quantile": info["dictionary_quantile"],
               "speech_shape": info["speech_shape"], "threads": torch.get_num_threads()}
    if clean is not None:
        summary["output"] = {**speech_scores(result.waveform, clean, SAMPLE_RATE), "rtf": info["rtf"]}
        summary["input"] = {**speech_scores(noisy, clean, SAMPLE_RATE), "rtf": None}
    return summary


def train_noise_folder(prior, noise, noisy_dir, out, config=None, *, chunk_cache=None, engine=None, resume=None,
                       progress=False, log=None, **overrides):
    """Train a deep noise model (U-ND) for ``prior`` on the noisy speech of ``noisy_dir`` (no clean reference)
    and write its checkpoint to ``out``: ``pyro-dvae train-noise``.

    :param prior: the spectral speech prior the noise model is for: a checkpoint path, a shipped name or a
        loaded prior.
    :param str noise: ``"lv"``, ``"no"`` or ``"nolv"``.
    :param str noisy_dir: the folder of noisy speech (wav / flac / ogg): cut into chunks of ``config.seq_len``
        frames, ``config.val_fraction`` of them held out for validation (seeded by ``config.seed``).
    :param str out: the noise checkpoint (:func:`~pyro_dvae.noise.save_noise`); missing folders are created.
    :param NoiseTrainConfig config: the settings (default ``NoiseTrainConfig()``); ``overrides``: fields of it.
    :param str chunk_cache: a folder to keep the chunks in (memory-mapped, reused by a later run with the same
        files and settings); default: a folder beside ``out``, removed at the end.
    :param engine: :class:`~pyro_dvae.engine.Engine` (default: one CPU process).
    :param str resume: a Lightning checkpoint written beside ``out`` (``OUT.resume.ckpt``) to continue from.
    :param bool progress: show a progress bar.
    :param log: called with one line of text before the training starts (rank 0 only; ``None``: silent).
    :returns: the summary: ``noise``, ``prior``, ``out``, ``best_val_loss``, ``best_epoch``, ``epochs_run``,
        ``stopped_on_speech`` and the per-epoch ``history``.
    """
    from pyro_dvae.engine import ChunkStore
    from pyro_dvae.engine.ranks import is_rank_zero

    cfg = dataclasses.replace(config or NoiseTrainConfig(), **overrides)
    torch.manual_seed(cfg.seed)
    name, speech_prior = _speech_prior(prior)
    store = ChunkStore.for_run(noisy_dir, chunk_cache or f"{out}.chunks", option="--noisy-dir", seq_len=cfg.seq_len)
    try:
        train, val = store.split(cfg.val_fraction, cfg.seed)
        if log is not None and is_rank_zero():
            log(f"{noise} noise model for {name}: {len(train)} train / {len(val)} validation noisy chunks of "
                f"{cfg.seq_len} frames (noisy speech only, no clean reference)")
        _make_parent(out)
        res = train_noise(speech_prior, noise, train, val, cfg, out=out, engine=engine, progress=progress,
                          resume=resume)
    finally:
        if chunk_cache is None and is_rank_zero():
            shutil.rmtree(store.folder, ignore_errors=True)
    return {"noise": noise, "prior": name, "out": out, "best_val_loss": res.best_val, "best_epoch": res.best_epoch,
            "epochs_run": len(res.history), "stopped_on_speech": res.stopped_on_speech, "history": res.history}
