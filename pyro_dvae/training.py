# SPDX-License-Identifier: Apache-2.0
"""SVI pre-training of a DVAE prior, on the training engine (:mod:`pyro_dvae.engine`, PyTorch Lightning).

The loss is the negative ELBO of :meth:`DVAE.model` / :meth:`DVAE.guide` under
:class:`~pyro.infer.TraceMeanField_ELBO` (per-step analytic KL, see
:mod:`pyro_dvae.priors.distributions`), divided by the number of valid time steps (:func:`pyro_dvae.elbo.elbo_loss`,
re-exported here). Settings: :class:`TrainConfig` (the schedules and the optimiser) and :class:`TrainFiles` (what a
run writes and resumes from); model sizes and per-data defaults of ``pyro-dvae train-prior``:
:mod:`pyro_dvae.presets`. Schedules:

- **Normalisation**: a prior that still has the identity normalisation gets its input / output
  standardisation from the training data first (:meth:`~pyro_dvae.priors.base.DVAE.fit_normalisation`).
- **KL warm-up**: the latent sites alone are scaled by ``beta * min(1, (epoch - 1) / warmup_epochs)``
  (:func:`pyro_dvae.handlers.scale_sites`; the observation term keeps weight 1).
- **Scheduled sampling** (autoregressive priors): the probability of feeding the decoder its own
  prediction instead of the true past rises linearly from 0 at ``ss_start`` to ``ss_max`` at
  ``ss_end`` (epochs), as in MixDVAE's pre-training. ``ss_mode="parallel"`` feeds teacher-forced one-step
  predictions [2]; ``"sequential"`` runs the decoder step by step on the inputs it chose [1], so that at
  ``ss_max = 1`` it trains on its own free-running past, the past it reads in resynthesis and generation
  (slower: one decoder step per frame). ``val_ss_prob > 0`` scores the validation chunks the same way
  (fixed noise seed), so that early stopping and the kept weights follow the free-running decoder.
- **Schedules scale with the run**: left unset, warm-up lasts the first 20 % of ``epochs``, scheduled
  sampling starts when it ends and reaches ``ss_max`` at 80 %, so a short run completes both (100 epochs:
  20 / 20 / 80). Explicit values that cannot complete within ``epochs`` give a warning (a run meant to be
  resumed with more epochs).
- **Gain augmentation** (spectral priors): each training sequence's power is multiplied by
  ``10 ** (g / 10)``, ``g ~ U(gain_db)``, drawn anew at every step, so the prior does not tie its latents
  to the level of the training files.
- **Early stopping** on the validation loss (full ELBO, teacher forcing unless ``val_ss_prob``, fixed noise
  seed), counted only once both schedules are complete; the best weights are what the checkpoint holds.
- **Non-finite losses or gradients** skip the step and halve the learning rate; a checkpoint never
  holds a non-finite weight.
- **Checkpoints**: the prior's own checkpoint (best weights + config + the training log, ``priors.load`` /
  ``torch.load(weights_only=True)``, written atomically by rank 0 after every epoch) for use, and Lightning's
  checkpoint (``resume_to``: last weights, optimizer, schedules, bookkeeping) to resume from.
- **Scale**: :class:`~pyro_dvae.engine.Engine` runs the same code on one CPU process or with DDP over several
  processes, GPUs or nodes; audio folders can be streamed from a memory-mapped chunk store
  (:class:`~pyro_dvae.engine.ChunkStore`).

**References:**

[1] S. Bengio, O. Vinyals, N. Jaitly, N. Shazeer (2015), "Scheduled Sampling for Sequence Prediction
    with Recurrent Neural Networks", NeurIPS.

[2] D. Duckworth, A. Neelakantan, B. Goodrich, L. Kaiser, S. Bengio (2019), "Parallel Scheduled
    Sampling", arXiv:1906.04331.

[3] C. K. Sønderby et al. (2016), "Ladder Variational Autoencoders" (KL warm-up), NeurIPS.
"""

import math
import warnings
from dataclasses import asdict, dataclass, field, fields, replace

import torch

from .elbo import elbo_loss

