# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae track-mot``: whole-sequence multi-object tracking of MOTChallenge detection files (births and
deaths, any number of objects, MixDVAE refinement), written in the MOTChallenge result format and optionally
scored with TrackEval.

The options make a :class:`~pyro_dvae.models.mot_tracker.TrackerConfig` and the latency
(:func:`~pyro_dvae.models.mot_tracker.files.tracker_settings`, which refuses options that would be ignored); the run is
:func:`~pyro_dvae.models.mot_tracker.files.track_mot_folder` (the checked detection files, the per-sequence
tracking, the result files and the scores; its messages name these options); this module parses and prints."""

from .common import add_command, float_in, int_at_least

EXAMPLE = ("pyro-dvae track-mot --mot-dir ../shared/realdata/mot17 --val-half --out-dir results --eval "
           "--out-json track.json")


def add_parser(sub, parents):
    p = add_command(sub, "track-mot", "track whole MOTChallenge sequences from their detection files "
                                  "(births, deaths, MixDVAE refinement)", EXAMPLE, parents)
    p.add_argument("--mot-dir", required=True, help="folder of MOTChallenge sequences (<SEQ>/seqinfo.ini, det/)")
    p.add_argument("--seqs", nargs="+", help="sequence names (default: all in --mot-dir)")
    p.add_argument("--det-file", default="det/det.txt",
                   help="detections (frame, -1, x, y, w, h, score, ...; scores in [0, 1]), relative to each "
                        "sequence folder")
    p.add_argument("--val-half", action="store_true",
                   help="track and score only frames N//2+2..N (the MOT17 protocol with detectors trained on the "
                        "first half)")
    p.add_argument("--out-dir", required=True, help="folder for one <SEQ>.txt result file per sequence")
    p.add_argument("--prior", help="DVAE trajectory prior for the refinement: checkpoint or shipped name (default: "
                                   "srnn_mot_real, the SRNN trained on real pedestrian tracks)")
    p.add_argument("--online", action="store_true", help="online mode: a box for frame t is final at t + --latency")
    p.add_argument("--latency", type=int_at_least(1), help="frames of latency (needs --online; default: 30)")
    p.add_argument("--no-refine", action="store_true",
                   help="association only (no MixDVAE refinement; takes none of --prior, --dynamics, --window, "
                        "--iters, --latents, --smoother, --velocity-scale, --camera)")
    p.add_argument("--dynamics", choices=["dvae", "cv"],
                   help="refinement dynamics: the DVAE prior (MixDVAE) or constant velocity (the VKF baseline) "
                        "(default: dvae)")
    p.add_argument("--latents", choices=["prior", "posterior"],
                   help="where the DVAE refinement takes its latent path z from: the prior's conditionals along the "
                        "track (its dynamics read only the past: a learned one-step forecast weighed against the "
                        "detections) or the encoder's posterior (MixDVAE; it reads every step, noise included) "
                        "(default: prior)")
    p.add_argument("--smoother", choices=["velocity", "parallel"],
                   help="the DVAE refinement's smoother: constant velocity steered by the prior's one-step "
                        "displacement, taken as an observation of the velocity (velocity), or MixDVAE's chain, whose "
                        "positions follow the prior's drift (parallel) (default: velocity)")
    p.add_argument("--velocity-scale", type=float_in(0.0, low_open=True),
                   help="--smoother velocity: the factor on the prior's variance that gives the variance of its "
                        "velocity observation; larger trusts the prior less (a huge value is constant velocity with "
                        "the acceleration noise fitted by EM) (default: 5)")
    p.add_argument("--camera", choices=["scene", "off"],
                   help="--smoother velocity: let the prior read each track relative to the image motion common to "
                        "the tracks of each frame (scene: for moving cameras) or as it is (off) (default: off)")
    p.add_argument("--relink", choices=["dvae", "cv", "off"],
                   help="join a track that ended to one born later, forecasting with the DVAE prior or constant "
                        "velocity; offline only (default: off)")
    p.add_argument("--predict", choices=["dvae", "cv"],
                   help="the box a lost track (undetected for more than a frame) is matched with: a forecast of the "
                        "DVAE prior or its constant-velocity Kalman prediction (default: cv)")
    p.add_argument("--window", type=int_at_least(2), help="frames per refinement window (default: 60)")
    p.add_argument("--iters", type=int_at_least(1), help="VEM iterations per refinement window (default: 10)")
    p.add_argument("--eval", action="store_true",
                   help="score against <SEQ>/gt/gt.txt with TrackEval (HOTA, MOTA, IDF1; needs the 'eval' extra)")
    p.set_defaults(run=run, outputs=[("out_dir", "--out-dir", "dir")])
    return p


def run(args):
    from ..models.mot_tracker.files import TRACKER_OPTIONS, track_mot_folder, tracker_settings

    config, latency = tracker_settings(no_refine=args.no_refine, online=args.online, latency=args.latency,
                                       prior=args.prior or None,
                                       **{name: getattr(args, name) for name in TRACKER_OPTIONS})
    return track_mot_folder(args.mot_dir, args.out_dir, args.seqs, det_file=args.det_file, val_half=args.val_half,
                            prior=args.prior or None, latency=latency, seed=args.seed, config=config,
                            evaluate=args.eval, log=print)
