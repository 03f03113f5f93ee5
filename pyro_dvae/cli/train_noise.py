# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae train-noise``: train a deep noise model (U-ND) on a folder of noisy speech."""

import torch

from .common import FRACTION, POSITIVE, add_command, int_at_least, make_parent, set_threads
from .engine_options import add_engine_options, chunk_store, engine_from_args, remove_store

EXAMPLE = "pyro-dvae train-noise --noisy-dir NOISY_DIR --prior speech.pt --noise nolv --out nolv.pt"


def add_parser(sub, parents):
    p = add_command(sub, "train-noise", "train a deep noise model (U-ND) on a folder of noisy speech",
                    EXAMPLE, parents)
    at1 = int_at_least(1)
    p.add_argument("--noisy-dir", required=True, help="folder of noisy speech (wav / flac / ogg), no clean references")
    p.add_argument("--prior", default="speech_light",
                   help="the spectral speech prior the noise model is trained for (default: the shipped LigHT-DVAE, "
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
    from .. import pretrained
    from ..engine.ranks import is_rank_zero
    from ..models.enhancement import load_speech_prior
    from ..models.enhancement.training import KEPT_RATIO, train_noise

    set_threads(args.threads)
    torch.manual_seed(args.seed)
    prior = load_speech_prior(pretrained.resolve(args.prior))
    store, remove = chunk_store(args, args.noisy_dir, args.seq_len, option="--noisy-dir")
    train, val = store.split(args.val_fraction, args.seed)
    say = print if is_rank_zero() else (lambda *a, **k: None)
    say(f"{args.noise} noise model for {args.prior}: {len(train)} train / {len(val)} validation noisy chunks of "
        f"{args.seq_len} frames (noisy speech only, no clean reference)")
    make_parent(args.out)
    try:
        res = train_noise(prior, args.noise, train, val, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          patience=args.patience, seed=args.seed, out=args.out, progress=not args.quiet,
                          engine=engine_from_args(args), resume=args.resume)
    finally:
        if is_rank_zero():
            remove_store(store, remove)
    first = res.history[0]["val_loss"] if res.history else float("nan")
    say(f"validation loss (negative ELBO per TF bin): epoch 1 {first:.4f} -> best {res.best_val:.4f} at epoch "
        f"{res.best_epoch}; saved {args.out}")
    if res.stopped_on_speech:
        say(f"stopped after epoch {len(res.history)}: the speech estimate on the validation chunks kept "
            f"{res.history[-1]['kept_energy']:.2f} of their energy, under {KEPT_RATIO:g} x the "
            f"{res.history[0]['kept_energy']:.2f} of epoch 1 (the noise model was starting to explain the speech)")
    return {"noise": args.noise, "prior": args.prior, "out": args.out, "best_val_loss": res.best_val,
            "best_epoch": res.best_epoch, "epochs_run": len(res.history), "stopped_on_speech": res.stopped_on_speech,
            "history": res.history}
