# SPDX-License-Identifier: Apache-2.0
"""The Lightning module of the engine: one SVI training task (a negative ELBO minimised by Adam).

:class:`SVITask` holds what every training of the project shares: manual optimisation (one Adam step per
batch; gradient clipping; a non-finite loss or gradient skips the step and halves the learning rate, the same
decision on every rank since the gradients are all-reduced first, and a run that keeps diverging stops with
:class:`FloatingPointError`), epoch-driven schedules passed to the loss as arguments (KL warm-up, scheduled
sampling), a validation loss computed with a fixed noise seed and summed over the ranks, the thread
count of each process, and a warm-up batch in :meth:`setup`, before anything wraps the module for
distributed training: parameters that a guide creates lazily on its first call (every Pyro AutoGuide's) exist
by then, so the optimiser and DDP see them.

Subclasses say what is trained: :meth:`loss`, :meth:`val_loss`, :meth:`schedules`; optionally
:meth:`keep_state` / :meth:`write` (the project's own checkpoint) and :meth:`should_stop`.
:class:`ELBOTask` trains any Pyro ``model`` / ``guide`` pair through Pyro's :class:`~pyro.infer.elbo.ELBOModule`.

**References:**

[1] Pyro's ``examples/svi_lightning.py`` (an ELBO module trained by a Lightning ``Trainer``).
"""

import math
import time

import lightning.pytorch as pl
import pyro
import torch

from .cpu import threads

VAL_SEED = 1234


class SVITask(pl.LightningModule):
    """Base class (see the module docstring).

    :param float lr: Adam learning rate.
    :param float clip_norm: gradient-norm clipping.
    :param int max_lr_halvings: non-finite steps allowed before the run stops.
    :param int threads: torch CPU threads of each training process (``None``: leave as is).
    :param int seed: random seed (offset by the rank, so that the ranks draw different noise).
    """

    def __init__(self, lr=1e-3, clip_norm=10.0, max_lr_halvings=10, threads=None, seed=0):
        super().__init__()
        self.automatic_optimization = False
        self.lr, self.clip_norm, self.max_lr_halvings = float(lr), float(clip_norm), int(max_lr_halvings)
        self.threads, self.seed = threads, int(seed)
        self.skipped_steps, self._halvings = 0, 0
        self.last_val = math.inf
        self._train_sum = self._train_count = None
        self._val_sum = self._val_count = None
        self._epoch_start = self._rng = None

    # ------------------------------------------------------------------ what a subclass defines
    def loss(self, batch, epoch):
        """The differentiable training loss of one batch at ``epoch`` (1-based); returns ``(loss, weight)``."""
        raise NotImplementedError

    def val_loss(self, batch):
        """``(summed loss, count)`` of one validation batch (the epoch's value is their ratio)."""
        raise NotImplementedError

    def schedules(self, epoch):
        """The schedule values of ``epoch`` (for the log), e.g. ``{"kl_scale": ...}``."""
        return {}

    def schedules_done(self, epoch):
        """Whether the schedules are complete at ``epoch`` (patience counts from then on)."""
        return True

    def initialise(self, batch):
        """One no-gradient pass on a training batch (creates lazily built parameters)."""
        with torch.no_grad():
            self.loss(batch, 1)

    def trainable(self):
        """The parameters Adam updates."""
        return [p for p in self.parameters() if p.requires_grad]

    def keep_state(self):
        """A copy of what the best epoch keeps (default: the whole state dict, on the CPU)."""
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}

    def restore_state(self, state):
        self.load_state_dict(state)

    def write(self, path, state, training):
        """Write the project's checkpoint holding ``state`` (rank 0 only); default: nothing."""

    def should_stop(self, row, history):
        """A task-specific stopping rule checked before the epoch counts (default: never)."""
        return False

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage):
        if self.device.type == "cpu":
            threads(self.threads)  # None: leave the process's count
        torch.manual_seed(self.seed + self.global_rank)
        data = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and data is not None:  # before DDP wraps the module: lazy parameters exist
            n = min(len(data.train), 2)
            x, m = data.train[torch.arange(n)]
            self.initialise((x.to(self.device), None if m is None else m.to(self.device)))

    def configure_optimizers(self):
        return torch.optim.Adam(self.trainable(), lr=self.lr)

    def on_train_epoch_start(self):
        self._train_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._train_count = torch.zeros((), dtype=torch.float64, device=self.device)
        self._epoch_start = time.perf_counter()

    @property
    def epoch(self):
        return self.current_epoch + 1

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss, weight = self.loss(batch, self.epoch)
        opt.zero_grad()
        self.manual_backward(loss)  # DDP all-reduces the gradients here: every rank sees the same norm
        params = self.trainable()
        norm = torch.nn.utils.clip_grad_norm_(params, self.clip_norm)
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            self.skipped_steps += 1
            self._halvings += 1
            if self._halvings > self.max_lr_halvings:
                raise FloatingPointError(f"training diverged: {self.skipped_steps} non-finite steps")
            for group in opt.optimizer.param_groups:
                group["lr"] *= 0.5
            opt.zero_grad()
            return None
        opt.step()
        self._train_sum += loss.detach().double() * weight
        self._train_count += weight
        return None

    def on_validation_epoch_start(self):
        # the same noise for every epoch's validation (one seed for the whole pass, as :func:`evaluate`), and the
        # training's random stream left as it was
        self._rng = (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if self.device.type == "cuda"
                     else None)
        torch.manual_seed(VAL_SEED + 104729 * self.global_rank)
        self._val_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._val_count = torch.zeros((), dtype=torch.float64, device=self.device)

    def validation_step(self, batch, batch_idx):
        total, count = self.val_loss(batch)
        self._val_sum += torch.as_tensor(total, dtype=torch.float64, device=self.device)
        self._val_count += count

    def on_validation_epoch_end(self):
        total = self.trainer.strategy.reduce(self._val_sum, reduce_op="sum")
        count = self.trainer.strategy.reduce(self._val_count, reduce_op="sum")
        self.last_val = float(total / count) if float(count) > 0 else math.inf
        self._val_sum = self._val_count = None
        torch.set_rng_state(self._rng[0])
        if self._rng[1] is not None:
            torch.cuda.set_rng_state(self._rng[1], self.device)

    def epoch_row(self):
        """The training part of this epoch's log row (summed over the ranks)."""
        total = self.trainer.strategy.reduce(self._train_sum, reduce_op="sum")
        count = self.trainer.strategy.reduce(self._train_count, reduce_op="sum")
        lr = self.optimizers().optimizer.param_groups[0]["lr"]
        return {"epoch": self.epoch, "train_loss": float(total / count) if float(count) > 0 else math.nan,
                **self.schedules(self.epoch), "lr": lr, "seconds": time.perf_counter() - self._epoch_start}

    def on_save_checkpoint(self, checkpoint):
        checkpoint["svi_task"] = {"skipped_steps": self.skipped_steps, "halvings": self._halvings}

    def on_load_checkpoint(self, checkpoint):
        state = checkpoint.get("svi_task", {})
        self.skipped_steps, self._halvings = state.get("skipped_steps", 0), state.get("halvings", 0)


