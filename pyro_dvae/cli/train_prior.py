# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae train-prior``: pre-train a DVAE prior by SVI on synthetic trajectories or an audio folder."""

import argparse
import json
import time

import torch

from .common import FRACTION, POSITIVE, add_command, float_in, int_at_least, make_parent, set_threads
from .engine_options import add_engine_options, chunk_store, engine_from_args, remove_store

TRAJ_SIZES = {"z_dim": 4, "dense_dim": 32, "rnn_dim": 32, "z_dense": [32]}
SPEC_SIZES = {"z_dim": 16, "dense_dim": 256, "rnn_dim": 128, "z_dense": [64, 32]}
#: defaults per kind of data (an option left unset takes these).
TRAJ_TRAINING = {"epochs": 100, "batch_size": 256, "lr": 1e-3, "seq_len": 60}
AUDIO_TRAINING = {"epochs": 50, "batch_size": 64, "lr": 1e-3, "seq_len": 50}
EXAMPLE = "pyro-dvae train-prior --model rvae --data ../shared/realdata/speech --out speech.pt --gain-db -6 6"


def add_parser(sub, parents):
    from .. import priors

    p = add_command(sub, "train-prior", "pre-train a DVAE prior by SVI", EXAMPLE, parents)
    at1 = int_at_least(1)
    p.add_argument("--model", required=True, choices=priors.available(), help="the prior family")
    p.add_argument("--data", required=True,
                   help="'synthetic-trajectories' or a folder of wav/flac/ogg files (power-spectrum prior)")
    p.add_argument("--out", required=True, help="checkpoint path (.pt), rewritten after every epoch")
    p.add_argument("--epochs", type=at1, help=f"training epochs (default {TRAJ_TRAINING['epochs']} trajectories, "
                                             f"{AUDIO_TRAINING['epochs']} audio)")
    p.add_argument("--log-json", metavar="PATH", help="per-epoch train/validation log")
    p.add_argument("--resume", help="Lightning checkpoint written by train-prior beside --out (OUT.resume.ckpt) to "
                                    "continue from")
    p.add_argument("--seq-len", type=int_at_least(2),
                   help=f"frames per sequence (default {TRAJ_TRAINING['seq_len']} trajectories, "
                        f"{AUDIO_TRAINING['seq_len']} audio, 30 mdvae)")
    p.add_argument("--num-train", type=at1, default=20000, help="synthetic training tracks")
    p.add_argument("--num-val", type=at1, default=2000, help="synthetic validation tracks")
    p.add_argument("--frame-aspect", type=POSITIVE, nargs=2, metavar=("LOW", "HIGH"),
                   help="synthetic tracks: range of frame width/height (default: MixDVAE's 16:9 statistics)")
    p.add_argument("--speed-range", type=POSITIVE, nargs=2, default=[1.0, 1.0], metavar=("LOW", "HIGH"),
                   help="synthetic tracks: per-track speed factor range (log-uniform)")
    p.add_argument("--val-fraction", type=FRACTION, default=0.1, help="audio chunks held out for validation")
    p.add_argument("--batch-size", type=at1, help=f"sequences per step (default {TRAJ_TRAINING['batch_size']} "
                                                 f"trajectories, {AUDIO_TRAINING['batch_size']} audio)")
    p.add_argument("--lr", type=POSITIVE, help="Adam learning rate (default 1e-3)")
    p.add_argument("--beta", type=POSITIVE, default=1.0, help="final KL weight")
    p.add_argument("--warmup-epochs", type=int_at_least(0),
                   help="epochs of linear KL warm-up (default: the first 20 %% of --epochs)")
    p.add_argument("--ss-start", type=int_at_least(0),
                   help="epoch where scheduled sampling starts (default: the end of the warm-up)")
    p.add_argument("--ss-end", type=int_at_least(0),
                   help="epoch where it reaches --ss-max (default: 80 %% of --epochs)")
    p.add_argument("--ss-max", type=float_in(0.0, 1.0), default=1.0,
                   help="final probability of feeding the model its own prediction (scheduled sampling; 0: teacher "
                        "forcing, as the Transformer DVAEs' paper; 1 gave LigHT-DVAE 2 dB more resynthesis SI-SDR on "
                        "the dev speakers, README)")
    p.add_argument("--patience", type=at1, default=50, help="stop after this many epochs without a better "
                                                          "validation loss")
    p.add_argument("--z-dim", type=at1, help="latent size (default 4 trajectories, 16 audio)")
    p.add_argument("--dense-dim", type=at1, help="dense layer size (default 32 trajectories, 256 audio)")
    p.add_argument("--rnn-dim", type=at1, help="recurrent state size (default 32 trajectories, 128 audio)")
    p.add_argument("--z-dense", type=at1, nargs="+", help="latent MLP sizes (default 32 trajectories, 64 32 audio)")
    p.add_argument("--gain-db", type=float_in(-60.0, 60.0), nargs=2, default=[0.0, 0.0], metavar=("LOW", "HIGH"),
                   help="audio: random level change of each training chunk, uniform in dB, drawn at every step")
    p.add_argument("--pitch-shift", type=float_in(-24.0, 24.0), nargs="+", default=[0.0], metavar="SEMITONES",
                   help="audio: also train on every file shifted by these semitones (0 = the file itself), "
                        "e.g. -2 -1 0 1 2 for instrument notes")
    p.add_argument("--chunk-hop", type=at1,
                   help="audio: frames between the starts of training chunks (default --seq-len: no overlap)")
    p.add_argument("--no-residual", action="store_true",
                   help="trajectory priors: predict boxes directly instead of the change from the previous box")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE", type=model_option,
                   help="a further option of the prior family (priors.build), repeatable; VALUE read as JSON when "
                        "it parses (1.5, true, \"mean\"), else as text: e.g. --model-option w_pool=mean for mdvae")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_options(p)
    p.set_defaults(run=run, outputs=[("out", "--out", None), ("log_json", "--log-json", None)])
    return p


