# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae eval-prior``: speech analysis-resynthesis of every audio file of a folder with a spectral prior
(:mod:`pyro_dvae.resynthesis`), with RMSE, SI-SDR, PESQ and ESTOI per file and on average.

The run is :func:`~pyro_dvae.resynthesis.resynthesize_folder` (the prior, the files, the per-file loop, the written
files, the scores and the summary; its messages name these options); this module parses and prints."""

from .common import add_command, int_at_least

EXAMPLE = "pyro-dvae eval-prior --prior speech.pt --data TEST_DIR --past gen --out-dir resynth --out-json scores.json"


def add_parser(sub, parents):
    p = add_command(sub, "eval-prior", "analysis-resynthesis of a folder of speech with a spectral prior "
                                   "(RMSE, SI-SDR, PESQ, ESTOI)", EXAMPLE, parents)
    p.add_argument("--prior", required=True,
                   help="spectral prior checkpoint (train-prior on audio; shipped: speech, speech_rvae, flute)")
    p.add_argument("--data", required=True, help="folder of audio files (wav / flac / ogg, searched recursively)")
    p.add_argument("--past", default="gen", choices=["gen", "gt"],
                   help="the decoder's past: its own generated power (gen) or the input's (gt, teacher forcing)")
    p.add_argument("--segment", type=int_at_least(0), default=50,
                   help="frames per segment, each encoded and decoded on its own (the training chunk length); 0: "
                        "whole files")
    p.add_argument("--out-dir",
                   help="write each resynthesised file here under its path relative to --data (same name, sample "
                        "rate and length as the input)")
    p.add_argument("--limit", type=int_at_least(1), help="only the first N files (sorted by path)")
    p.set_defaults(run=run, outputs=[("out_dir", "--out-dir", "dir")])
    return p


def run(args):
    from ..resynthesis import resynthesize_folder

    return resynthesize_folder(args.prior, args.data, past=args.past, segment=args.segment, out_dir=args.out_dir,
                               limit=args.limit, seed=args.seed, log=print)
