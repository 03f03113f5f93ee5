# SPDX-License-Identifier: Apache-2.0
"""Unsupervised speech enhancement: a DVAE speech prior with NMF and deep (LV, NO, NOLV) noise models, in the
three modes U-NA (per-utterance fitting), U-ND (trained once on noisy speech) and U-NDA (U-ND, then U-NA).

Trains a causal RVAE speech prior on clean training speech (overlapping 50-frame chunks, +-6 dB level
augmentation), the deep noise models on *noisy* training speech only (training speakers mixed with the training
part of each noise recording at SNRs drawn in [-5, 10] dB; no clean reference is used), builds test
utterances from held-out speakers (one utterance each, its loudest ``--seconds``) and held-out noise segments
at 0 and 5 dB, and prints SI-SDR, PESQ (wide and narrow band), ESTOI and the real-time factor of every noise
model x mode next to the noisy input. Real data are split three ways, by speaker and in time for the noise
(train: first 60 % of each recording; dev: next 20 %; test: last 20 %): ``--eval-split dev`` evaluates on the
dev speakers and segments (for choosing settings), the default on the test ones; the trainings are identical.

Usage::

    python examples/speech_enhancement.py                      # SYNTHETIC signals, about 2 minutes on 2 cores
    python examples/speech_enhancement.py --speech-dir ../shared/realdata/speech \
        --noise-dir ../shared/realdata/noise --out-json se.json  # about 11 minutes on 1 thread

``--workers N`` runs the enhancements in N processes of one thread each (the RTF column stays per thread).
With no data folder the signals are synthetic (:func:`pyro_dvae.data.synthetic_audio.speech_like` talkers;
``hum``, ``tones`` and ``modulated`` noises from :func:`pyro_dvae.data.noisy.synthetic_noise`) and the table
says SYNTHETIC: the numbers show the pipeline works, not how well it enhances real speech.

**References:**

[1] X. Bie, S. Leglaive, X. Alameda-Pineda, L. Girin (2022), "Unsupervised Speech Enhancement Using Dynamical
    Variational Autoencoders", IEEE/ACM TASLP 30.
[2] X. Lin, S. Leglaive, L. Girin, X. Alameda-Pineda (2023), "Unsupervised Speech Enhancement with Deep
    Dynamical Generative Speech and Noise Models", Interspeech.
"""

import argparse
import json
import math
import os
import time
import warnings

import numpy as np
import torch

from pyro_dvae import priors
from pyro_dvae.data import audio, heldout
from pyro_dvae.data import mixtures as mx
from pyro_dvae.data.noisy import mix_at_snr, split_noise, synthetic_noise
from pyro_dvae.data.synthetic_audio import speech_like
from pyro_dvae.engine import threads
from pyro_dvae.metrics import speech_scores
from pyro_dvae.training import TrainConfig, train_prior

DEEP = ("lv", "no", "nolv")
METHODS = (("nmf", "una"),) + tuple((n, m) for n in DEEP for m in ("una", "und", "unda"))
FRONT_END = {"sample_rate": audio.SAMPLE_RATE, "n_fft": audio.N_FFT, "hop": audio.HOP}
SYNTHETIC_NOISES = ("hum", "tones", "modulated")


