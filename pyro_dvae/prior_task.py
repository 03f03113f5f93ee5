# SPDX-License-Identifier: Apache-2.0
"""The engine's task for a DVAE prior (:func:`pyro_dvae.training.train_prior` builds it): the negative ELBO per
valid step (:func:`pyro_dvae.elbo.elbo_loss`) with the KL warm-up and scheduled sampling of a
:class:`~pyro_dvae.training.TrainConfig`, the gain augmentation of spectral priors, and the prior's own checkpoint.

Imports go one way: :mod:`pyro_dvae.training` imports this module (when a training starts), never the reverse."""

import torch

from .elbo import elbo_loss
from .engine.task import SVITask
from .priors import same_prior


class PriorTask(SVITask):
    """Train ``prior`` with the schedules of ``cfg`` (a :class:`~pyro_dvae.training.TrainConfig`).

    :param dict checkpoint_extra: extra entries of the prior's checkpoint (e.g. the STFT front end).
    """

    def __init__(self, prior, cfg, threads=None, checkpoint_extra=None):
        super().__init__(lr=cfg.lr, clip_norm=cfg.clip_norm, max_lr_halvings=cfg.max_lr_halvings, threads=threads,
                         seed=cfg.seed)
        self.prior, self.cfg = prior, cfg
        self.extra = dict(checkpoint_extra or {})
        self._gen = None  # the gain augmentation's generator, made in the training process

    def schedules(self, epoch):
        cfg = self.cfg
        return {"kl_scale": cfg.kl_scale(epoch), "ss_prob": cfg.ss_prob(epoch) if self.prior.autoregressive else 0.0}

    def schedules_done(self, epoch):
        return self.cfg.schedules_done(epoch)

    def initialise(self, batch):  # the priors build every parameter eagerly
        pass

    def loss(self, batch, epoch):
        x, mask = batch
        if self.cfg.gain_db != (0.0, 0.0):
            if self._gen is None:
                self._gen = torch.Generator().manual_seed(self.cfg.seed + self.global_rank)
            lo, hi = self.cfg.gain_db
            g = torch.rand(x.shape[0], 1, 1, generator=self._gen, dtype=torch.float64) * (hi - lo) + lo
            x = x * (10.0 ** (g / 10)).to(device=x.device, dtype=x.dtype)
        s = self.schedules(epoch)
        self.prior.train()
        self.prior.ss_mode = self.cfg.ss_mode
        return elbo_loss(self.prior, x, mask, kl_scale=s["kl_scale"], ss_prob=s["ss_prob"]), x.shape[0]

    def val_loss(self, batch):
        x, mask = batch
        self.prior.eval()
        self.prior.ss_mode = self.cfg.ss_mode
        ss = self.cfg.val_ss_prob if self.prior.autoregressive else 0.0
        with torch.no_grad():
            n = float(mask.sum()) if mask is not None else x.shape[:-1].numel()
            return float(elbo_loss(self.prior, x, mask, ss_prob=ss)) * n, n

    def keep_state(self):
        return {k: v.detach().cpu().clone() for k, v in self.prior.state_dict().items()}

    def restore_state(self, state):
        self.prior.load_state_dict(state)

    def write(self, path, state, training):
        last = {k: v.detach().clone() for k, v in self.prior.state_dict().items()}
        self.prior.load_state_dict(state)
        try:
            self.prior.save(path, training=training, **self.extra)
        finally:
            self.prior.load_state_dict(last)

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint["pyro_dvae_prior"] = {"name": self.prior.name, "config": self.prior.config}

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("pyro_dvae_prior")
        if saved is not None and not same_prior(saved["name"], saved["config"], self.prior):
            raise ValueError(f"the resume checkpoint holds a {saved['name']} prior with another config "
                             f"({saved['config']}); this run trains a {self.prior.name} prior ({self.prior.config})")
