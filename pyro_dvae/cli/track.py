# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae track``: MixDVAE multi-object tracking on MOTChallenge sequences (the MOT-3T protocol: N
identities picked from the ground truth per window).

The options make a :class:`~pyro_dvae.data.mot.WindowConfig` and a
:class:`~pyro_dvae.models.tracking.TrackingConfig`; the run is
:func:`~pyro_dvae.models.tracking.benchmark.track_windows_benchmark` (the files, the windows, the per-method runs,
the results table and the figures; its messages name these options); this module parses and prints."""

from .common import add_command, float_in, int_at_least

#: kept in step with pyro_dvae.models.tracking.METHODS (checked by a test), without importing the tracking model
#: for every command's parser
METHODS = ("mixdvae", "vkf", "deepar")
EXAMPLE = "pyro-dvae track --mot-dir ../shared/realdata/mot --seqs TUD-Stadtmitte --method mixdvae --method vkf"


def add_parser(sub, parents):
    from .. import inference

    p = add_command(sub, "track", "multi-object tracking on MOTChallenge sequences (MOT-3T windows)",
                    EXAMPLE, parents)
    at1 = int_at_least(1)
    p.add_argument("--mot-dir", required=True, help="folder of MOTChallenge sequences (<SEQ>/gt/gt.txt, det/)")
    p.add_argument("--seqs", nargs="+", help="sequence names (default: all in --mot-dir)")
    p.add_argument("--seq-len", type=int_at_least(2), default=60, help="frames per window")
    p.add_argument("--num-sources", type=at1, default=3, help="identities tracked per window")
    p.add_argument("--stride", type=at1, default=40, help="frames between window starts")
    p.add_argument("--combos", type=at1, default=20, help="random N-identity combinations per window")
    p.add_argument("--min-score", type=float_in(), help="drop detections scoring below this")
    p.add_argument("--det-file", default="det/det.txt", help="detections, relative to each sequence folder")
    p.add_argument("--second-half", action="store_true", help="only windows in the second half of each sequence")
    p.add_argument("--clutter", action="store_true", help="keep unmatched detections near the sources as clutter")
    p.add_argument("--clutter-prob", type=float_in(0.0, 1.0, high_open=True), default=0.1,
                   help="prior weight of the clutter class (with --clutter)")
    p.add_argument("--init-gt", action="store_true",
                   help="seed the sources with their first-frame ground-truth boxes (identity given at t=0)")
    p.add_argument("--prior", help="prior checkpoint or shipped name (default: srnn_mot, the shipped SRNN trajectory "
                                   "prior)")
    p.add_argument("--deepar-prior", help="Deep AR checkpoint or shipped name for --method deepar (default: the "
                                          "shipped deepar_mot)")
    p.add_argument("--method", action="append", choices=METHODS,
                   help="repeat to compare (default: all of " + ", ".join(METHODS) + ")")
    p.add_argument("--algo", default="vem", choices=inference.available(), help="MixDVAE inference algorithm")
    p.add_argument("--iters", type=at1, default=20, help="iterations per window")
    p.add_argument("--plot", metavar="DIR", help="folder for PNG figures of a few windows")
    p.set_defaults(run=run, outputs=[("plot", "--plot", "dir")])
    return p


def run(args):
    from ..data.mot import WindowConfig
    from ..models.tracking import TrackingConfig
    from ..models.tracking.benchmark import track_windows_benchmark

    windows = WindowConfig(seq_len=args.seq_len, num_sources=args.num_sources, stride=args.stride,
                           combos_per_window=args.combos, min_score=args.min_score, second_half=args.second_half,
                           clutter=args.clutter, seed=args.seed)
    config = TrackingConfig(algo=args.algo, num_iters=args.iters,
                            clutter_prob=args.clutter_prob if args.clutter else 0.0, seed=args.seed)
    return track_windows_benchmark(args.mot_dir, args.seqs, det_file=args.det_file, windows=windows,
                                   methods=args.method or METHODS, prior=args.prior or None,
                                   deepar=args.deepar_prior or None, init_gt=args.init_gt, config=config,
                                   plot=args.plot, log=print)
