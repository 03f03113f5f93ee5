# SPDX-License-Identifier: Apache-2.0
"""Running a task: the Lightning ``Trainer`` built from :class:`Engine`, and the bookkeeping callback.

:func:`fit` trains an :class:`~pyro_dvae.engine.task.SVITask` on a :class:`~pyro_dvae.engine.data.SequenceData`
for at most ``epochs`` epochs. After every epoch :class:`Bookkeeping` logs the row (train / validation loss,
schedules, learning rate, seconds), keeps the best validation weights, counts ``patience`` once the task's
schedules are complete, applies the task's own stopping rule, writes the project's checkpoint (rank 0 only,
atomically, by the task) and the JSON log, and saves Lightning's checkpoint for ``resume`` (all ranks take
part, rank 0 writes). The stop decision is the same on every rank, since the validation loss is summed over
the ranks before anyone looks at it.

``progress`` shows Lightning's tqdm progress bar when standard output is a terminal (:func:`on_terminal`); redirected
to a file or a pipe, it prints one plain line per epoch instead (:class:`EpochLines`), with no escape codes.
"""

import dataclasses
import logging
import math
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field

import lightning.pytorch as pl
import torch

from ..checkpoint import write_json

#: the strategies a user may name; "ddp" is DDP that tolerates parameters a step does not reach
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "single_device")
PRECISIONS = ("32-true", "64-true", "bf16-mixed", "bf16-true", "16-mixed")


