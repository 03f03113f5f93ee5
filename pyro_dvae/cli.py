# SPDX-License-Identifier: Apache-2.0
"""The ``pyro-dvae`` command line: thin wrappers that parse, call the library and report."""

import argparse
import json
import sys
import time

import torch

TRAJ_SIZES = {"z_dim": 4, "dense_dim": 32, "rnn_dim": 32, "z_dense": [32]}
#: train-prior defaults per kind of data (an option left unset takes these).
TRAJ_TRAINING = {"epochs": 100, "batch_size": 256, "lr": 1e-3}
AUDIO_TRAINING = {"epochs": 50, "batch_size": 64, "lr": 1e-3}
SPEC_SIZES = {"z_dim": 16, "dense_dim": 256, "rnn_dim": 128, "z_dense": [64, 32]}


def _power_chunk_split(folder, seq_len, val_fraction, seed, hop=None, pitch_shifts=(0.0,)):
    """``(train, val)`` power-spectrum chunks of ``seq_len`` frames (every ``hop`` frames) from the audio in
    ``folder`` (plus its pitch-shifted copies), split at random (seeded); at least one validation chunk."""
    from .data.audio import power_sequences

    seqs = power_sequences(folder, seq_len=seq_len, hop=hop, pitch_shifts=pitch_shifts)
    if len(seqs) < 2:
        raise ValueError(f"{folder}: need at least 2 chunks of {seq_len} frames, got {len(seqs)}")
    perm = torch.randperm(len(seqs), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(val_fraction * len(seqs))))
    return seqs[perm[n_val:]], seqs[perm[:n_val]]


