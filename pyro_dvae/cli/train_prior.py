# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae train-prior``: pre-train a DVAE prior by SVI on synthetic trajectories, real pedestrian tracks or an
audio folder.

The options make a :class:`~pyro_dvae.training_run.PriorTrainSpec`; the run is
:func:`~pyro_dvae.training_run.train_prior_from_spec` (per-data defaults, the checks of the options against each
other, the data, the prior, the training, the summary; its messages name these options); this module parses and
prints."""

import argparse
import json

from ..presets import AUDIO_TRAINING, MDVAE_SEQ_LEN, TRAJ_TRAINING
from ..training import SS_MODES
from .common import FRACTION, POSITIVE, add_command, float_in, int_at_least
from .engine_options import add_engine_options, engine_from_args

EXAMPLE = "pyro-dvae train-prior --model rvae --data ../shared/realdata/speech --out speech.pt --gain-db -6 6"
#: the options that are fields of :class:`~pyro_dvae.training.TrainConfig` (unset: the per-data default)
TRAINING_KEYS = ("epochs", "batch_size", "lr", "beta", "warmup_epochs", "ss_start", "ss_end", "ss_max", "patience",
                 "gain_db", "ss_mode", "val_ss_prob")


def add_parser(sub, parents):
    from .. import priors

    p = add_command(sub, "train-prior", "pre-train a DVAE prior by SVI", EXAMPLE, parents)
    at1 = int_at_least(1)
    p.add_argument("--model", required=True, choices=priors.available(), help="the prior family")
    p.add_argument("--data", required=True,
                   help="'synthetic-trajectories', 'mot-tracks' (the pedestrian tracks of the MOTChallenge ground "
                        "truth in --realdata: pyro_dvae.data.tracks) or a folder of wav/flac/ogg files (power-spectrum "
                        "prior)")
    p.add_argument("--out", required=True, help="checkpoint path (.pt), rewritten after every epoch")
    p.add_argument("--epochs", type=at1, help=f"training epochs (default {TRAJ_TRAINING['epochs']} trajectories, "
                                             f"{AUDIO_TRAINING['epochs']} audio)")
    p.add_argument("--log-json", metavar="PATH", help="per-epoch train/validation log")
    p.add_argument("--resume", help="Lightning checkpoint written by train-prior beside --out (OUT.resume.ckpt) to "
                                    "continue from")
    p.add_argument("--seq-len", type=int_at_least(2),
                   help=f"frames per sequence (default {TRAJ_TRAINING['seq_len']} trajectories, "
                        f"{AUDIO_TRAINING['seq_len']} audio, {MDVAE_SEQ_LEN} mdvae)")
    p.add_argument("--num-train", type=at1, default=20000, help="synthetic training tracks")
    p.add_argument("--num-val", type=at1, default=2000, help="synthetic validation tracks")
    p.add_argument("--frame-aspect", type=POSITIVE, nargs=2, metavar=("LOW", "HIGH"),
                   help="synthetic tracks: range of frame width/height (default: MixDVAE's 16:9 statistics)")
    p.add_argument("--speed-range", type=POSITIVE, nargs=2, default=[1.0, 1.0], metavar=("LOW", "HIGH"),
                   help="synthetic tracks: per-track speed factor range (log-uniform)")
    add_track_options(p)
    p.add_argument("--val-fraction", type=FRACTION, default=0.1, help="audio chunks held out for validation")
    p.add_argument("--batch-size", type=at1, help=f"sequences per step (default {TRAJ_TRAINING['batch_size']} "
                                                 f"trajectories, {AUDIO_TRAINING['batch_size']} audio)")
    p.add_argument("--lr", type=POSITIVE, help="Adam learning rate (default 1e-3)")
    p.add_argument("--beta", type=POSITIVE, help=f"final KL weight (default {TRAJ_TRAINING['beta']:g} trajectories, "
                                                 f"{AUDIO_TRAINING['beta']:g} audio)")
    p.add_argument("--warmup-epochs", type=int_at_least(0),
                   help="epochs of linear KL warm-up (default: the first 20 %% of --epochs)")
    p.add_argument("--ss-start", type=int_at_least(0),
                   help="epoch where scheduled sampling starts (default: the end of the warm-up)")
    p.add_argument("--ss-end", type=int_at_least(0),
                   help="epoch where it reaches --ss-max (default: 80 %% of --epochs)")
    p.add_argument("--ss-max", type=float_in(0.0, 1.0), default=1.0,
                   help="final probability of feeding the model its own prediction (scheduled sampling; 0: teacher "
                        "forcing, as the Transformer DVAEs' paper; the default was chosen on the dev speakers, "
                        "BENCHMARKS.md)")
    p.add_argument("--ss-mode", choices=SS_MODES, default="parallel",
                   help="scheduled sampling: teacher-forced one-step predictions (parallel) or the decoder run step "
                        "by step on the inputs it chose (sequential: its free-running past at --ss-max 1; slower)")
    p.add_argument("--val-ss-prob", type=float_in(0.0, 1.0), default=0.0,
                   help="validation loss with this scheduled-sampling probability (--ss-mode), so that early "
                        "stopping and the kept weights follow the free-running decoder (0: teacher forcing)")
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
    p.add_argument("--init", metavar="PRIOR",
                   help="start from this prior checkpoint or shipped name (its weights, sizes and normalisation; a "
                        "new run: fine-tuning, e.g. with another --ss-mode or data); its family must be --model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_options(p)
    p.set_defaults(run=run, outputs=[("out", "--out", None), ("log_json", "--log-json", None)])
    return p


def add_track_options(p):
    from ..data.tracks import MOT15_SEQUENCES

    p.add_argument("--realdata", metavar="DIR",
                   help="mot-tracks: the shared real-data folder (mot17/, mot/; default ../shared/realdata)")
    p.add_argument("--holdout", choices=MOT15_SEQUENCES,
                   help="mot-tracks: leave this MOT15 sequence out of training (MOT17 trains on its first halves)")
    p.add_argument("--synthetic-fraction", type=float_in(0.0, 0.99), metavar="F",
                   help="mot-tracks: expected fraction of each batch drawn from synthetic trajectories (default 0)")


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
    from ..presets import SIZE_KEYS
    from ..training import TrainFiles
    from ..training_run import AudioChunks, PriorTrainSpec, RealTracks, SyntheticTracks, train_prior_from_spec

    tracks = {key: value for key, value in (("realdata", args.realdata), ("holdout", args.holdout),
                                            ("synthetic_fraction", args.synthetic_fraction)) if value is not None}
    spec = PriorTrainSpec(
        model=args.model, data=args.data, seq_len=args.seq_len, sizes={key: getattr(args, key) for key in SIZE_KEYS},
        residual=not args.no_residual, model_options=dict(args.model_option), seed=args.seed,
        training={key: getattr(args, key) for key in TRAINING_KEYS},
        files=TrainFiles(out=args.out, log_json=args.log_json, resume=args.resume),
        synthetic=SyntheticTracks(num_train=args.num_train, num_val=args.num_val, frame_aspect=args.frame_aspect,
                                  speed_range=tuple(args.speed_range)),
        audio=AudioChunks(pitch_shift=tuple(args.pitch_shift), chunk_hop=args.chunk_hop,
                          val_fraction=args.val_fraction, cache=args.chunk_cache),
        tracks=RealTracks(**tracks) if tracks else None, init=args.init)
    return train_prior_from_spec(spec, engine=engine_from_args(args), progress=not args.quiet, log=print)