# ------------------------------------------------------------------------------------------------ data
def real_data(speech_dir, noise_dir, seed, test_fraction, dev_fraction=0.0, split="test"):
    """Clean speech split by speaker into train / dev / test, noise recordings split in time the same way
    (train: the start, dev: the next ``dev_fraction``, test: the last ``test_fraction``).

    The models are trained on the train parts only, whatever ``split`` is evaluated, so settings chosen on
    the dev speakers and dev noise segments are then run unchanged on the test ones."""
    files = []
    for f in audio.audio_files(speech_dir):
        try:
            mx.speaker_id(f)
            files.append(f)
        except ValueError:
            print(f"  skipped {os.path.relpath(f, speech_dir)}: cannot tell its speaker from the name")
    train_f, test_f = mx.speaker_split(files, test_fraction=test_fraction, seed=seed)
    dev_f = []
    if dev_fraction > 0:
        train_f, dev_f = mx.speaker_split(train_f, test_fraction=dev_fraction, seed=seed + 1)
    if split == "dev" and not dev_f:
        raise SystemExit("--eval-split dev needs --dev-fraction > 0")
    eval_f = dev_f if split == "dev" else test_f
    first = {}
    for f in eval_f:  # one utterance per held-out speaker
        first.setdefault(mx.speaker_id(f), f)
    eval_f = [first[k] for k in sorted(first)]
    noises = {os.path.splitext(os.path.basename(f))[0]: audio.load_audio(f) for f in audio.audio_files(noise_dir)}
    if not noises:
        raise SystemExit(f"{noise_dir}: no noise recording found")
    held = test_fraction + dev_fraction
    print(f"speech: {len(train_f)} train files / {len(dev_f)} dev files / {len(test_f)} test files, "
          f"split by speaker; evaluating on the {len(eval_f)} {split} speakers (one utterance each); "
          f"noise: {', '.join(noises)} (train: first {100 * (1 - held):.0f} %, dev: next {100 * dev_fraction:.0f} %, "
          f"test: last {100 * test_fraction:.0f} % of each)")

    def noise_parts(x):
        train, rest = split_noise(x, held)
        dev, test = split_noise(rest, test_fraction / held) if dev_fraction > 0 else (None, rest)
        return train, dev if split == "dev" else test

    load = lambda fs: [audio.load_audio(f) for f in fs]  # noqa: E731
    return load(train_f), load(eval_f), {k: noise_parts(v) for k, v in noises.items()}


def synthetic_data(seed, train_seconds, num_test, seconds):
    print("SYNTHETIC data: speech-like signals (one synthetic 'speaker' per seed) and synthetic noises")
    train = [speech_like(train_seconds, seed=seed + k) for k in range(8)]
    test = [speech_like(seconds + 0.5, seed=seed + 1000 + k) for k in range(num_test)]
    noises = {kind: split_noise(synthetic_noise(kind, 40.0, seed=seed + i), 0.3)
              for i, kind in enumerate(SYNTHETIC_NOISES)}
    return train, test, noises


def noisy_training_set(speech, noises, rng, pairings, snr_range):
    """Noisy training utterances: each training utterance mixed with ``pairings`` random training-noise
    segments at SNRs drawn uniformly in ``snr_range`` (the clean signals are not kept)."""
    out = []
    kinds = sorted(noises)
    for s in speech:
        for _ in range(pairings):
            noise = noises[kinds[rng.integers(len(kinds))]][0]
            seg = s[: len(noise)]
            off = int(rng.integers(len(noise) - len(seg) + 1))
            noisy, _ = mix_at_snr(seg, noise, rng.uniform(*snr_range), off)
            out.append(noisy)
    return out


def test_set(speech, noises, snrs, seconds, seed):
    """``[(name, snr, clean, noisy)]``: held-out speech x held-out noise segments (noise types cycled)."""
    rng = np.random.default_rng(seed + 7)
    need = int(seconds * audio.SAMPLE_RATE)
    kinds, items = sorted(k for k in noises if len(noises[k][1]) >= need), []
    short = sorted(set(noises) - set(kinds))
    if short:
        print(f"noise used for training only (held-out part shorter than {seconds:g} s): {', '.join(short)}")
    if not kinds:
        raise SystemExit(f"no noise recording has a held-out part of {seconds:g} s")
    for i, s in enumerate(speech):
        clean = heldout.active_segment(s, seconds)
        clean = clean / np.abs(clean).max() * 0.5
        for j, snr in enumerate(snrs):
            kind = kinds[(i + j) % len(kinds)]
            noise = noises[kind][1]
            off = int(rng.integers(len(noise) - len(clean) + 1))
            noisy, _ = mix_at_snr(clean, noise, snr, off)
            items.append((f"utt{i}-{kind}", snr, clean, noisy))
    return items