class ELBOTask(SVITask):
    """Any Pyro ``model`` / ``guide`` pair: the loss is Pyro's :class:`~pyro.infer.elbo.ElboModule`
    (``elbo(model, guide)``, a torch module whose parameters are the model's and the guide's), called on
    ``(x, mask)`` batches; its value is divided by ``x.shape[0]``. KL warm-up is not applied here.

    Pyro's ``module_local_params`` setting must be on *before* the model and guide are built (their parameters
    then belong to the modules, which DDP and the optimiser see, not to Pyro's global store); the training
    processes of a spawned run turn it on for themselves.

    :param elbo: a Pyro ELBO instance (default :class:`~pyro.infer.Trace_ELBO`).
    """

    def __init__(self, model, guide, elbo=None, **kwargs):
        if not pyro.settings.get("module_local_params"):
            raise ValueError("ELBOTask needs pyro.settings.set(module_local_params=True) before the model and guide "
                             "are built")
        super().__init__(**kwargs)
        self.elbo_module = (elbo or pyro.infer.Trace_ELBO())(model, guide)
        self.model, self.guide = model, guide

    def setup(self, stage):
        pyro.settings.set(module_local_params=True)  # per process (a spawned worker starts with the default)
        super().setup(stage)

    def _call(self, x, mask):
        return self.elbo_module(x) if mask is None else self.elbo_module(x, mask)

    def loss(self, batch, epoch):
        x, mask = batch
        return self._call(x, mask) / x.shape[0], x.shape[0]

    def val_loss(self, batch):
        x, mask = batch
        with torch.no_grad():
            return float(self._call(x, mask)), x.shape[0]
