# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae separate``: separate the sources of a single-channel mixture with spectral DVAE priors (MixDVAE)
or the IS-NMF / temporal-NMF baselines.

The command parses its options into a :class:`~pyro_dvae.models.separation.SeparateFileConfig`, checks that a
dictionaries file to be written can be, runs :func:`~pyro_dvae.models.separation.separate_file` (which does the
work and whose messages name these options) and prints its lines and score table."""

import os

from .common import add_command, check_out_path, chunk_frames, int_at_least

#: ``--method`` NMF baselines -> :func:`~pyro_dvae.models.separation.run_separation` methods.
SEPARATE_NMF = {"is-nmf": "is_nmf", "temporal-nmf": "temporal_nmf"}
#: How the library's messages name the inputs: by these options (:data:`~pyro_dvae.models.separation.files.LABELS`).
OPTIONS = {"priors": "--priors", "names": "--names", "refs": "--refs", "method": "--method",
           "nmf_train": "--nmf-train", "nmf_dicts": "--nmf-dicts", "nmf_rank": "--nmf-rank"}
EXAMPLE = ("pyro-dvae separate mix.wav --priors speech flute --out-dir sep --method mixdvae --method is-nmf "
           "--nmf-dicts nmf_speech_flute --refs speech.wav flute.wav")


def add_parser(sub, parents):
    from .. import inference

    p = add_command(sub, "separate", "separate the sources of a single-channel mixture with spectral "
                                 "priors (MixDVAE) or NMF baselines", EXAMPLE, parents)
    at1 = int_at_least(1)
    p.add_argument("mix", help="the mixture (wav / flac / ogg)")
    p.add_argument("--priors", nargs="+",
                   help="one spectral prior checkpoint per source (at least two); the file stems name the sources "
                        "(needed by --method mixdvae). Shipped: speech, flute (SRNN priors of 16 kHz speech and "
                        "flute)")
    p.add_argument("--names", nargs="+",
                   help="source names, in the order of the sources (default: the --priors file stems, which "
                        "these replace; needed without --priors, i.e. for NMF-only runs)")
    p.add_argument("--method", action="append", choices=["mixdvae", *SEPARATE_NMF],
                   help="default mixdvae; repeat to compare: each method then writes to <out-dir>/<method>/")
    p.add_argument("--out-dir", required=True,
                   help="folder for one <source>.wav per source (<out-dir>/<method>/<source>.wav with several "
                        "--method)")
    p.add_argument("--nmf-train", nargs="+", metavar="DIR",
                   help="NMF methods: one folder of training audio per source, in the order of the sources; "
                        "each source's IS-NMF dictionary is learnt from its files, each peak-normalised")
    p.add_argument("--nmf-dicts", metavar="PATH",
                   help="NMF dictionaries file: used instead of --nmf-train when it exists, else learnt from "
                        "--nmf-train and written there (so a series of mixtures learns them once). Shipped: "
                        "nmf_speech_flute (sources speech, flute; rank 64)")
    p.add_argument("--nmf-rank", type=at1, default=64, help="NMF components per source")
    p.add_argument("--nmf-max-frames", type=at1, default=20000,
                   help="frames per source the dictionaries learn from, drawn at random beyond this")
    p.add_argument("--nmf-iters", type=at1, default=100,
                   help="NMF updates, for learning each dictionary and for separating")
    p.add_argument("--iters", type=at1, default=30, help="MixDVAE VEM iterations (SVI steps with --algo svi)")
    p.add_argument("--algo", default="vem", choices=inference.available(), help="MixDVAE inference algorithm")
    p.add_argument("--chunk", type=chunk_frames, default=0,
                   help="separate in independent chunks of this many STFT frames run as one batch (faster on long "
                        "files, slightly worse); 0: the whole file at once")
    p.add_argument("--refs", nargs="+", help="reference sources, in the order of the sources: print and store scores")
    p.set_defaults(run=run, outputs=[("out_dir", "--out-dir", "dir")])
    return p


def run(args):
    from .. import pretrained
    from ..models.separation import NMFOptions, SeparateFileConfig, SeparationConfig, score_table, separate_file

    separation = SeparationConfig(algo=args.algo, num_iters=args.iters, chunk=args.chunk or None, seed=args.seed,
                                  nmf=NMFOptions(iters=args.nmf_iters))
    config = SeparateFileConfig(methods=tuple(args.method or ["mixdvae"]), nmf_train=args.nmf_train,
                                nmf_dicts=args.nmf_dicts, nmf_rank=args.nmf_rank,
                                nmf_max_frames=args.nmf_max_frames, separation=separation)
    dicts = pretrained.resolve(args.nmf_dicts)
    if dicts is not None and not os.path.exists(dicts) and any(m in SEPARATE_NMF for m in config.methods):
        check_out_path(dicts, "--nmf-dicts")  # learnt and written there: fail before any work
    summary = separate_file(args.mix, args.out_dir, args.priors, names=args.names, refs=args.refs, config=config,
                            labels=OPTIONS, log=print)
    for line in score_table(summary):
        print(line)
    return summary