# ------------------------------------------------------------------------------------------------ training
def speech_chunks(signals, seq_len=50, hop=50, gain_db=0.0, seed=0, silence_db=30.0):
    """Power chunks ``(N, seq_len, F)`` of peak-normalised signals, starting every ``hop`` frames (overlapping
    when ``hop < seq_len``); chunks more than ``silence_db`` below the signal's loudest are dropped, and each
    chunk's level is moved by a random gain uniform in ``[-gain_db, gain_db]`` dB (level augmentation)."""
    rng = torch.Generator().manual_seed(seed)
    out = []
    for x in signals:
        x = np.asarray(x, dtype=np.float64)
        if len(x) < audio.N_FFT or not np.abs(x).max() > 0:
            continue
        pw = audio.stft(torch.tensor(x / np.abs(x).max(), dtype=torch.float32)).abs() ** 2
        starts = range(0, pw.shape[0] - seq_len + 1, hop)
        if not len(starts):
            continue
        c = torch.stack([pw[t:t + seq_len] for t in starts])
        level = c.mean((1, 2))
        out.append(c[level >= level.max() * 10 ** (-silence_db / 10)])
    chunks = torch.cat(out)
    if gain_db > 0:
        chunks = chunks * 10 ** ((torch.rand(len(chunks), 1, 1, generator=rng) * 2 - 1) * gain_db / 10)
    return chunks


