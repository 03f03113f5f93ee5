# SPDX-License-Identifier: Apache-2.0
"""MixDVAE single-channel audio source separation (SC-ASS): speech + flute, a Table-3-style comparison.

Trains one spectral DVAE prior per source kind (:func:`pyro_dvae.training.train_prior`) and one IS-NMF
dictionary per source kind on the same training audio, builds test mixtures from held-out audio (speech
split by speaker, flute by note) with the flute 10 dB above the speech (the MixDVAE SC-ASS setting), and
prints SI-SDR, RMSE, PESQ-wb and ESTOI per source for MixDVAE (VEM), IS-NMF, temporal NMF, the mixture
itself and the oracle binary / Wiener masks.

Usage::

    python examples/scass_mixdvae.py            # the shipped priors on held-out real mixtures (below), or SYNTHETIC
    python examples/scass_mixdvae.py --realdata ../shared/realdata --num-mixtures 8 --frames 50 100 300
    python examples/scass_mixdvae.py --synthetic   # SYNTHETIC speech-like and flute-like signals, about a minute
    python examples/scass_mixdvae.py --speech-dir ../shared/realdata/speech \\
        --music-dir ../shared/realdata/music/iowa_flute --pitch-shift -2 -1 0 1 2 --num-mixtures 20
    # the same with --dev: the test speakers / notes are left out and the training files split again, to
    # choose settings (the MixDVAE defaults here were chosen so) without looking at the test mixtures

Held-out flute notes are pitches no training note has, and neither a note-wise NMF dictionary nor a small
DVAE transfers to an unseen pitch; ``--pitch-shift`` adds copies of every *training* note resampled by these
semitones to the training audio of both the DVAE and the NMF dictionary (the test notes are never seen).

With no argument, the example looks for the shared real-data folder (``--realdata``, default
``../shared/realdata`` beside the checkout): when it is there, nothing is trained and the **shipped** speech and
flute priors and IS-NMF dictionaries (:mod:`pyro_dvae.pretrained`) separate mixtures of the *test* speakers and
*test* notes of :mod:`pyro_dvae.data.heldout` (which those priors and dictionaries never heard), flute 5 dB above
the speech, T = 100: BENCHMARKS.md's held-out table in small (about a minute). Without that folder it falls back
to the synthetic demo, which says so.

**References:**

[1] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for
    Multi-Source Trajectory Modeling and Separation", TMLR (Table 3: SC-ASS on WSJ0 + CBF flute).
[2] C. Fevotte, N. Bertin, J.-L. Durrieu (2009), "Nonnegative Matrix Factorization with the Itakura-Saito
    Divergence", Neural Computation 21(3); T. Virtanen (2007), "Monaural Sound Source Separation by
    Nonnegative Matrix Factorization with Temporal Continuity and Sparseness Criteria", IEEE TASLP 15(3).
"""

import argparse
import json
import math
import os
import time
import warnings

import numpy as np
import torch

from pyro_dvae import pretrained, priors
from pyro_dvae.data import audio, heldout
from pyro_dvae.data import mixtures as mx
from pyro_dvae.data.synthetic_audio import chromatic, flute_like, speech_like
from pyro_dvae.engine import threads
from pyro_dvae.metrics import score_sources
from pyro_dvae.models.separation import run_separation
from pyro_dvae.nmf import NMFSeparator
from pyro_dvae.nmf_dicts import load_nmf_dicts
from pyro_dvae.training import TrainConfig, train_prior

METHODS = ("mixdvae", "is_nmf", "temporal_nmf", "mixture", "oracle_ibm", "oracle_wiener")
REALDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "realdata")
SOURCES = ("speech", "flute")
SYNTHETIC_TRAIN = 8
METRICS = ("si_sdr", "rmse", "pesq_wb", "estoi")


pitch_shift = audio.pitch_shift  # resampling by 2^(k/12): shifts pitch and timbre together


def real_data(speech_dir, music_dir, seed, dev=False):
    """(train, test) signal lists per source from folders: speech split by speaker, music by note. With
    ``dev``, the test speakers and notes are left out altogether and the training files are split again (by
    speaker / note) into (train, dev): settings are chosen on the dev split, never on the test mixtures."""

    def identified(files, key, what):
        keep = []
        for f in files:
            try:
                key(f)
                keep.append(f)
            except ValueError:
                print(f"  skipped {f}: cannot tell its {what} from the name")
        return keep

    speech = identified(audio.audio_files(speech_dir), mx.speaker_id, "speaker")
    music = identified(audio.audio_files(music_dir), mx.note_id, "note")
    sp_train, sp_test = mx.speaker_split(speech, test_fraction=0.2, seed=seed)
    fl_train, fl_test = mx.note_split(music, test_fraction=0.2, seed=seed)
    held = "test"
    if dev:
        sp_train, sp_test = mx.speaker_split(sp_train, test_fraction=0.2, seed=seed + 1)
        fl_train, fl_test = mx.note_split(fl_train, test_fraction=0.2, seed=seed + 1)
        held = "DEV"
    load = lambda fs: [audio.load_audio(f) for f in fs]  # noqa: E731
    print(f"speech: {len(sp_train)} train / {len(sp_test)} {held} files (disjoint speakers); flute: {len(fl_train)} "
          f"train / {len(fl_test)} {held} notes (disjoint pitches)")
    return {"speech": (load(sp_train), load(sp_test)), "flute": (load(fl_train), load(fl_test))}


