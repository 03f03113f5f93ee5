# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae eval-prior``: speech analysis-resynthesis of every audio file of a folder with a spectral prior
(:mod:`pyro_dvae.resynthesis`), with RMSE, SI-SDR, PESQ and ESTOI per file and on average."""

import os
import warnings

import numpy as np
import torch

from .common import add_command, int_at_least, set_threads

EXAMPLE = "pyro-dvae eval-prior --prior speech.pt --data TEST_DIR --past gen --out-dir resynth --out-json scores.json"
METRICS = ("rmse", "si_sdr", "pesq_wb", "pesq_nb", "estoi")


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


def _write(path, est, rate, length):
    """Write ``est`` (16 kHz) like the input; scaled to just below full scale where it would clip (the scores do
    not depend on the level). Returns whether it was scaled."""
    from ..data.noisy import write_like

    peak = float(np.abs(est).max(initial=0.0))
    scaled = peak > 0.999
    if scaled:
        est = est * (0.999 / peak)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_like(path, est, rate, length)
    return scaled


def run(args):
    import soundfile as sf

    from .. import pretrained
    from ..data.audio import N_FFT, SAMPLE_RATE, audio_files, load_audio
    from ..priors import load_spectral
    from ..resynthesis import resynthesis_scores, resynthesize

    set_threads(args.threads)
    torch.manual_seed(args.seed)
    prior = load_spectral(pretrained.resolve(args.prior), task="eval-prior").eval()
    if not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data {args.data}: no such folder")
    files = audio_files(args.data)[: args.limit]
    if not files:
        raise ValueError(f"--data {args.data}: no audio files (wav / flac / ogg)")
    rows, skipped = [], []
    for k, path in enumerate(files):
        x = load_audio(path)
        if len(x) < N_FFT or not np.abs(x).max() > 0:
            skipped.append(path)
            warnings.warn(f"{path}: silent or shorter than one STFT frame, skipped", stacklevel=2)
            continue
        est, ref = resynthesize(prior, x, args.past, args.segment)
        row = {"file": os.path.relpath(path, args.data), **resynthesis_scores(est, ref, SAMPLE_RATE)}
        if args.out_dir:
            info = sf.info(path)
            out = os.path.join(args.out_dir, row["file"])
            row["out"], row["rescaled"] = out, _write(out, est * np.abs(x).max(), info.samplerate, info.frames)
        rows.append(row)
        print(f"[{k + 1}/{len(files)}] {row['file']}: SI-SDR {row['si_sdr']:.2f} dB")
    if not rows:
        raise ValueError(f"--data {args.data}: every audio file is silent or too short")
    mean = {}
    for m in METRICS:
        values = [r[m] for r in rows if r[m] is not None]
        mean[m] = float(np.mean(values)) if values else None
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    params = sum(p.numel() for p in prior.parameters())
    print(f"{prior.name} ({params} parameters), past {args.past}, {len(rows)} files: "
          + ", ".join(f"{m} {fmt(mean[m])}" for m in METRICS))
    return {"prior": args.prior, "model": prior.name, "parameters": params,
            "past": args.past, "segment": args.segment, "files": len(rows), "skipped": skipped, "mean": mean,
            "per_file": rows}
