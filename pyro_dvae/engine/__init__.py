# SPDX-License-Identifier: Apache-2.0
"""The training engine: every training of the project (priors, deep noise models, any Pyro model / guide)
runs on PyTorch Lightning, one code path from one CPU core to DDP over several GPUs or nodes.

- :mod:`~pyro_dvae.engine.task`: :class:`SVITask`, the Lightning module (manual Adam steps on a negative
  ELBO, schedules, non-finite steps skipped, validation summed over ranks), and :class:`ELBOTask` for any
  Pyro model / guide pair;
- :mod:`~pyro_dvae.engine.data`: in-memory sequences, audio chunks streamed from a memory-mapped store, the
  rank-aware batch sampler, the data module;
- :mod:`~pyro_dvae.engine.run`: :class:`Engine` (accelerator, devices, nodes, strategy, precision, threads,
  loader workers) and :func:`fit` with its bookkeeping (best weights, patience, checkpoints, resume);
- :mod:`~pyro_dvae.engine.cpu`: :func:`threads`, the one place that sets torch's CPU thread count (used by the
  engine, the command line and the examples).

Lightning is imported on first use of one of these names (the inference commands never load it).
"""

from .cpu import threads
from .ranks import is_rank_zero

_WHERE = {"ChunkStore": "data", "RankBatches": "data", "SequenceData": "data", "Sequences": "data",
          "TrajectoryStream": "data", "Engine": "run", "FitResult": "run", "fit": "run", "ELBOTask": "task",
          "SVITask": "task"}

__all__ = sorted(_WHERE) + ["is_rank_zero", "threads"]


def __getattr__(name):
    if name in _WHERE:
        import importlib

        try:
            module = importlib.import_module(f".{_WHERE[name]}", __name__)
        except RuntimeError as e:  # e.g. a torchvision built for another torch, which lightning imports if present
            raise ImportError(f"the training engine could not import lightning: {e}. A torchvision that does not "
                              "match this torch build breaks it: uninstall torchvision or install the matching "
                              "build") from e
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
