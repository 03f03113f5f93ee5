# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae enhance``: unsupervised speech enhancement of one noisy recording with a DVAE speech prior and a
noise model (NMF or deep), fitted per utterance (U-NA), trained beforehand (U-ND) or both (U-NDA)."""

import argparse
import math
import warnings

import torch

from ..data.audio import AUDIO_EXTENSIONS
from .common import add_command, int_at_least, make_parent, set_threads

EXAMPLE = "pyro-dvae enhance noisy.wav --noise nmf --out enhanced.wav --ref clean.wav --out-json scores.json"
#: The shipped speech prior ``enhance`` uses without ``--prior``: LigHT-DVAE, with every noise model. With RVAE-VEM's
#: NMF noise, on the 16 dev utterances per band: mean SI-SDR gain +3.82 / +3.38 dB and ESTOI +0.067 / +0.043 at
#: 16 / 8 kHz, against the causal RVAE's +3.62 / +3.10 and +0.025 / +0.026. With the deep noise models (8 kHz):
#: LV U-NA +3.14 dB against the causal RVAE's +1.77; LV U-NDA +3.55 (16 kHz +3.76), above NMF's +3.38.
DEFAULT_PRIOR = "speech_light"


def add_parser(sub, parents):
    p = add_command(sub, "enhance", "unsupervised speech enhancement with a speech prior and a noise "
                                "model", EXAMPLE, parents)
    p.add_argument("noisy", help="the noisy speech (wav / flac / ogg); the output has its sample rate and length")
    p.add_argument("--prior",
                   help="spectral speech prior checkpoint or shipped name (e.g. speech_rvae); default: the shipped "
                        "16 kHz LigHT-DVAE (speech_light), what train-noise trains the U-ND noise models for")
    p.add_argument("--noise", required=True, choices=["nmf", "lv", "no", "nolv"], help="noise model")
    p.add_argument("--mode", default="una", choices=["una", "und", "unda"],
                   help="una: fit per utterance; und: trained noise model, one pass; unda: und then una "
                        "(nmf: una only)")
    p.add_argument("--noise-model", help="noise checkpoint written by train-noise (und / unda)")
    p.add_argument("--iters", type=int_at_least(1),
                   help="VEM iterations (nmf, default 15) or SVI steps (lv / no / nolv: una default 50, unda 100); "
                        "und runs no iterations")
    p.add_argument("--speech-shape", type=speech_shape, metavar="SHAPE",
                   help="the speech estimate's model: each bin's speech variance carries a Gamma(SHAPE, SHAPE) scale "
                        "(heavier-tailed speech for smaller SHAPE), integrated out given the bin's power; inf: "
                        "Gaussian speech, the Wiener filter of the fit (default: the dev-chosen value of "
                        "models.enhancement.DEFAULTS)")
    p.add_argument("--out", required=True, help="enhanced speech (.wav / .flac / .ogg)")
    p.add_argument("--ref", help="clean reference: print and store SI-SDR, PESQ wb/nb and ESTOI of output and input")
    p.set_defaults(run=run, outputs=[("out", "--out", AUDIO_EXTENSIONS)])
    return p


def speech_shape(text):
    """``--speech-shape``: a number > 0, or ``inf``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be a number > 0 or inf, got {text!r}")
    return value


def _check_options(args):
    if args.noise == "nmf" and args.mode != "una":
        raise ValueError(f"--noise nmf is fitted per utterance: use --mode una (--mode {args.mode} needs a deep noise "
                         "model lv / no / nolv trained by train-noise)")
    if args.mode == "una" and args.noise_model is not None:
        raise ValueError("--mode una fits a fresh noise model: --noise-model is for --mode und / unda")
    if args.mode != "una" and args.noise_model is None:
        raise ValueError(f"--mode {args.mode} needs --noise-model (a checkpoint written by pyro-dvae train-noise)")
    if args.mode == "und" and args.iters is not None:
        raise ValueError("--mode und is one forward pass of the trained noise model: drop --iters (or use "
                         "--mode unda to fit it further)")


def run(args):
    import numpy as np

    from .. import pretrained
    from ..data.audio import SAMPLE_RATE, load_audio
    from ..data.noisy import read_noisy, write_like
    from ..metrics import speech_scores
    from ..models.enhancement import enhance, load_speech_prior
    from ..noise import PriorMismatchError

    _check_options(args)
    set_threads(args.threads)
    noisy, rate, length = read_noisy(args.noisy)  # format, NaN, clipping (warns), silence and length checks
    ref = None
    if args.ref is not None:
        ref = load_audio(args.ref)
        if len(ref) != len(noisy):
            raise ValueError(f"--ref {args.ref}: {len(ref)} samples at {SAMPLE_RATE} Hz, the noisy input has "
                             f"{len(noisy)}")
        if not np.ptp(ref) > 0:
            warnings.warn(f"--ref {args.ref} is silent: every score against it is undefined (null in --out-json)",
                          stacklevel=2)
    defaulted = args.prior is None
    if defaulted:  # chosen on the dev utterances of the held-out protocol (README)
        args.prior = DEFAULT_PRIOR
    prior = load_speech_prior(pretrained.resolve(args.prior))
    try:
        out = enhance(noisy, prior, args.noise, args.mode, noise_checkpoint=args.noise_model, num_iters=args.iters,
                      seed=args.seed, speech_shape=args.speech_shape)
    except PriorMismatchError as e:
        if not defaulted:
            raise
        raise ValueError(f"{e}; without --prior, enhance uses the shipped {args.prior}: pass --prior with the "
                         "speech prior the noise model was trained for") from None
    make_parent(args.out)
    write_like(args.out, out.waveform, rate, length)
    summary = {"out": args.out, "prior": args.prior, "noise": args.noise, "mode": args.mode,
               "iters": out.info["num_iters"], "sample_rate": rate, "samples": length, "seconds": out.info["seconds"],
               "rtf": out.info["rtf"],
               "band_bins": out.info["band_bins"], "attempts": out.info["attempts"],
               "recovered": out.info["recovered"], "selected_iter": out.info["selected_iter"],
               "dictionary_quantile": out.info["dictionary_quantile"], "speech_shape": out.info["speech_shape"],
               "threads": torch.get_num_threads()}
    print(f"{args.noise}-{args.mode}: wrote {args.out} ({rate} Hz, {length} samples); {out.info['seconds']:.2f} s, "
          f"real-time factor {out.info['rtf']:.3f} (1 = as long as the audio)")
    if out.info["selected_iter"] is not None and args.noise != "nmf":
        print(f"the last step's speech estimate kept too little of the input's speech share (the noise model took "
              f"speech over): wrote the fit of step {out.info['selected_iter'] + 1} instead")
    if ref is not None:
        summary["output"] = {**speech_scores(out.waveform, ref, SAMPLE_RATE), "rtf": out.info["rtf"]}
        summary["input"] = {**speech_scores(noisy, ref, SAMPLE_RATE), "rtf": None}
        fmt = lambda v: "   n/a" if v is None else f"{v:6.2f}"  # noqa: E731
        print(f"{'':7s} {'SI-SDR':>6s} {'PESQwb':>6s} {'PESQnb':>6s} {'ESTOI':>6s}")
        for kind in ("output", "input"):
            m = summary[kind]
            print(f"{kind:7s} {fmt(m['si_sdr'])} {fmt(m['pesq_wb'])} {fmt(m['pesq_nb'])} {fmt(m['estoi'])}")
        print(f"scores at {SAMPLE_RATE} Hz against --ref; n/a: undefined for this signal or the package is absent")
    return summary