def synthetic_data(seed, num_train=SYNTHETIC_TRAIN):
    """SYNTHETIC stand-ins: speech-like "speakers" (disjoint between train and test) and flute-like melodies,
    ``num_train`` of each for training.

    On these signals MixDVAE stays behind IS-NMF: the synthetic talkers are made of exact harmonics, which NMF
    atoms model and the DVAE priors of this project (which model the spectral envelope) do not, so they are no
    fair stand-in for speech. Use real recordings (``--speech-dir`` / ``--music-dir``) or the held-out benchmark
    ``tests/benchmarks/audio_heldout.py`` (BENCHMARKS.md), where MixDVAE leads."""
    n = num_train + 2
    speakers = np.random.default_rng(seed).permutation(n)
    sp = [speech_like(6.0, seed=1000 * seed + int(k)) for k in speakers]
    fl = [flute_like(6.0, seed=1000 * seed + 500 + k, notes=chromatic()) for k in range(n)]
    print(f"SYNTHETIC data: {num_train} train / 2 test speech-like speakers, {num_train} train / 2 test flute-like "
          "melodies (same scale)")
    return {"speech": (sp[:num_train], sp[num_train:]), "flute": (fl[:num_train], fl[num_train:])}


def heldout_data(realdata):
    """Test speakers and test notes of :mod:`pyro_dvae.data.heldout` (never heard by the shipped priors), the
    notes joined into melodies as the held-out benchmark does (a note lasts about 2.5 s)."""
    sp = heldout.speech_split(os.path.join(realdata, "speech", "librispeech", "train-clean-100"))["test"]
    fl = heldout.note_split(os.path.join(realdata, "music", "iowa_flute"))["test"]
    print(f"real audio, held out: {len(sp)} files of unseen LibriSpeech speakers, {len(fl)} unseen flute notes; "
          "shipped priors and NMF dictionaries (nothing trained)")
    melodies = [mx.concatenate_notes(fl, 4, seed=k) for k in range(8)]
    return {"speech": ([], [audio.load_audio(f) for f in sp]), "flute": ([], melodies)}


def shipped_models(args):
    """The shipped speech and flute priors and rank-64 IS-NMF dictionaries."""
    prior_list = [priors.load_spectral(pretrained.path(n), task="separation").eval() for n in ("speech", "flute")]
    return prior_list, load_nmf_dicts(pretrained.path("nmf_speech_flute"), list(SOURCES), 64)


