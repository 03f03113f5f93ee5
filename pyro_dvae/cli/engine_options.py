# SPDX-License-Identifier: Apache-2.0
"""The training engine's options, shared by ``train-prior`` and ``train-noise`` (no Lightning import here:
the engine is loaded only when a training starts)."""

from .common import int_at_least

#: kept in step with pyro_dvae.engine.run (checked by a test), without importing Lightning for ``--help``
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "single_device")
PRECISIONS = ("32-true", "64-true", "bf16-mixed", "bf16-true", "16-mixed")


def add_engine_options(p):
    """``--accelerator --devices --num-nodes --strategy --precision --num-workers --chunk-cache``."""
    at1 = int_at_least(1)
    g = p.add_argument_group("training engine (PyTorch Lightning)")
    g.add_argument("--accelerator", default="cpu", choices=["auto", "cpu", "gpu", "cuda", "mps"],
                   help="where to train")
    g.add_argument("--devices", type=at1, default=1,
                   help="processes (CPU) or GPUs per node; more than 1 trains with DDP, each process taking "
                        "--batch-size sequences per step")
    g.add_argument("--num-nodes", type=at1, default=1, help="machines (launched by torchrun or a cluster manager)")
    g.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="auto: one process, or DDP when --devices / --num-nodes ask for several; ddp starts the "
                        "other processes by re-running this command; ddp_spawn / ddp_fork start them from this one")
    g.add_argument("--precision", default="32-true", choices=PRECISIONS, help="floating-point precision")
    g.add_argument("--num-workers", type=int_at_least(0), default=0,
                   help="data-loading processes per training process (0: load in the training process)")
    g.add_argument("--chunk-cache", metavar="DIR",
                   help="audio: keep the training chunks in this folder (memory-mapped, reused by a later run "
                        "with the same files and settings); default: a folder beside --out, removed at the end")
    return g


def engine_from_args(args):
    """The :class:`~pyro_dvae.engine.Engine` of the parsed options."""
    from ..engine import Engine

    accelerator = "gpu" if args.accelerator == "cuda" else args.accelerator
    return Engine(accelerator=accelerator, devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy,
                  precision=args.precision, threads=args.threads, num_workers=args.num_workers)
