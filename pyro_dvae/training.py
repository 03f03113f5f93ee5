# SPDX-License-Identifier: Apache-2.0
"""SVI pre-training of a DVAE prior.

The loss is the negative ELBO of :meth:`DVAE.model` / :meth:`DVAE.guide` under
:class:`~pyro.infer.TraceMeanField_ELBO` (per-step analytic KL, see
:mod:`pyro_dvae.priors.distributions`), divided by the number of valid time steps. Schedules:

- **Normalisation**: a prior that still has the identity normalisation gets its input / output
  standardisation from the training data first (:meth:`~pyro_dvae.priors.base.DVAE.fit_normalisation`).
- **KL warm-up**: the latent sites alone are scaled by ``beta * min(1, (epoch - 1) / warmup_epochs)``
  (:func:`pyro_dvae.handlers.scale_sites`; the observation term keeps weight 1).
- **Scheduled sampling** (autoregressive priors): the probability of feeding the decoder its own
  prediction instead of the true past rises linearly from 0 at ``ss_start`` to ``ss_max`` at
  ``ss_end`` (epochs), as in MixDVAE's pre-training.
- **Schedules scale with the run**: left unset, warm-up lasts the first 20 % of ``epochs``, scheduled
  sampling starts when it ends and reaches ``ss_max`` at 80 %, so a short run completes both (100 epochs:
  20 / 20 / 80). Explicit values that cannot complete within ``epochs`` give a warning (a run meant to be
  resumed with more epochs).
- **Gain augmentation** (spectral priors): each training sequence's power is multiplied by
  ``10 ** (g / 10)``, ``g ~ U(gain_db)``, drawn anew at every step, so the prior does not tie its latents
  to the level of the training files.
- **Early stopping** on the validation loss (full ELBO, teacher forcing, fixed noise seed), counted
  only once both schedules are complete; the best weights are what the checkpoint holds.
- **Non-finite losses or gradients** skip the step and halve the learning rate; a checkpoint never
  holds a non-finite weight.
- **Resume**: the checkpoint also stores the last weights, the optimizer state and the history.

**References:**

[1] S. Bengio, O. Vinyals, N. Jaitly, N. Shazeer (2015), "Scheduled Sampling for Sequence Prediction
    with Recurrent Neural Networks", NeurIPS.
[2] D. Duckworth, A. Neelakantan, B. Goodrich, L. Kaiser, S. Bengio (2019), "Parallel Scheduled
    Sampling", arXiv:1906.04331.
[3] C. K. Sønderby et al. (2016), "Ladder Variational Autoencoders" (KL warm-up), NeurIPS.
"""

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch
from pyro.infer import TraceMeanField_ELBO

from . import priors as _priors
from .handlers import scale_sites


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

    def __post_init__(self):
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
class TrainResult:
    prior: object
    history: list = field(default_factory=list)
    best_epoch: int = 0
    best_val: float = math.inf
    stopped_early: bool = False
    skipped_steps: int = 0


def elbo_loss(prior, x, mask=None, kl_scale=1.0, ss_prob=0.0):
    """Negative ELBO per valid time step (a differentiable scalar)."""
    sites = prior.latent_sites
    model = scale_sites(prior.model, scale=kl_scale, sites=sites)
    guide = scale_sites(prior.guide, scale=kl_scale, sites=sites)
    loss = TraceMeanField_ELBO().differentiable_loss(model, guide, x, mask, ss_prob)
    steps = mask.sum() if mask is not None else x.shape[:-1].numel()
    return loss / steps


@torch.no_grad()
def evaluate(prior, x, mask=None, batch_size=256, seed=1234):
    """Validation loss: full ELBO (weight 1, teacher forcing) per valid step, fixed noise."""
    total, steps = 0.0, 0
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size]
            mb = None if mask is None else mask[i : i + batch_size]
            n = float(mb.sum()) if mb is not None else xb.shape[:-1].numel()
            total += float(elbo_loss(prior, xb, mb)) * n
            steps += n
    return total / steps


def _check_data(name, x, mask, x_dim):
    if not torch.is_tensor(x) or x.dim() != 3:
        raise ValueError(f"{name} data must be a (N, T, D) tensor, got {tuple(getattr(x, 'shape', ()))}")
    if x.shape[-1] != x_dim:
        raise ValueError(f"{name} data has {x.shape[-1]} features but the prior expects x_dim={x_dim}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} data is empty")
    if mask is not None and mask.shape != x.shape[:-1]:
        raise ValueError(f"{name} mask must be shaped {tuple(x.shape[:-1])}")


