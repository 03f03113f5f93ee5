# SPDX-License-Identifier: Apache-2.0
"""The engine's task for U-ND noise training (:func:`~pyro_dvae.models.enhancement.training.train_noise` builds
it): the enhancement model's negative ELBO per TF bin, the no-reference stopping rule on the share of the
validation energy the speech estimate keeps, and the noise checkpoint."""

import math

import torch
from pyro.infer import TraceMeanField_ELBO

from pyro_dvae import noise as noise_models
from pyro_dvae.engine.task import SVITask

from . import losses
from .config import KEPT_RATIO, PLATES
from .fit import adam, eval_mode_backward


def trainable_state(model):
    """The trained weights of an :class:`~pyro_dvae.models.enhancement.EnhancementModel`: the noise network's
    and the speech encoder's, detached copies."""
    return {"noise": {k: v.detach().clone() for k, v in model.noise.state_dict().items()},
            "encoder": model.encoder_state()}


def load_trainable_state(model, state):
    """Load a :func:`trainable_state` into ``model``."""
    model.noise.load_state_dict(state["noise"])
    model.load_encoder_state(state["encoder"])


class NoiseTask(SVITask):
    """Train the encoder and the deep noise model of ``model`` (an
    :class:`~pyro_dvae.models.enhancement.EnhancementModel`) for ``prior``; ``front_end`` is
    ``(sample_rate, n_fft, hop)`` for the checkpoint."""

    def __init__(self, model, prior, lr, clip_norm, threads, seed, front_end):
        super().__init__(lr=lr, clip_norm=clip_norm, threads=threads, seed=seed)
        self.enh, self.speech_prior, self.front_end = model, prior, tuple(front_end)
        self.elbo = TraceMeanField_ELBO(max_plate_nesting=PLATES)
        self.last_kept, self._kept = math.nan, None

    def trainable(self):
        return list(self.enh.trainable_parameters())

    def configure_optimizers(self):
        return adam(self.trainable(), self.lr)

    def initialise(self, batch):  # every parameter exists already
        pass

    def training_step(self, batch, batch_idx):
        with eval_mode_backward(self.device):  # the frozen decoder runs in eval mode
            return super().training_step(batch, batch_idx)

    def loss(self, batch, epoch):
        return losses.noise_loss(self.enh, batch[0], self.elbo), batch[0].shape[0]

    def val_loss(self, batch):
        x = batch[0]
        with torch.no_grad():
            total = float(losses.noise_loss(self.enh, x, self.elbo)) * len(x)
        parts = losses.kept_parts(self.enh, x)
        self._kept = parts if self._kept is None else self._kept + parts
        return total, len(x)

    def on_validation_epoch_end(self):
        super().on_validation_epoch_end()
        self.last_kept = losses.kept_share(self.trainer.strategy.reduce(self._kept, reduce_op="sum"))
        self._kept = None

    def epoch_row(self):
        return {**super().epoch_row(), "kept_energy": self.last_kept}

    def should_stop(self, row, history):  # the noise model has started to take the speech over
        return row["kept_energy"] < KEPT_RATIO * history[0]["kept_energy"]

    def keep_state(self):
        return {k: {n: v.detach().cpu().clone() for n, v in d.items()}
                for k, d in trainable_state(self.enh).items()}

    def restore_state(self, state):
        load_trainable_state(self.enh, state)

    def write(self, path, state, training):
        last = trainable_state(self.enh)
        load_trainable_state(self.enh, state)
        try:
            keep = {k: training[k] for k in ("history", "best_epoch", "best_val", "resume")}
            noise_models.save_noise(path, self.enh.noise, self.speech_prior, self.enh.encoder_state(),
                                    *self.front_end, training=keep)
        finally:
            load_trainable_state(self.enh, last)