def model_option(text):
    """``KEY=VALUE`` of ``--model-option`` as ``(key, value)``."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a Python name, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def run(args):
    from .. import priors
    from ..data.audio import HOP, N_FFT, SAMPLE_RATE
    from ..engine.ranks import is_rank_zero
    from ..training import NORMALISATION_CHUNKS, TrainConfig, evaluate, train_prior

    set_threads(args.threads)
    torch.manual_seed(args.seed)
    audio_data = args.data != "synthetic-trajectories"
    if args.model == "mdvae" and args.seq_len is None:
        args.seq_len = 30  # the reference MDVAE's sequences
    for key, value in AUDIO_TRAINING.items():  # defaults that depend on the kind of data
        if getattr(args, key) is None:
            setattr(args, key, value if audio_data else TRAJ_TRAINING[key])
    if not audio_data and (args.gain_db != [0.0, 0.0] or args.pitch_shift != [0.0] or args.chunk_hop):
        raise ValueError("--gain-db, --pitch-shift and --chunk-hop are for audio folders (--data DIR)")
    if args.gain_db[0] > args.gain_db[1]:
        raise ValueError(f"--gain-db LOW HIGH: LOW must not exceed HIGH, got {args.gain_db[0]:g} {args.gain_db[1]:g}")
    store, remove = None, False
    if args.data == "synthetic-trajectories":
        from ..data import synthetic_trajectories
        from ..engine import TrajectoryStream

        kw = dict(frame_aspect=args.frame_aspect, speed_range=tuple(args.speed_range))
        train = TrajectoryStream(args.num_train, args.seq_len, seed=args.seed, **kw)  # new tracks every epoch
        val = torch.as_tensor(synthetic_trajectories(args.num_val, args.seq_len, seed=args.seed + 10_000, **kw))
        sizes, emission = dict(TRAJ_SIZES), "gaussian"
    else:
        if args.model == "mdvae" and args.chunk_hop:
            raise ValueError("--chunk-hop: MDVAE cuts each utterance into consecutive --seq-len chunks")
        kind = "audiovisual" if args.model == "mdvae" else "power"
        store, remove = chunk_store(args, args.data, args.seq_len, args.chunk_hop, args.pitch_shift, kind=kind)
        train, val = store.split(args.val_fraction, args.seed)
        sizes, emission = dict(SPEC_SIZES), "spectral"
    for key in ("z_dim", "dense_dim", "rnn_dim", "z_dense"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    z_dim = sizes.pop("z_dim")
    if not priors.prior_class(args.model).latent_sites:  # deepar: no latent variables
        if args.z_dim or args.z_dense:
            raise ValueError(f"--model {args.model} has no latent variables: drop --z-dim / --z-dense")
        z_dim = 0
        sizes.pop("z_dense")
    if emission == "gaussian" and priors.prior_class(args.model).autoregressive and not args.no_residual:
        sizes["residual"] = True  # motion priors predict the change from the previous box
    if args.model == "mdvae":  # audio + rendered faces (pyro_dvae.data.audiovisual); its own size defaults
        if not audio_data:
            raise ValueError("--model mdvae trains on a speech folder (--data DIR): the visual stream is rendered "
                             "from it (pyro_dvae.data.audiovisual)")
        mdvae = {k: getattr(args, k) for k in ("dense_dim", "rnn_dim") if getattr(args, k) is not None}
        prior = _build(priors, "mdvae", dict(z_dim=args.z_dim, **mdvae), args.model_option)
    else:
        prior = _build(priors, args.model, dict(x_dim=train.shape[-1], z_dim=z_dim, emission=emission, **sizes),
                       args.model_option)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, beta=args.beta,
                      warmup_epochs=args.warmup_epochs, ss_start=args.ss_start, ss_end=args.ss_end,
                      ss_max=args.ss_max, patience=args.patience, seed=args.seed, gain_db=tuple(args.gain_db))
    if args.resume is None:
        prior.fit_normalisation(train.tensor(NORMALISATION_CHUNKS))
    untrained = None if args.resume else evaluate(prior, val if torch.is_tensor(val) else val.tensor())
    feeding = ""
    if prior.autoregressive:
        feeding = (f", scheduled sampling epochs {cfg.ss_start}-{cfg.ss_end} up to {cfg.ss_max:g}" if cfg.ss_max > 0
                   else ", teacher forcing")
    engine = engine_from_args(args)
    say = print if is_rank_zero() else (lambda *a, **k: None)
    say(f"{args.model}: {len(train)} train / {len(val)} validation sequences of {train.shape[1]} steps, "
          f"x_dim={train.shape[-1]}, {sum(p.numel() for p in prior.parameters())} parameters; {cfg.epochs} epochs, "
          f"batch {cfg.batch_size}, lr {cfg.lr:g}, KL warm-up to epoch {cfg.warmup_epochs + 1}{feeding}; "
          f"{args.threads} thread(s) per process; {engine.accelerator}, {engine.devices * engine.num_nodes} "
          f"process(es){', chunks streamed from ' + store.folder if store is not None else ''}")
    t0 = time.perf_counter()
    extra = {} if emission == "gaussian" else {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP}
    if args.model == "mdvae":
        from ..data.audiovisual import SIZE

        extra["visual"] = {"generator": "pyro_dvae.data.audiovisual", "size": SIZE}
    for path in (args.out, args.log_json):
        if path is not None:
            make_parent(path)
    try:
        res = train_prior(prior, train, val, cfg, out=args.out, log_json=args.log_json, resume=args.resume,
                          progress=not args.quiet, checkpoint_extra=extra, engine=engine)
    finally:
        if is_rank_zero():
            remove_store(store, remove)
    seconds = time.perf_counter() - t0
    per_epoch = [row["seconds"] for row in res.history]
    summary = {"prior": args.model, "untrained_val_loss": untrained, "best_val_loss": res.best_val,
               "best_epoch": res.best_epoch, "epochs_run": len(res.history), "stopped_early": res.stopped_early,
               "skipped_steps": res.skipped_steps, "out": args.out, "train_sequences": len(train),
               "threads": args.threads, "processes": engine.devices * engine.num_nodes,
               "accelerator": engine.accelerator, "resume_checkpoint": f"{args.out}.resume.ckpt", "seconds": seconds,
               "seconds_per_epoch": sorted(per_epoch)[len(per_epoch) // 2] if per_epoch else None}
    start = "resumed" if untrained is None else f"untrained {untrained:.4f}"
    say(f"validation loss (negative ELBO per step): {start} -> best {res.best_val:.4f} "
          f"at epoch {res.best_epoch}; saved {args.out} ({seconds:.0f} s, median "
          f"{summary['seconds_per_epoch'] or 0:.1f} s per epoch)")
    return summary


def _build(priors, name, kwargs, options):
    """``priors.build`` with the ``--model-option`` pairs on top; a bad option is named in the error."""
    extra = dict(options)
    try:
        return priors.build(name, **{**kwargs, **extra})
    except (TypeError, ValueError) as e:
        if not extra:
            raise
        raise ValueError(f"--model-option {' '.join(f'{k}={v!r}' for k, v in extra.items())}: {e}") from None
