# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae enhance``: unsupervised speech enhancement of one noisy recording with a DVAE speech prior and a
noise model (NMF or deep), fitted per utterance (U-NA), trained beforehand (U-ND) or both (U-NDA).

The options make an :class:`~pyro_dvae.models.enhancement.EnhanceConfig`; the run is
:func:`~pyro_dvae.models.enhancement.files.enhance_file` (checks, reading, the default prior, scores, the
summary); this module parses and prints."""

import argparse
import math

from ..data.audio import AUDIO_EXTENSIONS, SAMPLE_RATE
from .common import add_command, int_at_least

EXAMPLE = "pyro-dvae enhance noisy.wav --out enhanced.wav --ref clean.wav --out-json scores.json"


def __getattr__(name):
    if name == "DEFAULT_PRIOR":  # moved to the library (the CLI imports it lazily, for a fast --help)
        from ..models.enhancement.config import DEFAULT_PRIOR

        return DEFAULT_PRIOR
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_parser(sub, parents):
    p = add_command(sub, "enhance", "unsupervised speech enhancement with a speech prior and a noise "
                                "model", EXAMPLE, parents)
    p.add_argument("noisy", help="the noisy speech (wav / flac / ogg); the output has its sample rate and length")
    p.add_argument("--prior",
                   help="spectral speech prior checkpoint or shipped name (e.g. speech_light); default: the shipped "
                        "16 kHz causal RVAE (speech_rvae), what train-noise trains the U-ND noise models for")
    p.add_argument("--noise", choices=["nmf", "lv", "no", "nolv"],
                   help="noise model: nmf (W H per utterance), lv (from the speech latents), no (from the past noisy "
                        "frames), nolv (both) (default: no, chosen on the dev split; und / unda: the checkpoint's)")
    p.add_argument("--mode", default="una", choices=["una", "und", "unda"],
                   help="una: fit per utterance; und: trained noise model, one pass; unda: und then una "
                        "(nmf: una only)")
    p.add_argument("--noise-model", help="noise checkpoint written by train-noise (und / unda)")
    p.add_argument("--iters", type=int_at_least(1),
                   help="VEM iterations (nmf, default 15) or SVI steps (lv / no / nolv: una default 35, unda 100); "
                        "und runs no iterations")
    p.add_argument("--speech-shape", type=speech_shape, metavar="SHAPE",
                   help="the speech estimate's model: each bin's speech variance carries a Gamma(SHAPE, SHAPE) scale "
                        "(heavier-tailed speech for smaller SHAPE), integrated out given the bin's power; inf: "
                        "Gaussian speech, the Wiener filter of the fit (default: the noise kind's speech_shape in "
                        "models.enhancement.EnhanceConfig, chosen on the dev split)")
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


def run(args):
    from ..models.enhancement import EnhanceConfig
    from ..models.enhancement.files import enhance_file

    noise = args.noise if args.noise is not None or args.mode != "una" else EnhanceConfig.noise
    config = EnhanceConfig(noise=noise, mode=args.mode, noise_checkpoint=args.noise_model, num_iters=args.iters,
                           seed=args.seed, speech_shape=args.speech_shape)
    summary = enhance_file(args.noisy, args.out, args.ref, prior=args.prior, config=config)
    report(summary)
    return summary


def report(summary):
    """Print what :func:`~pyro_dvae.models.enhancement.files.enhance_file` did (its ``summary``)."""
    noise, mode, out = summary["noise"], summary["mode"], summary["out"]
    print(f"{noise}-{mode}: wrote {out} ({summary['sample_rate']} Hz, {summary['samples']} samples); "
          f"{summary['seconds']:.2f} s, real-time factor {summary['rtf']:.3f} (1 = as long as the audio)")
    if summary["selected_iter"] is not None and noise != "nmf":
        print(f"the last step's speech estimate kept too little of the input's speech share (the noise model took "
              f"speech over): wrote the fit of step {summary['selected_iter'] + 1} instead")
    if "output" in summary:
        fmt = lambda v: "   n/a" if v is None else f"{v:6.2f}"  # noqa: E731
        print(f"{'':7s} {'SI-SDR':>6s} {'PESQwb':>6s} {'PESQnb':>6s} {'ESTOI':>6s}")
        for kind in ("output", "input"):
            m = summary[kind]
            print(f"{kind:7s} {fmt(m['si_sdr'])} {fmt(m['pesq_wb'])} {fmt(m['pesq_nb'])} {fmt(m['estoi'])}")
        print(f"scores at {SAMPLE_RATE} Hz against --ref; n/a: undefined for this signal or the package is absent")
