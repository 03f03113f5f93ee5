# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae train-noise``: train a deep noise model (U-ND) on a folder of noisy speech.

The options make a :class:`~pyro_dvae.models.enhancement.NoiseTrainConfig`; the run is
:func:`~pyro_dvae.models.enhancement.files.train_noise_folder`; this module parses and prints."""

from .common import FRACTION, POSITIVE, add_command, int_at_least
from .engine_options import add_engine_options, engine_from_args

EXAMPLE = "pyro-dvae train-noise --noisy-dir NOISY_DIR --prior speech.pt --noise nolv --out nolv.pt"


def add_parser(sub, parents):
    p = add_command(sub, "train-noise", "train a deep noise model (U-ND) on a folder of noisy speech",
                    EXAMPLE, parents)
    at1 = int_at_least(1)
    p.add_argument("--noisy-dir", required=True, help="folder of noisy speech (wav / flac / ogg), no clean references")
    p.add_argument("--prior", default="speech_rvae",
                   help="the spectral speech prior the noise model is trained for (default: the shipped causal RVAE, "
                        "enhance's default prior)")
    p.add_argument("--noise", required=True, choices=["lv", "no", "nolv"], help="the deep noise model")
    p.add_argument("--out", required=True, help="noise checkpoint (.pt)")
    p.add_argument("--epochs", type=at1, default=30, help="training epochs")
    p.add_argument("--seq-len", type=int_at_least(2), default=100, help="frames per training chunk")
    p.add_argument("--batch-size", type=at1, default=16, help="chunks per step")
    p.add_argument("--lr", type=POSITIVE, default=1e-3, help="Adam learning rate")
    p.add_argument("--patience", type=at1, default=10, help="stop after this many epochs without a better "
                                                          "validation loss")
    p.add_argument("--val-fraction", type=FRACTION, default=0.1, help="chunks held out for validation")
    p.add_argument("--resume", help="Lightning checkpoint written beside --out (OUT.resume.ckpt) to continue from")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_options(p)
    p.set_defaults(run=run, outputs=[("out", "--out", None)])
    return p


def run(args):
    from ..engine.ranks import is_rank_zero
    from ..models.enhancement import KEPT_RATIO, NoiseTrainConfig
    from ..models.enhancement.files import train_noise_folder

    config = NoiseTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                              seed=args.seed, seq_len=args.seq_len, val_fraction=args.val_fraction)
    say = print if is_rank_zero() else (lambda *a, **k: None)
    summary = train_noise_folder(args.prior, args.noise, args.noisy_dir, args.out, config,
                                 chunk_cache=args.chunk_cache, engine=engine_from_args(args), resume=args.resume,
                                 progress=not args.quiet, log=say)
    history = summary["history"]
    first = history[0]["val_loss"] if history else float("nan")
    say(f"validation loss (negative ELBO per TF bin): epoch 1 {first:.4f} -> best {summary['best_val_loss']:.4f} at "
        f"epoch {summary['best_epoch']}; saved {args.out}")
    if summary["stopped_on_speech"]:
        say(f"stopped after epoch {len(history)}: the speech estimate on the validation chunks kept "
            f"{history[-1]['kept_energy']:.2f} of their energy, under {KEPT_RATIO:g} x the "
            f"{history[0]['kept_energy']:.2f} of epoch 1 (the noise model was starting to explain the speech)")
    return summary