@dataclass
class Engine:
    """Where and how a training runs (the ``--accelerator`` ... ``--num-workers`` options of the commands).

    The default is one process on the CPU with one torch thread (fastest for these model sizes on a busy
    machine). ``devices`` > 1 or ``num_nodes`` > 1 with ``strategy="auto"`` runs DDP.
    """

    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    threads: int = 1
    num_workers: int = 0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for key in ("devices", "num_nodes", "threads"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if int(self.num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    @property
    def distributed(self):
        return self.devices * self.num_nodes > 1 or self.strategy.startswith("ddp")

    def strategy_object(self, find_unused=True):
        """The Lightning strategy; DDP looks for parameters a step does not reach only when ``find_unused``
        (:func:`fit` checks the task once: the search costs a pass over the graph at every step)."""
        if not self.distributed or self.strategy == "single_device":
            return self.strategy
        from lightning.pytorch.strategies import DDPStrategy

        start = {"auto": "popen", "ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork",
                 "ddp_notebook": "fork"}[self.strategy]
        return DDPStrategy(start_method=start, find_unused_parameters=find_unused)


@dataclass
class FitResult:
    history: list = field(default_factory=list)
    best_epoch: int = 0
    best_val: float = math.inf
    stopped_early: bool = False
    stopped_by_task: bool = False
    skipped_steps: int = 0
    best_state: dict = None


class Bookkeeping(pl.Callback):
    """Per-epoch log, best weights, patience, checkpoints (see the module docstring)."""

    def __init__(self, patience, out=None, resume_to=None, log_json=None, log_extra=None):
        self.patience, self.out, self.resume_to, self.log_json = int(patience), out, resume_to, log_json
        self.log_extra = log_extra or {}
        self.result, self.bad_epochs = FitResult(), 0

    def on_train_epoch_end(self, trainer, task):
        res, epoch = self.result, task.epoch
        row = {**task.epoch_row(), "val_loss": task.last_val}
        res.history.append(row)
        res.skipped_steps = task.skipped_steps
        if task.should_stop(row, res.history):
            res.stopped_by_task = True
            trainer.should_stop = True
        else:
            improved = math.isfinite(task.last_val) and task.last_val < res.best_val
            if improved:
                res.best_val, res.best_epoch, res.best_state = task.last_val, epoch, task.keep_state()
            if task.schedules_done(epoch):
                self.bad_epochs = 0 if improved else self.bad_epochs + 1
            if self.bad_epochs >= self.patience:
                res.stopped_early = True
                trainer.should_stop = True
        training = {"epoch": epoch, "history": res.history, "best_val": res.best_val, "best_epoch": res.best_epoch,
                    "bad_epochs": self.bad_epochs, "skipped_steps": res.skipped_steps,
                    "resume": self.resume_to, **self.log_extra}
        if trainer.is_global_zero:
            if self.out is not None and res.best_state is not None:
                task.write(self.out, res.best_state, training)
            if self.log_json is not None:
                write_json(self.log_json, {**self.log_extra, "best_epoch": res.best_epoch, "best_val": res.best_val,
                                           "history": res.history})
        if self.resume_to is not None:
            tmp = f"{self.resume_to}.tmp"
            trainer.save_checkpoint(tmp)
            trainer.strategy.barrier()
            if trainer.is_global_zero:
                os.replace(tmp, self.resume_to)

    def state_dict(self):
        r = self.result
        return {"history": r.history, "best_epoch": r.best_epoch, "best_val": r.best_val, "best_state": r.best_state,
                "bad_epochs": self.bad_epochs, "stopped_early": r.stopped_early}

    def load_state_dict(self, state):
        r = self.result
        r.history, r.best_epoch, r.best_val = list(state["history"]), state["best_epoch"], state["best_val"]
        r.best_state, self.bad_epochs = state["best_state"], state["bad_epochs"]


def on_terminal(stream=None):
    """Whether ``stream`` (default: standard output, where Lightning's progress bar writes) is an interactive
    terminal; a file, a pipe or a closed stream is not."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_epoch_line(row, epochs):
    """One epoch's line of :class:`EpochLines`, from a row of :attr:`FitResult.history`."""
    def num(value):
        return f"{value:.6g}" if value is not None and math.isfinite(value) else "n/a"

    return (f"epoch {row['epoch']}/{epochs}: train_loss {num(row.get('train_loss'))}, "
            f"val_loss {num(row.get('val_loss'))}, {row.get('seconds', math.nan):.1f} s")


class EpochLines(pl.Callback):
    """The progress of a run whose output is not a terminal: one plain line per epoch (:func:`format_epoch_line`),
    printed by rank 0 after :class:`Bookkeeping` has logged the epoch."""

    def on_train_epoch_end(self, trainer, task):
        book = next((c for c in trainer.callbacks if isinstance(c, Bookkeeping)), None)
        if trainer.is_global_zero and book is not None and book.result.history:
            print(format_epoch_line(book.result.history[-1], trainer.max_epochs), flush=True)


def fit(task, data, epochs, *, patience, engine=None, out=None, resume_to=None, resume=None, log_json=None,
        log_extra=None, progress=False, callbacks=()):
    """Train ``task`` on ``data``; returns a :class:`FitResult` (in the calling process, also after a
    ``ddp_spawn`` / ``ddp_fork`` run, whose workers' bookkeeping comes back through a file).

    :param int epochs: the last epoch (a resumed run continues up to it).
    :param str out: the project's checkpoint (written by ``task.write``).
    :param str resume_to: Lightning's checkpoint for resuming, rewritten after every epoch.
    :param str resume: a Lightning checkpoint written by an earlier run to continue from.
    :param callbacks: more Lightning callbacks.
    :param bool progress: show the progress: Lightning's bar on a terminal, else one plain line per epoch.
    """
    engine = engine or Engine()
    book = Bookkeeping(patience, out, resume_to, log_json, log_extra)
    launched = engine.strategy in ("ddp_spawn", "ddp_fork", "ddp_notebook")
    tmp = tempfile.mkdtemp(prefix="pyro-dvae-fit-") if launched else None
    bar = bool(progress) and on_terminal()  # a redirected log gets no bar and its escape codes
    lines = [EpochLines()] if progress and not bar else []
    callbacks = [book, *lines, *callbacks] + ([_ReportBack(os.path.join(tmp, "result.pt"))] if launched else [])
    try:
        _run_trainer(task, data, epochs, engine, resume, bar, callbacks)
        result = book.result
        if launched:  # the workers trained copies of the task: take their result and best weights back
            result = FitResult(**torch.load(os.path.join(tmp, "result.pt"), weights_only=True))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if result.best_state is not None:
        task.restore_state(result.best_state)
    return result


def _run_trainer(task, data, epochs, engine, resume, progress, callbacks):
    """Build Lightning's ``Trainer`` for ``engine`` and fit, without Lightning's info lines and known warnings."""
    quiet = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [q.level for q in quiet]
    for q in quiet:  # Lightning's info lines (devices found, tips) are not the user's business here
        q.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*treespec.*")  # Lightning 2.6 on torch >= 2.10
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # frozen parts, on purpose
            find_unused = engine.distributed and not _reaches_every_parameter(task, data, epochs)
            trainer = pl.Trainer(accelerator=engine.accelerator, devices=engine.devices, num_nodes=engine.num_nodes,
                                 strategy=engine.strategy_object(find_unused), precision=engine.precision,
                                 max_epochs=int(epochs), logger=False, enable_checkpointing=False,
                                 enable_model_summary=False, enable_progress_bar=bool(progress),
                                 num_sanity_val_steps=0, use_distributed_sampler=False, inference_mode=False,
                                 callbacks=list(callbacks) + ([pl.callbacks.TQDMProgressBar()] if progress else []))
            trainer.fit(task, datamodule=data, ckpt_path=resume, weights_only=True)
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


def _reaches_every_parameter(task, data, epochs, n=4):
    """Whether the training loss of a few sequences reaches every parameter that requires a gradient (the task's
    frozen parts included: DDP checks them all), at the first and the last
    epoch's schedules (one forward and backward pass in this process)."""
    x, mask = data.train[torch.arange(min(len(data.train), n))]
    task.initialise((x, mask))
    try:
        for epoch in sorted({1, int(epochs)}):
            task.zero_grad(set_to_none=True)
            task.loss((x, mask), epoch)[0].backward()
            if any(p.grad is None for p in task.parameters() if p.requires_grad):  # what DDP checks
                return False
        return True
    finally:
        task.zero_grad(set_to_none=True)


class _ReportBack(pl.Callback):
    """Rank 0 of a spawned / forked run writes the bookkeeping result for the parent process."""

    def __init__(self, path):
        self.path = path

    def on_fit_end(self, trainer, task):
        if trainer.is_global_zero:  # plain containers and tensors: the parent loads it with weights_only=True
            book = next(c for c in trainer.callbacks if isinstance(c, Bookkeeping))
            torch.save(dataclasses.asdict(book.result), self.path)