def train_speech_prior(train, out, args):
    chunks = speech_chunks(train, 50, args.chunk_hop, args.gain_db, args.seed)
    perm = torch.randperm(len(chunks), generator=torch.Generator().manual_seed(args.seed))
    n_val = max(1, len(chunks) // 10)
    sizes = {"z_dim": 16, "dense_dim": args.dense_dim, "rnn_dim": args.rnn_dim, "z_dense": [64, 32]}
    prior = priors.build("rvae", x_dim=chunks.shape[-1], emission="spectral", **sizes)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=2e-3, beta=args.beta,
                      warmup_epochs=max(1, args.epochs // 5), patience=max(5, args.epochs // 4), seed=args.seed)
    t0 = time.perf_counter()
    res = train_prior(prior, chunks[perm[n_val:]], chunks[perm[:n_val]], cfg, out=out, device=args.device,
                      checkpoint_extra=FRONT_END)
    print(f"speech prior (causal RVAE): {len(chunks) - n_val} train / {n_val} val chunks of 50 frames, "
          f"best val {res.best_val:.3f} at epoch {res.best_epoch}, {time.perf_counter() - t0:.0f} s")
    return prior.cpu()


def train_noise_models(prior, noisy_train, out_dir, args):
    from pyro_dvae.models.enhancement.training import train_noise

    chunks = audio.power_chunks(noisy_train, seq_len=args.noise_seq_len)
    perm = torch.randperm(len(chunks), generator=torch.Generator().manual_seed(args.seed))
    n_val = max(1, len(chunks) // 10)
    paths = {}
    for name in DEEP:
        t0 = time.perf_counter()
        path = os.path.join(out_dir, f"noise_{name}.pt")
        res = train_noise(prior, name, chunks[perm[n_val:]], chunks[perm[:n_val]], epochs=args.noise_epochs,
                          batch_size=16, lr=args.noise_lr, patience=max(3, args.noise_epochs // 3), seed=args.seed,
                          out=path, device=args.device, **FRONT_END)
        paths[name] = path
        print(f"U-ND {name}: {len(chunks) - n_val} noisy chunks of {args.noise_seq_len} frames, val loss "
              f"{res.history[0]['val_loss']:.4f} -> {res.best_val:.4f} (epoch {res.best_epoch}), "
              f"{time.perf_counter() - t0:.0f} s")
    return paths


# ------------------------------------------------------------------------------------------------ evaluation
def _job(job):
    """One enhancement (run in a worker process with one thread)."""
    from pyro_dvae.models.enhancement import enhance

    threads(1)
    prior_path, noise_paths, (noise, mode), (name, snr, clean, noisy), opts = job
    prior = priors.load(prior_path).eval()
    if noise is None:
        return name, snr, "noisy", speech_scores(noisy, clean, audio.SAMPLE_RATE), 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = enhance(noisy, prior, noise, mode, noise_checkpoint=noise_paths.get(noise) if mode != "una" else None,
                      num_iters=opts["iters_nmf"] if noise == "nmf" else opts["iters"], seed=opts["seed"])
    return name, snr, f"{noise}-{mode}", speech_scores(out.waveform, clean, audio.SAMPLE_RATE), out.info["rtf"]


def evaluate(prior_path, noise_paths, items, args):
    opts = {"iters": args.iters, "iters_nmf": args.iters_nmf, "seed": args.seed}
    jobs = [(prior_path, noise_paths, m, it, opts) for it in items for m in ((None, None),) + METHODS]
    if args.workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.workers) as pool:
            rows = pool.map(_job, jobs, chunksize=1)
    else:
        rows = [_job(j) for j in jobs]
    return rows


def table(rows, snrs, label):
    methods = ["noisy"] + [f"{n}-{m}" for n, m in METHODS]
    keys = ("si_sdr", "pesq_wb", "pesq_nb", "estoi")
    summary = {}
    for meth in methods:
        summary[meth] = {}
        for snr in list(snrs) + ["all"]:
            sel = [r for r in rows if r[2] == meth and (snr == "all" or r[1] == snr)]
            summary[meth][str(snr)] = {k: _mean([r[3][k] for r in sel]) for k in keys}
        summary[meth]["rtf"] = _mean([r[4] for r in rows if r[2] == meth])
    head = " ".join(f"{'SI-SDR ' + str(s) + 'dB':>12s}" for s in snrs)
    print(f"\n{label}: mean over {len(rows) // len(methods)} utterances per method "
          "(held-out speakers and noise segments)")
    print(f"{'method':11s} {head} {'SI-SDR':>7s} {'PESQ-wb':>7s} {'PESQ-nb':>7s} {'ESTOI':>6s} {'RTF':>6s}")
    for meth in methods:
        s = summary[meth]
        cells = " ".join(f"{_fmt(s[str(snr)]['si_sdr']):>12s}" for snr in snrs)
        a = s["all"]
        print(f"{meth:11s} {cells} {_fmt(a['si_sdr']):>7s} {_fmt(a['pesq_wb']):>7s} {_fmt(a['pesq_nb']):>7s} "
              f"{_fmt(a['estoi']):>6s} {_fmt(s['rtf']):>6s}")
    print("SI-SDR in dB; PESQ wide / narrow band (ITU-T P.862.2 / P.862); ESTOI in [0, 1]; RTF: seconds per second "
          "of audio on one thread (U-ND: one forward pass; U-NA / U-NDA / NMF: per-utterance fitting included).")
    return summary


def _mean(vals):
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _fmt(v):
    return "n/a" if v is None else f"{v:.2f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speech-dir", help="clean speech (LibriSpeech / CMU ARCTIC / VCTK names tell the speaker)")
    p.add_argument("--noise-dir", help="noise recordings (each split in time: the end is held out)")
    p.add_argument("--epochs", type=int, default=None, help="speech-prior epochs (default 25 real, 30 synthetic)")
    p.add_argument("--noise-epochs", type=int, default=None, help="U-ND epochs (default 8 real, 6 synthetic)")
    p.add_argument("--noise-lr", type=float, default=1e-3)
    p.add_argument("--noise-seq-len", type=int, default=100, help="frames per U-ND training chunk")
    p.add_argument("--pairings", type=int, default=None, help="noisy copies per training utterance (U-ND)")
    p.add_argument("--iters", type=int, default=None,
                   help="U-NA / U-NDA SVI steps (default: enhance's, 50 / 100, on real data; 60 on synthetic data)")
    p.add_argument("--iters-nmf", type=int, default=None, help="NMF VEM iterations (default 15)")
    p.add_argument("--snrs", type=float, nargs="+", default=[0.0, 5.0])
    p.add_argument("--seconds", type=float, default=None, help="test segment length (default 3 real, 2 synthetic)")
    p.add_argument("--num-test", type=int, default=None, help="test utterances (default: 1 per test speaker)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="speakers (and noise time) held out for test")
    p.add_argument("--dev-fraction", type=float, default=0.2,
                   help="of the remaining speakers (and noise time), the part held out for development")
    p.add_argument("--eval-split", choices=("test", "dev"), default="test",
                   help="evaluate on the test or the dev speakers / noise segments (real data; the trainings "
                        "are the same)")
    p.add_argument("--chunk-hop", type=int, default=None, help="frames between speech chunks (default 10)")
    p.add_argument("--gain-db", type=float, default=6.0, help="speech-prior level augmentation (+- dB)")
    p.add_argument("--beta", type=float, default=1.0, help="speech-prior KL weight")
    p.add_argument("--batch-size", type=int, default=64, help="speech-prior batch size")
    p.add_argument("--dense-dim", type=int, default=None)
    p.add_argument("--rnn-dim", type=int, default=None)
    p.add_argument("--workers", type=int, default=1, help="parallel enhancement processes (one thread each)")
    p.add_argument("--device", default="cpu", help="device for the trainings (enhancement always on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="runs/speech_enhancement", help="checkpoints")
    p.add_argument("--out-json", help="write the per-utterance rows and the summary")
    args = p.parse_args(argv)
    real = args.speech_dir is not None
    if real != (args.noise_dir is not None):
        p.error("give both --speech-dir and --noise-dir, or neither (synthetic data)")
    defaults = {"epochs": (25, 30), "noise_epochs": (8, 6), "iters": (None, 60), "iters_nmf": (15, 15),
                "seconds": (3.0, 2.0), "pairings": (2, 2), "dense_dim": (256, 128), "rnn_dim": (128, 64),
                "chunk_hop": (10, 10)}
    for key, (r, s) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, r if real else s)
    threads(1 if args.device == "cpu" else None)  # None: leave the count of a GPU run as it is
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    label = f"REAL data, {args.eval_split} split" if real else "SYNTHETIC data"
    if real:
        train, test, noises = real_data(args.speech_dir, args.noise_dir, args.seed, args.test_fraction,
                                        args.dev_fraction, args.eval_split)
    else:
        train, test, noises = synthetic_data(args.seed, 12.0, args.num_test or 2, args.seconds)
    if args.num_test is not None:
        test = test[: args.num_test]
    os.makedirs(args.out_dir, exist_ok=True)
    prior_path = os.path.join(args.out_dir, "speech_rvae.pt")
    prior = train_speech_prior(train, prior_path, args)
    rng = np.random.default_rng(args.seed)
    noisy_train = noisy_training_set(train, {k: v for k, v in noises.items()}, rng, args.pairings, (-5.0, 10.0))
    noise_paths = train_noise_models(prior, noisy_train, args.out_dir, args)
    items = test_set(test, noises, args.snrs, args.seconds, args.seed)
    print(f"{len(items)} test utterances of up to {args.seconds:g} s; {len(METHODS)} methods "
          f"(U-NA / U-NDA: {args.iters or 'enhance defaults'} SVI steps, NMF: {args.iters_nmf} VEM iterations)")
    rows = evaluate(prior_path, noise_paths, items, args)
    summary = table(rows, args.snrs, label)
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump({"data": label, "args": vars(args), "summary": summary,
                       "rows": [{"utterance": r[0], "snr": r[1], "method": r[2], **r[3], "rtf": r[4]} for r in rows]},
                      f, indent=1)
    return summary


if __name__ == "__main__":
    main()
