# SPDX-License-Identifier: Apache-2.0
"""``pyro-dvae separate``: separate the sources of a single-channel mixture with spectral DVAE priors (MixDVAE)
or the IS-NMF / temporal-NMF baselines."""

import os
import time

import torch

from .common import add_command, check_out_path, chunk_frames, int_at_least, make_parent, set_threads

#: ``--method`` NMF baselines -> :func:`~pyro_dvae.models.separation.run_separation` methods.
SEPARATE_NMF = {"is-nmf": "is_nmf", "temporal-nmf": "temporal_nmf"}
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


def _nmf_train_files(folder):
    """The audio files of one ``--nmf-train`` folder (recursive); a missing or empty folder is an error."""
    from ..data.audio import AUDIO_EXTENSIONS, audio_files

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--nmf-train {folder}: no such folder")
    files = audio_files(folder)
    if not files:
        raise ValueError(f"--nmf-train {folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return files


def nmf_separator(names, folders, files, rank, iters, max_frames=20000, seed=0):
    """An :class:`~pyro_dvae.nmf.NMFSeparator` with one IS-NMF dictionary of ``rank`` components per source,
    learnt in ``iters`` updates from the power spectrograms of its training files, each peak-normalised (as
    the mixture is; as ``examples/scass_mixdvae.py`` does); silent files and files under one frame are skipped.
    A source with more than ``max_frames`` frames learns from that many frames drawn at random (seeded): the
    dictionary does not depend on frame order, and an hour of speech (225k frames) would otherwise take the
    better part of an hour on one core."""
    import numpy as np

    from ..data.audio import N_FFT, load_audio, stft
    from ..nmf import NMFSeparator

    sep = NMFSeparator(rank=rank, iters=iters)
    for name, folder, paths in zip(names, folders, files):
        powers = []
        for path in paths:
            x = load_audio(path)
            peak = np.abs(x).max()
            if peak > 0 and len(x) >= N_FFT:
                powers.append(stft(torch.as_tensor(x / peak, dtype=torch.float32)).abs().pow(2).mT)
        if not powers:
            raise ValueError(f"--nmf-train {folder}: every audio file is silent or shorter than one STFT frame "
                             f"({N_FFT} samples at 16 kHz)")
        frames, n_files = sum(P.shape[-1] for P in powers), len(powers)
        if frames > max_frames:
            keep = torch.randperm(frames, generator=torch.Generator().manual_seed(seed))[:max_frames]
            powers = [torch.cat(powers, -1)[:, keep.sort().values]]
        print(f"NMF dictionary {name}: rank {rank}, {iters} iterations on {n_files} files ({frames} frames"
              + (f", {max_frames} drawn at random)" if frames > max_frames else ")"))
        sep.fit(name, powers)
    return sep


def load_nmf_dicts(path, names, rank):
    """NMF dictionaries saved by an earlier ``separate --nmf-dicts`` run, checked against the sources and rank."""
    from ..checkpoint import read_torch_file
    from ..nmf import NMFSeparator

    data = read_torch_file(path, "--nmf-dicts", "NMF dictionaries file written by pyro-dvae separate")
    if not isinstance(data, dict) or data.get("format") != "pyro-dvae-nmf-dicts":
        raise ValueError(f"--nmf-dicts {path}: not a dictionaries file written by pyro-dvae separate")
    if sorted(data["dictionaries"]) != sorted(names) or data["rank"] != rank:
        raise ValueError(f"--nmf-dicts {path}: holds sources {sorted(data['dictionaries'])} at rank {data['rank']}, "
                         f"this run separates {names} at --nmf-rank {rank}")
    sep = NMFSeparator(rank=rank)
    sep.dictionaries = {n: data["dictionaries"][n].float() for n in names}  # shipped files hold float16
    return sep


def _source_names(args, methods):
    if args.priors:
        names = [os.path.splitext(os.path.basename(p))[0] for p in args.priors]
        if args.names is not None and len(args.names) != len(names):
            raise ValueError(f"give one --names entry per --priors file ({len(names)}), got {len(args.names)}")
    elif "mixdvae" in methods:
        raise ValueError("--method mixdvae needs --priors (one spectral prior checkpoint per source)")
    elif args.names is None:
        raise ValueError("give --priors (their file stems name the sources) or, for NMF methods only, --names")
    names = args.names or names
    option = "--names" if args.names else "--priors"
    if len(names) < 2:
        raise ValueError(f"{option}: separation needs at least two sources, got {len(names)} ({names[0]})")
    if len(set(names)) != len(names):
        raise ValueError(f"the source names ({option if args.names else '--priors file stems'}) must differ: {names}")
    return names


def _load_refs(args, names, mix):
    import numpy as np

    from ..data.audio import SAMPLE_RATE, load_audio

    if len(args.refs) != len(names):
        raise ValueError(f"give one --refs file per source ({len(names)}: {', '.join(names)}), got {len(args.refs)}")
    refs = [load_audio(r) for r in args.refs]
    for r, path in zip(refs, args.refs):
        if len(r) != len(mix):
            raise ValueError(f"--refs {path}: {len(r)} samples at {SAMPLE_RATE} Hz, the mixture has {len(mix)}")
    return np.stack(refs)


def run(args):
    import numpy as np
    import soundfile as sf

    from .. import pretrained
    from ..data.audio import N_FFT, SAMPLE_RATE, load_audio
    from ..data.noisy import write_like
    from ..models.separation import load_separation_prior, run_separation

    set_threads(args.threads)
    args.priors = [pretrained.resolve(p) for p in args.priors] if args.priors else args.priors
    args.nmf_dicts = pretrained.resolve(args.nmf_dicts)
    mix = load_audio(args.mix)  # format, NaN and clipping checks; mono at 16 kHz
    rate, length = sf.info(args.mix).samplerate, sf.info(args.mix).frames
    if len(mix) < N_FFT:
        raise ValueError(f"{args.mix}: {len(mix)} samples at {SAMPLE_RATE} Hz, shorter than one STFT frame ({N_FFT})")
    if not np.abs(mix).max() > 0:
        raise ValueError(f"{args.mix}: the mixture is silent")
    methods = list(dict.fromkeys(args.method or ["mixdvae"]))  # repeated --method: once each, in order
    nmf_methods = [m for m in methods if m in SEPARATE_NMF]
    names = _source_names(args, methods)
    cached = args.nmf_dicts is not None and os.path.exists(args.nmf_dicts)
    if args.nmf_dicts is not None and not nmf_methods:
        raise ValueError("--nmf-dicts is for --method is-nmf / temporal-nmf")
    if nmf_methods and args.nmf_train is None and not cached:
        raise ValueError(f"--method {' / '.join(nmf_methods)} needs --nmf-train (one training audio folder per "
                         f"source: {', '.join(names)}) or an existing --nmf-dicts file")
    if args.nmf_train is not None:
        if not nmf_methods:
            raise ValueError("--nmf-train is for --method is-nmf / temporal-nmf")
        if len(args.nmf_train) != len(names):
            raise ValueError(f"give one --nmf-train folder per source ({len(names)}: {', '.join(names)}), got "
                             f"{len(args.nmf_train)}")
        train_files = None if cached else [_nmf_train_files(folder) for folder in args.nmf_train]
    refs = _load_refs(args, names, mix) if args.refs is not None else None
    priors = [load_separation_prior(p) for p in args.priors] if args.priors else None
    nmf, fit_seconds = None, None
    if cached:
        nmf = load_nmf_dicts(args.nmf_dicts, names, args.nmf_rank)
    elif nmf_methods:
        if args.nmf_dicts is not None:
            check_out_path(args.nmf_dicts, "--nmf-dicts")
        t0 = time.perf_counter()
        nmf = nmf_separator(names, args.nmf_train, train_files, args.nmf_rank, args.nmf_iters, args.nmf_max_frames,
                            args.seed)
        fit_seconds = time.perf_counter() - t0
        if args.nmf_dicts is not None:
            make_parent(args.nmf_dicts)
            torch.save({"format": "pyro-dvae-nmf-dicts", "rank": args.nmf_rank, "dictionaries": nmf.dictionaries},
                       args.nmf_dicts)
    summary = {"sample_rate": rate, "methods": {}}
    outs = {}
    for method in methods:
        if method == "mixdvae":
            out = run_separation(mix, priors, names=names, algo=args.algo, num_iters=args.iters, seed=args.seed,
                                 chunk=args.chunk or None)
            entry = {"outputs": {}, "algo": args.algo, "iters": args.iters, "chunk": args.chunk,
                     "seconds_per_iter": out.result.seconds_per_iter}
        else:
            out = run_separation(mix, priors, names=names, method=SEPARATE_NMF[method], nmf=nmf,
                                 nmf_iters=args.nmf_iters, seed=args.seed)
            entry = {"outputs": {}, "nmf_rank": args.nmf_rank, "nmf_iters": args.nmf_iters,
                     "nmf_train": None if cached else list(args.nmf_train), "nmf_dicts": args.nmf_dicts,
                     "nmf_fit_seconds": fit_seconds}
        entry["seconds"] = out.info["seconds"]
        folder = args.out_dir if len(methods) == 1 else os.path.join(args.out_dir, method)
        os.makedirs(folder, exist_ok=True)
        for name, wave in zip(names, out.waveforms):
            path = os.path.join(folder, f"{name}.wav")
            write_like(path, wave, rate, length)
            entry["outputs"][name] = path
            print(f"{name}: {path}" if len(methods) == 1 else f"{method} {name}: {path}")
        summary["methods"][method], outs[method] = entry, out
    if refs is not None:
        _score(summary, outs, methods, names, mix, refs)
    if len(methods) == 1:  # the keys of a single-method run, as before --method existed: outputs, estimate, ...
        summary.update(summary["methods"][methods[0]])
    return summary


def _score(summary, outs, methods, names, mix, refs):
    from ..data.audio import SAMPLE_RATE
    from ..metrics import score_sources

    for method in methods:
        summary["methods"][method]["estimate"] = score_sources(outs[method].waveforms, refs, names, SAMPLE_RATE)
    summary["mixture"] = score_sources([mix] * len(names), refs, names, SAMPLE_RATE)
    fmt = lambda v: "   n/a" if v is None or v != v or abs(v) == float("inf") else f"{v:6.2f}"  # noqa: E731
    print(f"{'source':12s} {'':12s} {'SI-SDR':>6s} {'RMSE':>6s} {'PESQwb':>6s} {'ESTOI':>6s}")
    for name in names:
        for kind in [*methods, "mixture"]:
            m = summary["mixture"][name] if kind == "mixture" else summary["methods"][kind]["estimate"][name]
            print(f"{name:12s} {kind:12s} {fmt(m['si_sdr'])} {fmt(m['rmse'])} {fmt(m['pesq_wb'])} {fmt(m['estoi'])}")
    print("scores at 16 kHz against the references; n/a: undefined for this signal (e.g. a silent reference or "
          "estimate) or the pesq package is absent")