#: the forms of scheduled sampling (:meth:`pyro_dvae.priors.base.DVAE._scheduled_inputs`)
SS_MODES = ("parallel", "sequential")

__all__ = ["NORMALISATION_CHUNKS", "SS_MODES", "TrainConfig", "TrainFiles", "TrainResult", "elbo_loss", "evaluate",
           "train_prior"]


@dataclass
class TrainConfig:
    """Training settings (defaults follow the MixDVAE / DVAE pre-training recipes)."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    beta: float = 1.0
    warmup_epochs: int = None  # None: 20 % of epochs
    ss_start: int = None  # None: the end of the warm-up
    ss_end: int = None  # None: 80 % of epochs
    ss_max: float = 1.0
    patience: int = 50
    clip_norm: float = 10.0
    seed: int = 0
    max_lr_halvings: int = 10
    gain_db: tuple = (0.0, 0.0)
    ss_mode: str = "parallel"
    val_ss_prob: float = 0.0

    def __post_init__(self):
        if self.ss_mode not in SS_MODES:
            raise ValueError(f"ss_mode must be one of {SS_MODES}, got {self.ss_mode!r}")
        if not 0 <= self.val_ss_prob <= 1:
            raise ValueError(f"val_ss_prob must lie in [0, 1], got {self.val_ss_prob}")
        for key in ("epochs", "batch_size", "patience"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0 or not self.beta >= 0 or not 0 <= self.ss_max <= 1:
            raise ValueError("need lr > 0, beta >= 0 and 0 <= ss_max <= 1")
        if self.warmup_epochs is None:
            self.warmup_epochs = min(math.ceil(0.2 * self.epochs), self.epochs - 1)
        if self.ss_start is None:
            self.ss_start = self.warmup_epochs
        if self.ss_end is None:
            self.ss_end = min(max(self.ss_start, math.ceil(0.8 * self.epochs)), self.epochs)
        if self.warmup_epochs < 0 or self.ss_end < self.ss_start:
            raise ValueError("need warmup_epochs >= 0 and ss_end >= ss_start")
        if self.warmup_epochs >= self.epochs:
            warnings.warn(f"the KL warm-up ({self.warmup_epochs} epochs) does not end within {self.epochs} epochs: "
                          "the KL weight never reaches beta in this run (resume with more epochs to finish it)",
                          stacklevel=3)
        if self.ss_end > self.epochs:
            warnings.warn(f"scheduled sampling ends at epoch {self.ss_end}, after the last epoch {self.epochs} "
                          "(resume with more epochs to finish it)", stacklevel=3)
        self.gain_db = tuple(float(g) for g in self.gain_db)
        if len(self.gain_db) != 2 or not self.gain_db[0] <= self.gain_db[1]:
            raise ValueError(f"gain_db must be (low, high) with low <= high, got {self.gain_db}")

    def kl_scale(self, epoch):
        if self.warmup_epochs == 0:
            return self.beta
        return self.beta * min(1.0, (epoch - 1) / self.warmup_epochs)

    def ss_prob(self, epoch):
        if epoch < self.ss_start:
            return 0.0
        if self.ss_end == self.ss_start:
            return self.ss_max
        return self.ss_max * min(1.0, (epoch - self.ss_start) / (self.ss_end - self.ss_start))

    def schedules_done(self, epoch):
        return epoch - 1 >= self.warmup_epochs and epoch >= self.ss_end


@dataclass
class TrainFiles:
    """What a training run writes and what it continues from (the files of :func:`train_prior`).

    :ivar out: the prior's checkpoint, rewritten atomically after every epoch (best weights, config, log), for use
        (``priors.load`` / ``torch.load(weights_only=True)``).
    :ivar log_json: per-epoch log (train / validation loss, KL scale, ss prob, lr, seconds).
    :ivar resume: a Lightning checkpoint written by an earlier run (``resume_to``) to continue from.
    :ivar resume_to: where to keep Lightning's checkpoint for resuming (default: ``out + ".resume.ckpt"`` when
        ``out`` is given).
    :ivar checkpoint_extra: extra entries stored in the prior's checkpoint (e.g. the ``sample_rate``, ``n_fft`` and
        ``hop`` of a spectral prior's front end).
    """

    out: str = None
    log_json: str = None
    resume: str = None
    resume_to: str = None
    checkpoint_extra: dict = None

    def __post_init__(self):
        if self.checkpoint_extra is not None and not isinstance(self.checkpoint_extra, dict):
            raise ValueError(f"checkpoint_extra must be a dict, got {type(self.checkpoint_extra).__name__}")

    def resume_path(self):
        """Where Lightning's checkpoint for resuming goes: ``resume_to``, else ``out + ".resume.ckpt"`` (``None``
        without ``out``)."""
        if self.resume_to is not None or self.out is None:
            return self.resume_to
        return f"{self.out}.resume.ckpt"


@dataclass
class TrainResult:
    prior: object
    history: list = field(default_factory=list)
    best_epoch: int = 0
    best_val: float = math.inf
    stopped_early: bool = False
    skipped_steps: int = 0


@torch.no_grad()
def evaluate(prior, x, mask=None, batch_size=256, seed=1234, ss_prob=0.0, ss_mode=None):
    """Validation loss: full ELBO (weight 1) per valid step, fixed noise, the prior in evaluation mode (as the
    training loop's validation; its mode is restored). ``ss_prob``: scheduled sampling of autoregressive priors
    (0: teacher forcing; a :class:`TrainConfig`'s ``val_ss_prob`` to score as its validation does), in the form
    ``ss_mode`` (default: the prior's own ``ss_mode``)."""
    total, steps, was_training = 0.0, 0, prior.training
    was_mode = getattr(prior, "ss_mode", None)  # None: a prior without scheduled sampling (MDVAE)
    ss_prob = float(ss_prob) if was_mode is not None and prior.autoregressive else 0.0
    prior.eval()
    if ss_mode is not None and was_mode is not None:
        prior.ss_mode = ss_mode
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            for i in range(0, x.shape[0], batch_size):
                xb = x[i : i + batch_size]
                mb = None if mask is None else mask[i : i + batch_size]
                n = float(mb.sum()) if mb is not None else xb.shape[:-1].numel()
                total += float(elbo_loss(prior, xb, mb, ss_prob=ss_prob)) * n
                steps += n
    finally:
        prior.train(was_training)
        if was_mode is not None:
            prior.ss_mode = was_mode
    return total / steps


def _check_data(name, x, mask, x_dim):
    if not (torch.is_tensor(x) or hasattr(x, "shape")) or len(x.shape) != 3:
        raise ValueError(f"{name} data must be a (N, T, D) tensor, got {tuple(getattr(x, 'shape', ()))}")
    if x.shape[-1] != x_dim:
        raise ValueError(f"{name} data has {x.shape[-1]} features but the prior expects x_dim={x_dim}")
    if len(x) == 0:
        raise ValueError(f"{name} data is empty")
    if mask is not None and tuple(mask.shape) != tuple(x.shape[:-1]):
        raise ValueError(f"{name} mask must be shaped {tuple(x.shape[:-1])}")


#: chunks of a streamed store read for the normalisation statistics
NORMALISATION_CHUNKS = 4096


def train_prior(prior, train, val, config=None, *, train_mask=None, val_mask=None, files=None, engine=None,
                device=None, progress=False, **overrides):
    """Train ``prior`` by SVI on the engine; see the module docstring for the schedules.

    Example::

        res = train_prior(prior, train, val, TrainConfig(epochs=3, batch_size=64), out="srnn.pt")
        res = train_prior(prior, train, val, epochs=3, batch_size=64, files=TrainFiles(out="srnn.pt"))

    :param DVAE prior: the prior to train (modified in place; ends holding the best weights).
    :param train: ``(N, T, x_dim)`` training sequences: a tensor or a :class:`~pyro_dvae.engine.ChunkStore`.
    :param val: ``(M, T', x_dim)`` validation sequences (the same kinds).
    :param TrainConfig config: the schedules and the optimiser.
    :param train_mask: optional ``(N, T)`` valid steps of ``train``; ``val_mask`` those of ``val``.
    :param TrainFiles files: the checkpoint, log and resume files.
    :param engine: :class:`~pyro_dvae.engine.Engine` (accelerator, devices, strategy, threads, ...).
    :param device: ``"cpu"``, ``"cuda"``, ... (default: the device of the prior's parameters); ignored when
        ``engine`` is given.
    :param bool progress: show a progress bar.
    :param overrides: fields of :class:`TrainConfig` (``epochs=3``, ...) or of :class:`TrainFiles` (``out=...``,
        ``resume=...``) replacing those of ``config`` / ``files`` (``dataclasses.replace``: schedule fields that
        ``config`` resolved from its ``epochs`` stay as resolved).
    :returns: :class:`TrainResult`.
    """
    from .engine import Engine, SequenceData, Sequences, fit

    cfg, out_files = _apply_overrides(config, files, overrides)
    _check_data("train", train, train_mask, prior.x_dim)
    _check_data("validation", val, val_mask, prior.x_dim)
    if cfg.gain_db != (0.0, 0.0) and prior.emission != "spectral":
        raise ValueError("gain augmentation (gain_db) is for spectral priors (power spectra)")
    if engine is None:
        device = torch.device(device) if device is not None else next(prior.parameters()).device
        engine = Engine(accelerator="gpu" if device.type == "cuda" else "cpu", threads=torch.get_num_threads())
    if out_files.resume is not None:
        _check_resume(out_files.resume, prior)
    elif not prior.is_normalised:
        sample = train if torch.is_tensor(train) else train.tensor(NORMALISATION_CHUNKS)
        prior.fit_normalisation(sample, train_mask if torch.is_tensor(train) else None)
    wrap = lambda x, m: x if not torch.is_tensor(x) else Sequences(x.cpu(), None if m is None else m.cpu().bool())  # noqa: E731
    data = SequenceData(wrap(train, train_mask), wrap(val, val_mask), cfg.batch_size, seed=cfg.seed,
                        num_workers=engine.num_workers)
    from .prior_task import PriorTask

    task = PriorTask(prior, cfg, engine.threads, out_files.checkpoint_extra)
    res = fit(task, data, cfg.epochs, patience=cfg.patience, engine=engine, out=out_files.out,
              resume_to=out_files.resume_path(), resume=out_files.resume, log_json=out_files.log_json,
              progress=progress, log_extra={"prior": prior.name, "config": asdict(cfg)})
    prior.eval()
    return TrainResult(prior=prior, history=res.history, best_epoch=res.best_epoch, best_val=res.best_val,
                       stopped_early=res.stopped_early, skipped_steps=res.skipped_steps)


def _apply_overrides(config, files, overrides):
    """``(TrainConfig, TrainFiles)``: ``config`` and ``files`` (or the defaults) with the ``overrides`` that name
    their fields; any other name is a :class:`TypeError`."""
    names = {"config": {f.name for f in fields(TrainConfig)}, "files": {f.name for f in fields(TrainFiles)}}
    unknown = sorted(set(overrides) - names["config"] - names["files"])
    if unknown:
        raise TypeError(f"train_prior() got unexpected keyword argument(s) {', '.join(map(repr, unknown))} (not a "
                        "field of TrainConfig or TrainFiles)")
    parts = []
    for cls, given, key in ((TrainConfig, config, "config"), (TrainFiles, files, "files")):
        over = {k: v for k, v in overrides.items() if k in names[key]}
        parts.append(cls(**over) if given is None else replace(given, **over) if over else given)
    return tuple(parts)


def _check_resume(path, prior):
    """A clear error for a resume file that is not Lightning's checkpoint of this prior."""
    import os

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such resume checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a resume checkpoint ({type(e).__name__})") from None
    saved = ckpt.get("pyro_dvae_prior") if isinstance(ckpt, dict) else None
    if saved is None:
        hint = (" (it is a prior checkpoint; resume from the .resume.ckpt file written beside it)"
                if isinstance(ckpt, dict) and "state_dict" in ckpt and "prior" in ckpt else "")
        raise ValueError(f"{path}: not a resume checkpoint written by train-prior{hint}")
    from .priors import same_prior

    if not same_prior(saved["name"], saved["config"], prior):
        raise ValueError(f"{path} holds a {saved['name']} prior with another config; cannot resume")