def _train_prior(args):
    from . import priors
    from .data.audio import HOP, N_FFT, SAMPLE_RATE
    from .training import TrainConfig, evaluate, train_prior

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    audio_data = args.data != "synthetic-trajectories"
    for key, value in AUDIO_TRAINING.items():  # defaults that depend on the kind of data
        if getattr(args, key) is None:
            setattr(args, key, value if audio_data else TRAJ_TRAINING[key])
    if not audio_data and (args.gain_db != [0.0, 0.0] or args.pitch_shift != [0.0] or args.chunk_hop):
        raise ValueError("--gain-db, --pitch-shift and --chunk-hop are for audio folders (--data DIR)")
    if args.data == "synthetic-trajectories":
        from .data import synthetic_trajectories

        kw = dict(frame_aspect=args.frame_aspect, speed_range=tuple(args.speed_range))
        train = torch.as_tensor(synthetic_trajectories(args.num_train, args.seq_len, seed=args.seed, **kw))
        val = torch.as_tensor(synthetic_trajectories(args.num_val, args.seq_len, seed=args.seed + 10_000, **kw))
        sizes, emission = dict(TRAJ_SIZES), "gaussian"
    else:
        train, val = _power_chunk_split(args.data, args.seq_len, args.val_fraction, args.seed, args.chunk_hop,
                                        args.pitch_shift)
        sizes, emission = dict(SPEC_SIZES), "spectral"
    for key in ("z_dim", "dense_dim", "rnn_dim", "z_dense"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    z_dim = sizes.pop("z_dim")
    if not priors.prior_class(args.model).latent_sites:  # deepar: no latent variables
        if args.z_dim or args.z_dense:
            raise SystemExit(f"--model {args.model} has no latent variables: drop --z-dim / --z-dense")
        z_dim = 0
        sizes.pop("z_dense")
    if emission == "gaussian" and priors.prior_class(args.model).autoregressive and not args.no_residual:
        sizes["residual"] = True  # motion priors predict the change from the previous box
    prior = priors.build(args.model, x_dim=train.shape[-1], z_dim=z_dim, emission=emission, **sizes)
    prior.to(args.device)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, beta=args.beta,
                      warmup_epochs=args.warmup_epochs, ss_start=args.ss_start, ss_end=args.ss_end,
                      ss_max=args.ss_max, patience=args.patience, seed=args.seed, gain_db=tuple(args.gain_db))
    if args.resume is None:
        prior.fit_normalisation(train.to(args.device))
    untrained = evaluate(prior, val.to(args.device))
    print(f"{args.model}: {len(train)} train / {len(val)} validation sequences of {train.shape[1]} steps, "
          f"x_dim={train.shape[-1]}, {sum(p.numel() for p in prior.parameters())} parameters; {cfg.epochs} epochs, "
          f"batch {cfg.batch_size}, lr {cfg.lr:g}, KL warm-up to epoch {cfg.warmup_epochs + 1}"
          + (f", scheduled sampling epochs {cfg.ss_start}-{cfg.ss_end} up to {cfg.ss_max:g}" if prior.autoregressive
             else ""))
    t0 = time.perf_counter()
    extra = {} if emission == "gaussian" else {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP}
    res = train_prior(prior, train, val, cfg, out=args.out, log_json=args.log_json, resume=args.resume,
                      progress=not args.quiet, device=args.device, checkpoint_extra=extra)
    seconds = time.perf_counter() - t0
    per_epoch = [row["seconds"] for row in res.history]
    summary = {"prior": args.model, "untrained_val_loss": untrained, "best_val_loss": res.best_val,
               "best_epoch": res.best_epoch, "epochs_run": len(res.history), "stopped_early": res.stopped_early,
               "skipped_steps": res.skipped_steps, "out": args.out, "train_sequences": len(train),
               "seconds": seconds, "seconds_per_epoch": sorted(per_epoch)[len(per_epoch) // 2] if per_epoch else None}
    print(f"validation loss (negative ELBO per step): untrained {untrained:.4f} -> best {res.best_val:.4f} "
          f"at epoch {res.best_epoch}; saved {args.out} ({seconds:.0f} s, median "
          f"{summary['seconds_per_epoch'] or 0:.1f} s per epoch)")
    return summary


def _track(args):
    import os

    from . import pretrained, priors
    from .data.mot import WindowStats, build_windows, load_sequence
    from .metrics import tracking_metrics
    from .models.tracking import run_tracking, windows_to_tensors

    torch.set_num_threads(args.threads)
    if not os.path.isdir(args.mot_dir):
        raise FileNotFoundError(f"no such MOT folder: {args.mot_dir}")
    seqs = args.seqs or sorted(d for d in os.listdir(args.mot_dir) if os.path.isdir(os.path.join(args.mot_dir, d)))
    stats, windows = WindowStats(), []
    for seq in seqs:
        info, gt, det = load_sequence(os.path.join(args.mot_dir, seq), args.det_file)
        windows += build_windows(gt, det, info, seq_len=args.seq_len, num_sources=args.num_sources,
                                 stride=args.stride, combos_per_window=args.combos, min_score=args.min_score,
                                 second_half=args.second_half, clutter=args.clutter, seed=args.seed, stats=stats)
    print(f"{len(windows)} windows of {args.seq_len} frames x {args.num_sources} sources from {', '.join(seqs)} "
          f"({stats.skipped_few_ids} windows skipped: fewer than {args.num_sources} identities present throughout)")
    if not windows:
        raise ValueError("no window could be built")
    obs, mask, gt = windows_to_tensors(windows)
    prior = priors.load(args.prior) if args.prior else pretrained.load()
    deepar = priors.load(args.deepar_prior, expect="deepar") if args.deepar_prior else None
    results = {}
    methods = args.method or ["mixdvae", "vkf", "deepar"]
    header = f"{'method':10s} {'MOTA':>6s} {'MOTP':>6s} {'IDF1':>6s} {'#IDS':>5s} {'%IDS':>6s} {'MT':>4s} {'ML':>4s} " \
             f"{'#FP':>6s} {'%FP':>6s} {'#FN':>6s} {'%FN':>6s} {'ms/it/seq':>9s}"
    print(header)
    for method in methods:
        t0 = time.perf_counter()
        if method == "deepar" and deepar is None:
            deepar = pretrained.load("deepar_mot")
        est, res = run_tracking(obs, mask, args.num_sources, method=method,
                                prior=deepar if method == "deepar" else prior, seeds=gt[:, 0] if args.init_gt else None,
                                algo=args.algo if method == "mixdvae" else "vem", num_iters=args.iters,
                                clutter_prob=args.clutter_prob if args.clutter else 0.0, seed=args.seed)
        m = tracking_metrics(list(gt.numpy()), list(est.numpy()))
        m.update(num_windows=len(windows), seconds_per_iter_per_seq=res.seconds_per_iter / len(windows),
                 seconds_total=time.perf_counter() - t0)
        results[method] = m
        print(f"{method:10s} {100 * m['mota']:6.1f} {100 * (1 - m['motp']):6.1f} {100 * m['idf1']:6.1f} "
              f"{m['num_switches']:5d} {100 * m['pct_switches']:6.2f} {m['mostly_tracked']:4d} {m['mostly_lost']:4d} "
              f"{m['num_false_positives']:6d} {100 * m['pct_false_positives']:6.2f} {m['num_misses']:6d} "
              f"{100 * m['pct_misses']:6.2f} {1000 * m['seconds_per_iter_per_seq']:9.3f}")
        if args.plot:
            from .plot import plot_tracks

            os.makedirs(args.plot, exist_ok=True)
            for i in range(min(3, len(windows))):
                w = windows[i]
                png = os.path.join(args.plot, f"{method}_{w.seq}_{w.start}_{i}.png")
                plot_tracks(w.gt, {method: est[i].numpy()}, png, obs=w.obs, obs_mask=w.obs_mask,
                            title=f"{w.seq} frames {w.start}-{w.start + args.seq_len - 1}")
    print("MOTP is reported as 100 * mean IoU of matched boxes (motmetrics' motp is 1 - IoU; the JSON keeps it).")
    return results


#: ``separate --method`` NMF baselines -> :func:`~pyro_dvae.models.separation.run_separation` methods.
SEPARATE_NMF = {"is-nmf": "is_nmf", "temporal-nmf": "temporal_nmf"}


def _nmf_train_files(folder):
    """The audio files of one ``--nmf-train`` folder (recursive); a missing or empty folder is an error."""
    import os

    from .data.audio import AUDIO_EXTENSIONS, audio_files

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--nmf-train: no such folder: {folder}")
    files = audio_files(folder)
    if not files:
        raise ValueError(f"--nmf-train {folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return files


def _nmf_separator(names, folders, files, rank, iters, max_frames=20000, seed=0):
    """An :class:`~pyro_dvae.nmf.NMFSeparator` with one IS-NMF dictionary of ``rank`` components per source,
    learnt in ``iters`` updates from the power spectrograms of its training files, each peak-normalised (as
    the mixture is; as ``examples/scass_mixdvae.py`` does); silent files and files under one frame are skipped.
    A source with more than ``max_frames`` frames learns from that many frames drawn at random (seeded): the
    dictionary does not depend on frame order, and an hour of speech (225k frames) would otherwise take the
    better part of an hour on one core."""
    import numpy as np

    from .data.audio import N_FFT, load_audio, stft
    from .nmf import NMFSeparator

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


def _check_out_path(path, option):
    """Fail before any work when ``path`` cannot be written (its folder is created when missing)."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{option} {path}: cannot create its folder ({e.strerror})") from None
    if os.path.isdir(path) or not os.access(folder, os.W_OK):
        raise ValueError(f"{option} {path}: not a writable file path")


def _load_nmf_dicts(path, names, rank):
    """NMF dictionaries saved by an earlier ``separate --nmf-dicts`` run, checked against the sources and rank."""
    from .nmf import NMFSeparator

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise ValueError(f"--nmf-dicts {path}: not a dictionaries file written by pyro-dvae separate") from None
    if not isinstance(data, dict) or data.get("format") != "pyro-dvae-nmf-dicts":
        raise ValueError(f"--nmf-dicts {path}: not a dictionaries file written by pyro-dvae separate")
    if sorted(data["dictionaries"]) != sorted(names) or data["rank"] != rank:
        raise ValueError(f"--nmf-dicts {path}: holds sources {sorted(data['dictionaries'])} at rank {data['rank']}, "
                         f"this run separates {names} at --nmf-rank {rank}")
    sep = NMFSeparator(rank=rank)
    sep.dictionaries = {n: data["dictionaries"][n] for n in names}
    return sep


def _separate(args):
    import os

    import numpy as np
    import soundfile as sf

    from .data.audio import N_FFT, SAMPLE_RATE, load_audio
    from .data.noisy import write_like
    from .metrics import score_sources
    from .models.separation import load_separation_prior, run_separation

    torch.set_num_threads(args.threads)
    mix = load_audio(args.mix)  # format, NaN and clipping checks; mono at 16 kHz
    rate, length = sf.info(args.mix).samplerate, sf.info(args.mix).frames
    if len(mix) < N_FFT:
        raise ValueError(f"{args.mix}: {len(mix)} samples at {SAMPLE_RATE} Hz, shorter than one STFT frame ({N_FFT})")
    if not np.abs(mix).max() > 0:
        raise ValueError(f"{args.mix}: the mixture is silent")
    methods = list(dict.fromkeys(args.method or ["mixdvae"]))  # repeated --method: once each, in order
    nmf_methods = [m for m in methods if m in SEPARATE_NMF]
    for option, value in (("--nmf-rank", args.nmf_rank), ("--nmf-iters", args.nmf_iters),
                          ("--nmf-max-frames", args.nmf_max_frames)):
        if value < 1:
            raise ValueError(f"{option} must be >= 1, got {value}")
    if args.priors:
        names = [os.path.splitext(os.path.basename(p))[0] for p in args.priors]
        if args.names is not None and len(args.names) != len(names):
            raise ValueError(f"give one --names entry per --priors file ({len(names)}), got {len(args.names)}")
    elif "mixdvae" in methods:
        raise ValueError("--method mixdvae needs --priors (one spectral prior checkpoint per source)")
    elif args.names is None:
        raise ValueError("give --priors (their file stems name the sources) or, for NMF methods only, --names")
    names = args.names or names
    if len(set(names)) != len(names):
        option = "--names" if args.names else "--priors file stems"
        raise ValueError(f"the source names ({option}) must differ: {names}")
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
    refs = None
    if args.refs is not None:
        if len(args.refs) != len(names):
            raise ValueError(f"give one --refs file per source ({len(names)}: {', '.join(names)}), got "
                             f"{len(args.refs)}")
        refs = [load_audio(r) for r in args.refs]
        for r, path in zip(refs, args.refs):
            if len(r) != len(mix):
                raise ValueError(f"{path}: {len(r)} samples at {SAMPLE_RATE} Hz, the mixture has {len(mix)}")
        refs = np.stack(refs)
    priors = [load_separation_prior(p) for p in args.priors] if args.priors else None
    nmf, fit_seconds = None, None
    if cached:
        nmf = _load_nmf_dicts(args.nmf_dicts, names, args.nmf_rank)
    elif nmf_methods:
        if args.nmf_dicts is not None:
            _check_out_path(args.nmf_dicts, "--nmf-dicts")
        t0 = time.perf_counter()
        nmf = _nmf_separator(names, args.nmf_train, train_files, args.nmf_rank, args.nmf_iters, args.nmf_max_frames,
                             args.seed)
        fit_seconds = time.perf_counter() - t0
        if args.nmf_dicts is not None:
            torch.save({"format": "pyro-dvae-nmf-dicts", "rank": args.nmf_rank, "dictionaries": nmf.dictionaries},
                       args.nmf_dicts)
    os.makedirs(args.out_dir, exist_ok=True)
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
        for method in methods:
            summary["methods"][method]["estimate"] = score_sources(outs[method].waveforms, refs, names, SAMPLE_RATE)
        summary["mixture"] = score_sources([mix] * len(names), refs, names, SAMPLE_RATE)
        fmt = lambda v: "   n/a" if v is None else f"{v:6.2f}"  # noqa: E731
        print(f"{'source':12s} {'':12s} {'SI-SDR':>6s} {'RMSE':>6s} {'PESQwb':>6s} {'ESTOI':>6s}")
        for name in names:
            for kind in [*methods, "mixture"]:
                m = summary["mixture"][name] if kind == "mixture" else summary["methods"][kind]["estimate"][name]
                print(f"{name:12s} {kind:12s} {fmt(m['si_sdr'])} {fmt(m['rmse'])} {fmt(m['pesq_wb'])} "
                      f"{fmt(m['estoi'])}")
        print("scores at 16 kHz against the references; n/a: undefined for this signal or the pesq package is absent")
        tables = [summary["mixture"]] + [entry["estimate"] for entry in summary["methods"].values()]
        for table in tables:  # JSON has no infinity (a silent estimate has SI-SDR -inf)
            for scores in table.values():
                scores.update({k: None for k, v in scores.items() if v is not None and not np.isfinite(v)})
    if len(methods) == 1:  # the keys of a single-method run, as before --method existed: outputs, estimate, ...
        summary.update(summary["methods"][methods[0]])
    return summary


def _enhance(args):
    from .data.audio import SAMPLE_RATE, load_audio
    from .data.noisy import read_noisy, write_like
    from .metrics import speech_scores
    from .models.enhancement import enhance, load_speech_prior

    torch.set_num_threads(args.threads)
    noisy, rate, length = read_noisy(args.noisy)  # format, NaN, clipping (warns), silence and length checks
    ref = None
    if args.ref is not None:
        ref = load_audio(args.ref)
        if len(ref) != len(noisy):
            raise ValueError(f"{args.ref}: {len(ref)} samples at {SAMPLE_RATE} Hz, the noisy input has {len(noisy)}")
    prior = load_speech_prior(args.prior)
    out = enhance(noisy, prior, args.noise, args.mode, noise_checkpoint=args.noise_model, num_iters=args.iters,
                  seed=args.seed)
    write_like(args.out, out.waveform, rate, length)
    summary = {"out": args.out, "noise": args.noise, "mode": args.mode, "iters": out.info["num_iters"],
               "sample_rate": rate, "samples": length, "seconds": out.info["seconds"], "rtf": out.info["rtf"],
               "band_bins": out.info["band_bins"], "attempts": out.info["attempts"],
               "recovered": out.info["recovered"]}
    print(f"{args.noise}-{args.mode}: wrote {args.out} ({rate} Hz, {length} samples); {out.info['seconds']:.2f} s, "
          f"real-time factor {out.info['rtf']:.3f} (1 = as long as the audio)")
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


def _train_noise(args):
    from .models.enhancement import load_speech_prior
    from .models.enhancement_training import KEPT_RATIO, train_noise

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    prior = load_speech_prior(args.prior)
    train, val = _power_chunk_split(args.noisy_dir, args.seq_len, args.val_fraction, args.seed)
    print(f"{args.noise} noise model for {args.prior}: {len(train)} train / {len(val)} validation noisy chunks of "
          f"{args.seq_len} frames (noisy speech only, no clean reference)")
    res = train_noise(prior, args.noise, train, val, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      patience=args.patience, seed=args.seed, out=args.out, device=args.device, progress=not args.quiet)
    first = res.history[0]["val_loss"] if res.history else float("nan")
    print(f"validation loss (negative ELBO per TF bin): epoch 1 {first:.4f} -> best {res.best_val:.4f} at epoch "
          f"{res.best_epoch}; saved {args.out}")
    if res.stopped_on_speech:
        print(f"stopped after epoch {len(res.history)}: the speech estimate on the validation chunks kept "
              f"{res.history[-1]['kept_energy']:.2f} of their energy, under {KEPT_RATIO:g} x the "
              f"{res.history[0]['kept_energy']:.2f} of epoch 1 (the noise model was starting to explain the speech)")
    return {"noise": args.noise, "prior": args.prior, "out": args.out, "best_val_loss": res.best_val,
            "best_epoch": res.best_epoch, "epochs_run": len(res.history), "stopped_on_speech": res.stopped_on_speech,
            "history": res.history}


def build_parser():
    from . import __version__, priors

    parser = argparse.ArgumentParser(prog="pyro-dvae", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pyro-dvae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-prior", help="pre-train a DVAE prior by SVI")
    p.add_argument("--model", required=True, choices=priors.available())
    p.add_argument("--data", required=True,
                   help="'synthetic-trajectories' or a folder of wav/flac/ogg files (power-spectrum prior)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"training epochs (default {TRAJ_TRAINING['epochs']} trajectories, "
                        f"{AUDIO_TRAINING['epochs']} audio)")
    p.add_argument("--out", required=True, help="checkpoint path (.pt)")
    p.add_argument("--log-json", help="per-epoch train/validation log")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", help="checkpoint written by train-prior to continue from")
    p.add_argument("--seq-len", type=int, default=None, help="frames per sequence (60 trajectories, 50 audio)")
    p.add_argument("--num-train", type=int, default=20000, help="synthetic training tracks")
    p.add_argument("--num-val", type=int, default=2000, help="synthetic validation tracks")
    p.add_argument("--frame-aspect", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="synthetic tracks: range of frame width/height (default: MixDVAE's 16:9 statistics)")
    p.add_argument("--speed-range", type=float, nargs=2, default=[1.0, 1.0], metavar=("LOW", "HIGH"),
                   help="synthetic tracks: per-track speed factor range (log-uniform)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="audio chunks held out for validation")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"default {TRAJ_TRAINING['batch_size']} trajectories, {AUDIO_TRAINING['batch_size']} audio")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3)")
    p.add_argument("--beta", type=float, default=1.0, help="final KL weight")
    p.add_argument("--warmup-epochs", type=int, default=None,
                   help="epochs of linear KL warm-up (default: the first 20 %% of --epochs)")
    p.add_argument("--ss-start", type=int, default=None,
                   help="epoch where scheduled sampling starts (default: the end of the warm-up)")
    p.add_argument("--ss-end", type=int, default=None,
                   help="epoch where it reaches --ss-max (default: 80 %% of --epochs)")
    p.add_argument("--ss-max", type=float, default=1.0)
    p.add_argument("--patience", type=int, default=50)
    p.add_argument("--z-dim", type=int)
    p.add_argument("--dense-dim", type=int)
    p.add_argument("--rnn-dim", type=int)
    p.add_argument("--z-dense", type=int, nargs="+")
    p.add_argument("--gain-db", type=float, nargs=2, default=[0.0, 0.0], metavar=("LOW", "HIGH"),
                   help="audio: random level change of each training chunk, uniform in dB, drawn at every step")
    p.add_argument("--pitch-shift", type=float, nargs="+", default=[0.0], metavar="SEMITONES",
                   help="audio: also train on every file shifted by these semitones (0 = the file itself), "
                        "e.g. -2 -1 0 1 2 for instrument notes")
    p.add_argument("--chunk-hop", type=int, default=None,
                   help="audio: frames between the starts of training chunks (default --seq-len: no overlap)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-residual", action="store_true",
                   help="trajectory priors: predict boxes directly instead of the change from the previous box")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out-json", help="write the run summary as JSON")
    p.set_defaults(func=_train_prior)

    p = sub.add_parser("track", help="multi-object tracking on MOTChallenge sequences (MOT-3T windows)")
    p.add_argument("--mot-dir", required=True, help="folder of MOTChallenge sequences (<SEQ>/gt/gt.txt, det/)")
    p.add_argument("--seqs", nargs="+", help="sequence names (default: all in --mot-dir)")
    p.add_argument("--seq-len", type=int, default=60)
    p.add_argument("--num-sources", type=int, default=3)
    p.add_argument("--stride", type=int, default=40)
    p.add_argument("--combos", type=int, default=20, help="random N-identity combinations per window")
    p.add_argument("--min-score", type=float, default=None, help="drop detections scoring below this")
    p.add_argument("--det-file", default="det/det.txt", help="detections, relative to each sequence folder")
    p.add_argument("--second-half", action="store_true", help="only windows in the second half of each sequence")
    p.add_argument("--clutter", action="store_true", help="keep unmatched detections near the sources as clutter")
    p.add_argument("--clutter-prob", type=float, default=0.1, help="prior weight of the clutter class")
    p.add_argument("--init-gt", action="store_true",
                   help="seed the sources with their first-frame ground-truth boxes (identity given at t=0)")
    p.add_argument("--prior", help="prior checkpoint (default: the shipped SRNN trajectory prior)")
    p.add_argument("--deepar-prior", help="Deep AR checkpoint for --method deepar (default: the shipped one)")
    p.add_argument("--method", action="append", choices=["mixdvae", "vkf", "deepar"], help="repeat to compare")
    p.add_argument("--algo", default="vem", choices=["vem", "svi", "enum-svi"])
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out-json", help="write {method: metrics} as JSON")
    p.add_argument("--plot", help="folder for PNG figures of a few windows")
    p.set_defaults(func=_track)

    p = sub.add_parser("separate", help="separate the sources of a single-channel mixture with spectral priors "
                                        "(MixDVAE) or NMF baselines")
    p.add_argument("mix", help="the mixture (wav / flac / ogg)")
    p.add_argument("--priors", nargs="+",
                   help="one spectral prior checkpoint per source; the file stems name the sources (needed by "
                        "--method mixdvae)")
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
                        "--nmf-train and written there (so a series of mixtures learns them once)")
    p.add_argument("--nmf-rank", type=int, default=64, help="NMF components per source (default 64)")
    p.add_argument("--nmf-max-frames", type=int, default=20000,
                   help="frames per source the dictionaries learn from, drawn at random beyond this (default 20000)")
    p.add_argument("--nmf-iters", type=int, default=100,
                   help="NMF updates, for learning each dictionary and for separating (default 100)")
    p.add_argument("--iters", type=int, default=30, help="MixDVAE VEM iterations (SVI steps with --algo svi)")
    p.add_argument("--algo", default="vem", choices=["vem", "svi", "enum-svi"])
    p.add_argument("--chunk", type=int, default=0,
                   help="separate in independent chunks of this many STFT frames run as one batch (faster on long "
                        "files, slightly worse); 0: the whole file at once")
    p.add_argument("--refs", nargs="+", help="reference sources, in the order of the sources: print and store scores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out-json",
                   help="write the run as JSON: methods: {method: {outputs, estimate: {source: scores}, ...}} and "
                        "mixture: {source: scores}; a single --method also has its entry's keys at the top level "
                        "(outputs, estimate, ...: the format before --method)")
    p.set_defaults(func=_separate)

    p = sub.add_parser("enhance", help="unsupervised speech enhancement with a speech prior and a noise model")
    p.add_argument("noisy", help="the noisy speech (wav / flac / ogg); the output has its sample rate and length")
    p.add_argument("--prior", required=True, help="spectral speech prior checkpoint (e.g. a causal rvae)")
    p.add_argument("--noise", required=True, choices=["nmf", "lv", "no", "nolv"], help="noise model")
    p.add_argument("--mode", default="una", choices=["una", "und", "unda"],
                   help="una: fit per utterance; und: trained noise model, one pass; unda: und then una "
                        "(nmf: una only)")
    p.add_argument("--noise-model", help="noise checkpoint written by train-noise (und / unda)")
    p.add_argument("--iters", type=int, help="VEM iterations (nmf) or SVI steps (una / unda); default 15 / 100")
    p.add_argument("--out", required=True, help="enhanced speech (.wav)")
    p.add_argument("--ref", help="clean reference: print and store SI-SDR, PESQ wb/nb and ESTOI of output and input")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out-json", help="write the run summary (and scores with --ref) as JSON")
    p.set_defaults(func=_enhance)

    p = sub.add_parser("train-noise", help="train a deep noise model (U-ND) on a folder of noisy speech")
    p.add_argument("--noisy-dir", required=True, help="folder of noisy speech (wav / flac / ogg), no clean references")
    p.add_argument("--prior", required=True, help="the spectral speech prior the noise model is trained for")
    p.add_argument("--noise", required=True, choices=["lv", "no", "nolv"])
    p.add_argument("--out", required=True, help="noise checkpoint (.pt)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seq-len", type=int, default=100, help="frames per training chunk")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--val-fraction", type=float, default=0.1, help="chunks held out for validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out-json", help="write the training summary as JSON")
    p.set_defaults(func=_train_noise)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "seq_len", 0) is None:
        args.seq_len = 60 if args.data == "synthetic-trajectories" else 50
    try:
        summary = args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"pyro-dvae {args.command}: error: {e}", file=sys.stderr)
        return 2
    if getattr(args, "out_json", None):
        with open(args.out_json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