def train_source_prior(name, signals, args):
    if args.load_priors:  # priors saved by --save-priors from the same split (never a dev prior on test or back)
        path = os.path.join(args.load_priors, f"{name}.pt")
        split = priors.load_checkpoint(path).get("split")
        if split != args.split:
            raise SystemExit(f"{path} was trained for the {split!r} split, this run evaluates on {args.split!r}")
        print(f"  {name}: prior loaded from {path}")
        return priors.load_spectral(path, task="separation").eval()
    x = audio.power_chunks(signals, args.seq_len)
    if len(x) < 4:
        raise SystemExit(f"{name}: only {len(x)} non-silent chunks of {args.seq_len} frames; give more audio")
    seed = args.seed if args.prior_seed is None else args.prior_seed
    if args.prior_seed is not None:
        torch.manual_seed(seed)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = max(2, len(x) // 10)
    prior = priors.build(args.prior, x_dim=513, z_dim=args.z_dim, emission="spectral", dense_dim=args.dense_dim,
                         rnn_dim=args.rnn_dim, z_dense=[args.rnn_dim, args.z_dim * 2])
    e = args.epochs
    cfg = TrainConfig(epochs=e, batch_size=32, lr=2e-3, warmup_epochs=e // 4, ss_start=e // 4, ss_end=3 * e // 4,
                      ss_max=0.5, patience=e, seed=seed)
    t0 = time.perf_counter()
    res = train_prior(prior, x[perm[n_val:]], x[perm[:n_val]], cfg)
    print(f"  {name} {args.prior} prior: {len(x)} chunks, validation loss {res.history[0]['val_loss']:.0f} -> "
          f"{res.best_val:.0f} in {time.perf_counter() - t0:.0f} s")
    if args.save_priors:
        os.makedirs(args.save_priors, exist_ok=True)
        prior.save(os.path.join(args.save_priors, f"{name}.pt"), sample_rate=audio.SAMPLE_RATE, n_fft=audio.N_FFT,
                   hop=audio.HOP, split=args.split)
    return prior.eval()


def nmf_dictionaries(train, args):
    sep = NMFSeparator(rank=args.nmf_rank, iters=args.nmf_iters, alpha=args.nmf_alpha)
    for name in SOURCES:
        powers = [audio.stft(torch.as_tensor(x / np.abs(x).max(), dtype=torch.float32)).abs().pow(2).mT
                  for x in train[name] if np.abs(x).max() > 0 and len(x) > audio.N_FFT]
        sep.fit(name, powers)
    return sep


def evaluate(data, prior_list, sep, frames, args):
    mixes = mx.make_mixtures(data["speech"][1], data["flute"][1], args.num_mixtures, num_frames=frames,
                             smr_db=args.smr_db, seed=args.seed)
    table = {m: {s: {k: [] for k in METRICS} for s in SOURCES} for m in METHODS}
    seconds = []
    for mix in mixes:
        refs = np.stack([mix.sources["speech"], mix.sources["music"]])
        for method in METHODS:
            out = run_separation(mix.mix, prior_list, names=list(SOURCES), method=method, refs=refs, nmf=sep,
                                 num_iters=args.iters, nmf_iters=args.nmf_iters, seed=args.seed,
                                 **mixdvae_options(args))
            if method == "mixdvae":
                seconds.append(out.result.seconds_per_iter)
            pesq = False if args.no_pesq else None  # None: when the pesq package is installed
            scores = score_sources(out.waveforms, refs, SOURCES, audio.SAMPLE_RATE, pesq=pesq)
            for s in SOURCES:
                for k in METRICS:
                    table[method][s][k].append(scores[s][k])
    return table, float(np.mean(seconds))


def mixdvae_options(args):
    """The MixDVAE settings of :func:`run_separation` given on the command line."""
    return dict(init=args.init, mode=args.mode, noise_ratio=args.noise_ratio, sample_z=args.sample_z,
                average=args.average)


def mean(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def print_table(table, frames, n, seconds, synthetic):
    tag = "SYNTHETIC signals" if synthetic else "real audio"
    print(f"\nT = {frames} frames, {n} mixtures, {tag}; MixDVAE {seconds * 1000:.0f} ms per VEM iteration and mixture")
    cols = "  ".join(f"{s + ' ' + k:>14s}" for s in SOURCES for k in METRICS)
    print(f"{'method':14s}  {cols}")
    for method, row in table.items():
        cells = "  ".join("n/a".rjust(14) if mean(row[s][k]) is None else f"{mean(row[s][k]):14.3f}"
                          for s in SOURCES for k in METRICS)
        print(f"{method:14s}  {cells}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speech-dir", help="clean speech folder (LibriSpeech / CMU ARCTIC / VCTK file names)")
    p.add_argument("--music-dir", help="flute notes folder (University of Iowa file names)")
    p.add_argument("--realdata", default=REALDATA,
                   help="shared real-data folder for the default run with the shipped priors (default: %(default)s)")
    p.add_argument("--synthetic", action="store_true", help="the synthetic demo even when --realdata exists")
    p.add_argument("--prior", default="srnn", choices=[n for n in priors.available() if n != "deepar"])
    p.add_argument("--epochs", type=int, default=None, help="prior training epochs (default 100, synthetic 25)")
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--dense-dim", type=int, default=None, help="default 256 (synthetic 64)")
    p.add_argument("--rnn-dim", type=int, default=None, help="default 128 (synthetic 32)")
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument("--pitch-shift", type=float, nargs="+", default=[0.0],
                   help="semitone shifts of the training flute notes (both DVAE and NMF training data)")
    p.add_argument("--frames", type=int, nargs="+", default=None,
                   help="mixture lengths T in STFT frames (default 100 with the shipped priors, else 50 100)")
    p.add_argument("--num-mixtures", type=int, default=None,
                   help="test mixtures per T (default 10, synthetic 4, shipped priors 6)")
    p.add_argument("--smr-db", type=float, default=None,
                   help="speech-to-music ratio (default -5 with the shipped priors, as the held-out benchmark; "
                        "else -10, the MixDVAE setting)")
    p.add_argument("--iters", type=int, default=30, help="VEM iterations")
    p.add_argument("--init", default="equal", choices=["equal", "prior", "nmf"],
                   help="MixDVAE starting point (equal: q(w) = 1/2, as the reference)")
    p.add_argument("--mode", default="sequential", choices=["sequential", "parallel"],
                   help="MixDVAE E-S: decoder fed step by step, or teacher forced on the last iteration (faster)")
    p.add_argument("--noise-ratio", type=float, default=0.03, help="MixDVAE residual variance v_x / |o|^2")
    p.add_argument("--sample-z", action="store_true", help="E-Z draws z (default: the encoder's noiseless path)")
    p.add_argument("--average", type=int, default=0,
                   help="average the posterior source powers over the last K iterations (with --sample-z)")
    p.add_argument("--nmf-rank", type=int, default=64, help="NMF components per source (64: best of 16-128 on dev)")
    p.add_argument("--nmf-iters", type=int, default=100)
    p.add_argument("--nmf-alpha", type=float, default=1.0, help="temporal-continuity weight of temporal NMF")
    p.add_argument("--no-pesq", action="store_true", help="skip PESQ (slow)")
    p.add_argument("--save-priors", help="folder to save the trained priors (for `pyro-dvae separate`)")
    p.add_argument("--load-priors", help="folder of priors saved by --save-priors for the same split (no training)")
    p.add_argument("--dev", action="store_true",
                   help="real data: leave the test files out and evaluate on a dev split of the training files")
    p.add_argument("--seed", type=int, default=0, help="data split, mixtures, initialisation and training seed")
    p.add_argument("--prior-seed", type=int, help="another seed for the prior training only (default: --seed)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-json", help="write the tables as JSON")
    args = p.parse_args(argv)
    threads(args.threads)
    torch.manual_seed(args.seed)
    folders = bool(args.speech_dir or args.music_dir)
    if folders and not (args.speech_dir and args.music_dir):
        p.error("give both --speech-dir and --music-dir (or neither, for the shipped priors or the synthetic demo)")
    shipped = not folders and not args.synthetic and os.path.isdir(args.realdata)
    synthetic = not folders and not shipped
    if shipped and (args.save_priors or args.load_priors or args.dev):
        p.error("--save-priors / --load-priors / --dev train priors: give --speech-dir and --music-dir")
    if shipped:
        defaults = dict(num_mixtures=6, frames=[100], smr_db=-5.0)
    elif synthetic:
        defaults = dict(epochs=25, dense_dim=64, rnn_dim=32, num_mixtures=4, frames=[50, 100], smr_db=-10.0)
    else:
        defaults = dict(epochs=100, dense_dim=256, rnn_dim=128, num_mixtures=10, frames=[50, 100], smr_db=-10.0)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    t0 = time.perf_counter()
    if shipped:
        print("=" * 30 + " real audio, shipped priors " + "=" * 30)
        args.split = "test"
        data = heldout_data(args.realdata)
        prior_list, sep = shipped_models(args)
    else:
        if not folders and not args.synthetic:
            print(f"no real data at {args.realdata}: the SYNTHETIC demo (--realdata DIR for the real one)")
        print("=" * 30 + (" SYNTHETIC DATA (not speech, not music) " if synthetic else " real audio ") + "=" * 30)
        args.split = "dev" if args.dev else ("synthetic" if synthetic else "test")
        data = synthetic_data(args.seed) if synthetic else real_data(args.speech_dir, args.music_dir, args.seed,
                                                                      args.dev)
        train = {"speech": data["speech"][0],
                 "flute": [pitch_shift(x, k) for x in data["flute"][0] for k in args.pitch_shift]}
        print("training priors" + (f" (flute notes shifted by {args.pitch_shift} semitones)"
                                   if args.pitch_shift != [0.0] else ""))
        prior_list = [train_source_prior(name, train[name], args) for name in SOURCES]
        sep = nmf_dictionaries(train, args)
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystoi / PESQ chatter on short or non-speech signals
        for frames in args.frames:
            table, seconds = evaluate(data, prior_list, sep, frames, args)
            print_table(table, frames, args.num_mixtures, seconds, synthetic)
            results[frames] = {"seconds_per_iter": seconds,
                               "mean": {m: {s: {k: mean(v) for k, v in row[s].items()} for s in SOURCES}
                                        for m, row in table.items()}}
    print(f"\nSI-SDR / PESQ-wb / ESTOI: higher is better; RMSE: lower. n/a: PESQ not installed or undefined (music).\n"
          f"total {time.perf_counter() - t0:.0f} s" + ("  [SYNTHETIC DATA]" if synthetic else ""))
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump({"synthetic": synthetic, "args": vars(args), "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