def train_prior(prior, train, val, config=None, *, train_mask=None, val_mask=None, out=None,
                log_json=None, resume=None, progress=False, device=None, checkpoint_extra=None):
    """Train ``prior`` by SVI; see the module docstring for the schedules.

    :param DVAE prior: the prior to train (modified in place; ends holding the best weights).
    :param torch.Tensor train: ``(N, T, x_dim)`` training sequences.
    :param torch.Tensor val: ``(M, T', x_dim)`` validation sequences.
    :param TrainConfig config: settings.
    :param str out: checkpoint path, rewritten atomically after every epoch (best weights + resume state).
    :param str log_json: per-epoch log (train / validation loss, KL scale, ss prob, lr, seconds).
    :param str resume: a checkpoint written by this function to continue from.
    :param bool progress: show a tqdm bar.
    :param device: torch device (default: that of the prior's parameters).
    :param dict checkpoint_extra: extra entries stored in every checkpoint written to ``out`` (e.g. the
        ``sample_rate``, ``n_fft`` and ``hop`` of a spectral prior's front end, which
        :func:`pyro_dvae.models.separation.load_separation_prior` checks).
    :returns: :class:`TrainResult`.
    """
    cfg = config or TrainConfig()
    _check_data("train", train, train_mask, prior.x_dim)
    _check_data("validation", val, val_mask, prior.x_dim)
    device = torch.device(device) if device is not None else next(prior.parameters()).device
    prior.to(device)
    train, val = train.to(device), val.to(device)
    train_mask = None if train_mask is None else train_mask.to(device).bool()
    val_mask = None if val_mask is None else val_mask.to(device).bool()
    if resume is None and not prior.is_normalised:
        prior.fit_normalisation(train, train_mask)
    augment = cfg.gain_db != (0.0, 0.0)
    if augment and prior.emission != "spectral":
        raise ValueError("gain augmentation (gain_db) is for spectral priors (power spectra)")
    opt = torch.optim.Adam(prior.parameters(), lr=cfg.lr)
    res = TrainResult(prior=prior)
    best_state = {k: v.detach().clone() for k, v in prior.state_dict().items()}
    start, bad_epochs = 1, 0
    if resume is not None:
        ckpt = _priors.load_checkpoint(resume)
        if ckpt["prior"] != prior.name or ckpt["config"] != prior.config:
            raise ValueError(f"{resume} holds a {ckpt['prior']} prior with another config; cannot resume")
        tr = ckpt.get("training")
        if not tr:
            raise ValueError(f"{resume} has no training state to resume from")
        prior.load_state_dict(tr["last_state_dict"])
        opt.load_state_dict(tr["optimizer"])
        best_state = {k: v.to(device) for k, v in ckpt["state_dict"].items()}
        res.history, res.best_val, res.best_epoch = list(tr["history"]), tr["best_val"], tr["best_epoch"]
        start, bad_epochs, res.skipped_steps = tr["epoch"] + 1, tr["bad_epochs"], tr["skipped_steps"]
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed + start)
    epochs = range(start, cfg.epochs + 1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(epochs, desc=f"train {prior.name}", unit="epoch")
        epochs = bar
    halvings = 0
    for epoch in epochs:
        t0 = time.perf_counter()
        kl, ss = cfg.kl_scale(epoch), cfg.ss_prob(epoch) if prior.autoregressive else 0.0
        prior.train()
        perm = torch.randperm(train.shape[0], generator=gen).to(device)
        total, count = 0.0, 0
        for i in range(0, train.shape[0], cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            xb = train[idx]
            if augment:
                lo, hi = cfg.gain_db
                g = torch.rand(xb.shape[0], 1, 1, generator=gen, dtype=torch.float64) * (hi - lo) + lo
                xb = xb * (10.0 ** (g / 10)).to(device=device, dtype=xb.dtype)
            mb = None if train_mask is None else train_mask[idx]
            loss = elbo_loss(prior, xb, mb, kl_scale=kl, ss_prob=ss)
            opt.zero_grad()
            if torch.isfinite(loss):
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(prior.parameters(), cfg.clip_norm)
            if not torch.isfinite(loss) or not torch.isfinite(norm):
                res.skipped_steps += 1
                halvings += 1
                if halvings > cfg.max_lr_halvings:
                    raise FloatingPointError(f"training diverged: {res.skipped_steps} non-finite steps")
                for g in opt.param_groups:
                    g["lr"] *= 0.5
                opt.zero_grad()
                continue
            opt.step()
            total += float(loss.detach()) * xb.shape[0]
            count += xb.shape[0]
        prior.eval()
        val_loss = evaluate(prior, val, val_mask, cfg.batch_size)
        improved = math.isfinite(val_loss) and val_loss < res.best_val
        if improved:
            res.best_val, res.best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in prior.state_dict().items()}
        if cfg.schedules_done(epoch):
            bad_epochs = 0 if improved else bad_epochs + 1
        row = {"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": val_loss, "kl_scale": kl,
               "ss_prob": ss, "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        res.history.append(row)
        if bar is not None:
            bar.set_postfix(train=f"{row['train_loss']:.4g}", val=f"{val_loss:.4g}")
        if out is not None:
            last = {k: v.detach().cpu() for k, v in prior.state_dict().items()}
            training = {"epoch": epoch, "history": res.history, "best_val": res.best_val,
                        "best_epoch": res.best_epoch, "bad_epochs": bad_epochs, "skipped_steps": res.skipped_steps,
                        "last_state_dict": last, "optimizer": opt.state_dict(), "config": asdict(cfg)}
            prior.load_state_dict(best_state)
            prior.save(out, training=training, **(checkpoint_extra or {}))
            prior.load_state_dict({k: v.to(device) for k, v in last.items()})
        if log_json is not None:
            _write_json(log_json, {"prior": prior.name, "config": asdict(cfg), "best_epoch": res.best_epoch,
                                   "best_val": res.best_val, "history": res.history})
        if bad_epochs >= cfg.patience:
            res.stopped_early = True
            break
    prior.load_state_dict(best_state)
    return res


def _write_json(path, obj):
    tmp = f"{path}.tmp"
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)
