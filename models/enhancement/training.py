# SPDX-License-Identifier: Apache-2.0
"""U-ND: training a deep noise model (and the speech encoder) once, on noisy speech only.

The loss is the enhancement model's negative ELBO (:class:`~pyro_dvae.models.enhancement.EnhancementModel`,
:class:`~pyro.infer.TraceMeanField_ELBO`) per time-frequency bin of noisy power spectrograms: the speech decoder
is frozen, the encoder (started from the speech prior's) and the noise network are trained, and no clean
reference is ever read. The checkpoint (:func:`pyro_dvae.noise.save_noise`) identifies the speech prior and the
front end it was trained for.

**References:**

[1] X. Lin, S. Leglaive, L. Girin, X. Alameda-Pineda (2023), "Unsupervised Speech Enhancement with Deep
    Dynamical Generative Speech and Noise Models", Interspeech.
"""

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from pyro.infer import TraceMeanField_ELBO

from pyro_dvae import noise as noise_models

from .config import KEPT_RATIO, NOISES, PLATES, NoiseTrainConfig
from .fit import eval_mode_backward
from .losses import kept_parts, noise_loss
from .model import EnhancementModel, check_power

__all__ = ["KEPT_RATIO", "NoiseTrainResult", "evaluate_noise", "kept_parts", "noise_loss", "train_noise"]


@dataclass
class NoiseTrainResult:
    """Output of :func:`train_noise`: the trained :class:`EnhancementModel` (best weights), the per-epoch
    ``history`` (train / validation negative ELBO per TF bin, the share of the validation energy the speech
    estimate keeps, seconds), ``best_epoch``, ``best_val`` and ``stopped_on_speech`` (training stopped because
    the noise model started to take the speech over, :data:`KEPT_RATIO`)."""

    model: EnhancementModel
    history: list = field(default_factory=list)
    best_epoch: int = 0
    best_val: float = math.inf
    stopped_on_speech: bool = False


def train_noise(prior, noise, train, val, config=None, *, out=None, engine=None, device=None, progress=False,
                resume=None, resume_to=None, **overrides):
    """U-ND: train a deep noise model and the speech encoder on noisy speech only (the decoder stays frozen), on
    the training engine (:mod:`pyro_dvae.engine`).

    Minimises :func:`noise_loss` (the unsupervised negative ELBO of the noisy power; no clean reference is
    ever used) with Adam over shuffled mini-batches, keeps the weights of the best validation epoch and stops
    after ``patience`` epochs without improvement, or as soon as the speech estimate on the validation chunks
    keeps less than :data:`KEPT_RATIO` of the energy share it kept after the first epoch (the noise model has
    started to explain the speech).

    :param DVAE prior: the speech prior the noise model is trained for (not modified).
    :param str noise: ``"lv"``, ``"no"`` or ``"nolv"``.
    :param train: noisy power chunks ``(N, T, F)``: a tensor (e.g.
        :func:`~pyro_dvae.data.audio.power_chunks` of a folder of noisy speech) or a
        :class:`~pyro_dvae.engine.ChunkStore`.
    :param val: held-out noisy power chunks ``(M, T', F)`` (the same kinds).
    :param NoiseTrainConfig config: the settings (default ``NoiseTrainConfig()``); ``overrides``: fields of it to
        replace (``train_noise(prior, "lv", train, val, epochs=10, lr=3e-3)``).
    :param str out: checkpoint path (:func:`~pyro_dvae.noise.save_noise`), written after every improving epoch.
    :param engine: :class:`~pyro_dvae.engine.Engine` (accelerator, devices, strategy, ...).
    :param device: ``"cpu"`` / ``"cuda"`` when no ``engine`` is given (default: the prior's device).
    :param bool progress: show a progress bar.
    :param str resume: a Lightning checkpoint of an earlier run (``resume_to``) to continue from.
    :param str resume_to: where to keep Lightning's checkpoint for resuming (default: ``out + ".resume.ckpt"``).
    :returns: :class:`NoiseTrainResult`.
    """
    from pyro_dvae.engine import Engine, SequenceData, Sequences, fit

    from .task import NoiseTask  # the engine task loads Lightning: imported when a training starts

    cfg = dataclasses.replace(config or NoiseTrainConfig(), **overrides)
    if noise not in NOISES or noise == "nmf":
        raise ValueError(f"train_noise trains a deep noise model (lv, no, nolv), got {noise!r}"
                         + ("; nmf is fitted per utterance, nothing to train" if noise == "nmf" else ""))
    for name, data in (("train", train), ("validation", val)):
        if not hasattr(data, "shape") or len(data.shape) != 3 or len(data) == 0:
            raise ValueError(f"{name} data must be a non-empty (N, T, F) tensor of noisy power")
        check_power(data if torch.is_tensor(data) else data[torch.arange(min(len(data), 8))][0], prior.x_dim)
    if engine is None:
        device = torch.device(device) if device is not None else prior.x_loc.device
        engine = Engine(accelerator="gpu" if device.type == "cuda" else "cpu", threads=torch.get_num_threads())
    opts = {"z_dim": prior.z_dim, **(cfg.noise_options or {})}
    torch.manual_seed(cfg.seed)
    wrap = lambda x: Sequences(x.cpu()) if torch.is_tensor(x) else x  # noqa: E731
    data = SequenceData(wrap(train), wrap(val), cfg.batch_size, seed=cfg.seed, num_workers=engine.num_workers)
    if resume_to is None and out is not None:
        resume_to = f"{out}.resume.ckpt"
    # a prior on CUDA is differentiated in eval mode here too (the encoder's parameter names, DDP's probe)
    with eval_mode_backward(prior.x_loc.device):
        model = EnhancementModel(prior, noise_models.build(noise, prior.x_dim, **opts))
        task = NoiseTask(model, prior, cfg.lr, cfg.clip_norm, engine.threads, cfg.seed,
                         (cfg.sample_rate, cfg.n_fft, cfg.hop))
        res = fit(task, data, cfg.epochs, patience=cfg.patience, engine=engine, out=out, resume_to=resume_to,
                  resume=resume, progress=progress, log_extra={"noise": noise})
    model.cpu()
    return NoiseTrainResult(model, history=res.history, best_epoch=res.best_epoch, best_val=res.best_val,
                            stopped_on_speech=res.stopped_by_task)


@torch.no_grad()
def evaluate_noise(model, data, batch_size, elbo=None, seed=1234):
    """Validation loss of :func:`train_noise` (:func:`noise_loss` per TF bin, fixed noise, batches of
    ``batch_size``): what the training's ``best_val`` is measured with."""
    elbo = elbo or TraceMeanField_ELBO(max_plate_nesting=PLATES)
    total = 0.0
    with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(data), batch_size):
            xb = data[i:i + batch_size]
            total += float(noise_loss(model, xb, elbo)) * len(xb)
    return total / len(data)
