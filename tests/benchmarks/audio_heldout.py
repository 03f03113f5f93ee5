# SPDX-License-Identifier: Apache-2.0
"""Held-out audio benchmark: the ``pyro-dvae`` commands, with their defaults, on recordings never used for any
choice.

Splits come from :mod:`pyro_dvae.data.heldout` (speech by speaker, flute by note, noise recordings in time:
train / dev / test). Every number goes through the commands a user runs:

1. ``pyro-dvae train-prior`` with the shipped priors' recipes (``pyro_dvae/pretrained/TRAINING.md``), the SRNNs of
   separation: on the training speakers, and on the training flute notes pitch-shifted by -2..2 semitones
   (written as files, so that the NMF dictionaries learn from exactly the same audio); ``pyro-dvae train-noise``
   (defaults: for the shipped causal RVAE ``speech_rvae``, ``enhance``'s default prior, trained on the same
   speakers) for the U-ND noise models, on noisy speech only (training speakers + training noise segments, SNR
   uniform in [-5, 10] dB);
2. ``pyro-dvae separate`` (defaults) on speech + flute mixtures of the chosen part (melodies of 4 of the part's
   notes), the flute 5 dB above the speech, T = 50 / 100 / 300 frames, with ``--method mixdvae --method is-nmf
   --method temporal-nmf`` (NMF rank 64, dictionaries from the same training folders);
3. ``pyro-dvae enhance`` (defaults) with every noise model and mode on the part's speakers mixed with the part's
   noise segments at -5, 0, 5 and 10 dB, wideband (16 kHz) and narrowband (band-limited to 4 kHz).

Tables: mean, worst file and share of files that got worse (separation: than IS-NMF and than the mixture;
enhancement: than the noisy input), written to ``WORK/report_<part>.json``. Choose settings with ``--part dev``;
report ``--part test``. Usage (data not shipped; about an hour on 2 cores)::

    python tests/benchmarks/audio_heldout.py --work heldout --part test --realdata ../shared/realdata
"""

import argparse
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pyro_dvae.data import audio
from pyro_dvae.data import heldout as H
from pyro_dvae.data import mixtures as mx
from pyro_dvae.data.noisy import mix_at_snr

DEEP = ("lv", "no", "nolv")
ENHANCE_METHODS = ("nmf-una",) + tuple(f"{n}-{m}" for n in DEEP for m in ("una", "und", "unda"))


def run(cmd, log=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if log:
        with open(log, "w") as f:
            f.write(" ".join(cmd) + "\n" + out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return out


def prepare(work, realdata, noise_train_files=60, seed=0):
    import soundfile as sf

    sp = H.speech_split(os.path.join(realdata, "speech/librispeech/train-clean-100"))
    fl = H.note_split(os.path.join(realdata, "music/iowa_flute"))
    H.link_files(sp["train"], os.path.join(work, "speech_train"))
    folder = os.path.join(work, "flute_train")
    os.makedirs(folder, exist_ok=True)
    for f in fl["train"]:
        x = audio.load_audio(f)
        for k in (-2, -1, 0, 1, 2):
            path = os.path.join(folder, f"{os.path.splitext(os.path.basename(f))[0]}.shift{k:+d}.wav")
            if not os.path.exists(path):
                sf.write(path, audio.pitch_shift(x, k), audio.SAMPLE_RATE, subtype="FLOAT")
    # U-ND training data: noisy speech only (training speakers + training noise segments, SNR in [-5, 10] dB)
    folder = os.path.join(work, "noisy_train")
    if not os.path.isdir(folder):
        os.makedirs(folder)
        noises = H.noise_split(os.path.join(realdata, "noise"))
        rng = np.random.default_rng(seed)
        names = sorted(noises)
        for f in sp["train"][:noise_train_files]:
            x = audio.load_audio(f)
            n = noises[names[rng.integers(len(names))]]["train"]
            n = np.tile(n, int(np.ceil(len(x) / len(n)))) if len(n) < len(x) else n
            noisy, _ = mix_at_snr(x, n, rng.uniform(-5, 10), int(rng.integers(0, len(n) - len(x) + 1)))
            sf.write(os.path.join(folder, os.path.basename(f)[:-5] + ".wav"), noisy / (2 * np.abs(noisy).max()),
                     audio.SAMPLE_RATE, subtype="FLOAT")
    return sp, fl


#: the ``train-prior`` options of the shipped separation priors (``pyro_dvae/pretrained/TRAINING.md``)
RECIPES = {
    "speech.pt": ["--beta", "1", "--batch-size", "64", "--epochs", "50", "--model-option", "spectral_output=raw",
                  "--model-option", "level_floor_db=null"],
    "flute.pt": ["--model-option", "level_floor_db=80", "--epochs", "300", "--patience", "300", "--seed", "2"],
}


def train(work, noise_models=DEEP):
    jobs = [("srnn", "speech_train", "speech.pt"), ("srnn", "flute_train", "flute.pt")]
    cmds = []
    for model, data, out in jobs:
        path = os.path.join(work, out)
        if not os.path.exists(path):
            cmds.append((["pyro-dvae", "train-prior", "--model", model, "--data", os.path.join(work, data), "--out",
                          path, "--quiet", "--out-json", path + ".json", *RECIPES[out]], path + ".log"))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda c: run(*c), cmds))
    cmds = []
    for noise in noise_models:  # U-ND noise models, trained on noisy speech only, for train-noise's default prior
        path = os.path.join(work, f"noise_{noise}.pt")
        if not os.path.exists(path):
            cmds.append((["pyro-dvae", "train-noise", "--noisy-dir", os.path.join(work, "noisy_train"), "--noise",
                          noise, "--out", path, "--quiet", "--out-json", path + ".json"], path + ".log"))
            jobs.append((None, None, f"noise_{noise}.pt"))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda c: run(*c), cmds))
    return {out: json.load(open(os.path.join(work, out + ".json"))) for _, _, out in jobs
            if os.path.exists(os.path.join(work, out + ".json"))}


def separation(work, sp, fl, part, frames, n, workers):
    import soundfile as sf

    folder = os.path.join(work, f"sep_{part}")
    os.makedirs(folder, exist_ok=True)
    dicts = os.path.join(work, "nmf_dicts.pt")
    base = ["--priors", os.path.join(work, "speech.pt"), os.path.join(work, "flute.pt"), "--method", "mixdvae",
            "--method", "is-nmf", "--method", "temporal-nmf", "--nmf-train", os.path.join(work, "speech_train"),
            os.path.join(work, "flute_train"), "--nmf-dicts", dicts]
    cmds = []
    melodies = [mx.concatenate_notes(fl[part], 4, seed=k) for k in range(8)]  # notes are 2.5 s: T = 300 needs more
    for T in frames:
        for i, m in enumerate(mx.make_mixtures(sp[part], melodies, n, num_frames=T, smr_db=-5.0, seed=T)):
            stem = os.path.join(folder, f"T{T}_{i}")
            for name, x in (("mix", m.mix), ("speech", m.sources["speech"]), ("flute", m.sources["music"])):
                sf.write(f"{stem}_{name}.wav", x, audio.SAMPLE_RATE, subtype="FLOAT")
            cmds.append((T, ["pyro-dvae", "separate", f"{stem}_mix.wav", *base, "--refs", f"{stem}_speech.wav",
                             f"{stem}_flute.wav", "--out-dir", stem, "--out-json", f"{stem}.json"], f"{stem}.log"))
    run(cmds[0][1], cmds[0][2])  # learns the NMF dictionaries once
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda c: run(c[1], c[2]), cmds[1:]))
    rows = []
    for T, cmd, _ in cmds:
        s = json.load(open(cmd[cmd.index("--out-json") + 1]))
        for method, entry in s["methods"].items():
            for src in ("speech", "flute"):
                rows.append({"T": T, "method": method, "source": src, "si_sdr": entry["estimate"][src]["si_sdr"],
                             "mixture": s["mixture"][src]["si_sdr"]})
    return rows


def enhancement(work, sp, noises, part, per_snr, workers, methods):
    import soundfile as sf

    folder = os.path.join(work, f"enh_{part}")
    os.makedirs(folder, exist_ok=True)
    cmds = []
    for narrow in (False, True):
        for it in H.noisy_set(sp[part], noises, per_snr=per_snr, narrow=narrow, part=part):
            stem = os.path.join(folder, it["name"])
            sf.write(f"{stem}_noisy.wav", it["noisy"], audio.SAMPLE_RATE, subtype="FLOAT")
            sf.write(f"{stem}_clean.wav", it["clean"], audio.SAMPLE_RATE, subtype="FLOAT")
            for method in methods:
                noise, mode = method.split("-")
                extra = ["--noise-model", os.path.join(work, f"noise_{noise}.pt")] if mode != "una" else []
                # the command's default prior (the shipped RVAE, trained on the same training speakers), which
                # train-noise trains the U-ND models for by default
                out = f"{stem}_{method}"
                cmds.append((dict(it, method=method), ["pyro-dvae", "enhance", f"{stem}_noisy.wav",
                                                       "--noise", noise, "--mode", mode, *extra, "--ref",
                                                       f"{stem}_clean.wav", "--out", f"{out}.wav", "--out-json",
                                                       f"{out}.json"], f"{out}.log"))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda c: run(c[1], c[2]), cmds))
    rows = []
    for it, cmd, _ in cmds:
        s = json.load(open(cmd[cmd.index("--out-json") + 1]))
        rows.append({"name": it["name"], "method": it["method"], "snr": it["snr"],
                     "band": "8k" if it["name"].endswith("_8k") else "16k",
                     "recovered": s["recovered"], **{f"in_{k}": v for k, v in s["input"].items() if k != "rtf"},
                     **{f"out_{k}": v for k, v in s["output"].items() if k != "rtf"}})
    return rows


def stats(values, ref=None):
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    out = {"mean": float(np.nanmean(v)), "worst": float(np.nanmin(v)), "n": int(np.isfinite(v).sum())}
    if ref is not None:
        r = np.array([np.nan if x is None else x for x in ref], dtype=float)
        d = v - r
        out.update(mean_gain=float(np.nanmean(d)), worst_gain=float(np.nanmin(d)),
                   share_worse=float(np.nanmean(d < 0)), share_worse_1db=float(np.nanmean(d < -1)))
    return out


def report(rows_sep, rows_enh):
    rep = {"separation": {}, "enhancement": {}}
    if rows_sep:
        print("\nSEPARATION (SI-SDR dB: mean / worst; share of mixtures below IS-NMF, below the mixture)")
        for T in sorted({r["T"] for r in rows_sep}):
            for method in ("mixdvae", "is-nmf", "temporal-nmf"):
                cells = []
                for src in ("speech", "flute"):
                    sel = [r for r in rows_sep if r["T"] == T and r["method"] == method and r["source"] == src]
                    nmf = [r["si_sdr"] for r in rows_sep if r["T"] == T and r["method"] == "is-nmf"
                           and r["source"] == src]
                    st = stats([r["si_sdr"] for r in sel], [r["mixture"] for r in sel])
                    st["share_below_is_nmf"] = float(np.mean([a < b for a, b in zip([r["si_sdr"] for r in sel], nmf)]))
                    st["mixture_mean"] = float(np.mean([r["mixture"] for r in sel]))
                    rep["separation"][f"T{T} {method} {src}"] = st
                    cells.append(f"{src} {st['mean']:6.2f} / {st['worst']:6.2f} ({100 * st['share_below_is_nmf']:.0f} %"
                                 f", {100 * st['share_worse']:.0f} %)")
                print(f"T={T:3d} {method:13s} " + "   ".join(cells) + f"   n={st['n']}")
    for method in dict.fromkeys(r["method"] for r in rows_enh):
        print(f"\nENHANCEMENT {method} (mean in -> out; worst gain; share of files worse, worse by > 1 dB)")
        for band in ("16k", "8k"):
            for snr in sorted({r["snr"] for r in rows_enh}) + ["all"]:
                sel = [r for r in rows_enh if r["method"] == method and r["band"] == band
                       and (snr == "all" or r["snr"] == snr)]
                entry = {}
                for k in ("si_sdr", "pesq_wb", "estoi"):
                    entry[k] = stats([r[f"out_{k}"] for r in sel], [r[f"in_{k}"] for r in sel])
                    entry[k]["input_mean"] = float(np.nanmean([np.nan if r[f"in_{k}"] is None else r[f"in_{k}"]
                                                               for r in sel]))
                entry["recovered"] = sum(r["recovered"] is not None for r in sel)
                rep["enhancement"][f"{method} {band} {snr}"] = entry
                s, p, e = entry["si_sdr"], entry["pesq_wb"], entry["estoi"]
                print(f"{band:3s} SNR {str(snr):>3s}: SI-SDR {s['input_mean']:6.2f} -> {s['mean']:6.2f} (worst gain "
                      f"{s['worst_gain']:6.2f}, worse {100 * s['share_worse']:3.0f} %, "
                      f"> 1 dB {100 * s['share_worse_1db']:3.0f} %)  PESQ-wb {p['input_mean']:.2f} -> {p['mean']:.2f}"
                      f"  ESTOI {e['input_mean']:.2f} -> {e['mean']:.2f}  n={s['n']} recovered={entry['recovered']}")
    return rep


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="working folder (priors, audio, JSON); reused across runs")
    p.add_argument("--realdata", default=os.path.join(os.path.dirname(__file__), "../../../shared/realdata"))
    p.add_argument("--part", choices=["dev", "test"], default="dev")
    p.add_argument("--tasks", nargs="+", choices=["separate", "enhance"], default=["separate", "enhance"])
    p.add_argument("--frames", type=int, nargs="+", default=[50, 100, 300])
    p.add_argument("--mixtures", type=int, default=10, help="separation mixtures per length")
    p.add_argument("--per-snr", type=int, default=8, help="noisy utterances per SNR and band")
    p.add_argument("--workers", type=int, default=2, help="commands run at once (each on one thread)")
    p.add_argument("--enhance-methods", nargs="+", default=list(ENHANCE_METHODS), choices=ENHANCE_METHODS,
                   help="noise model - mode pairs run by pyro-dvae enhance")
    p.add_argument("--noise-train-files", type=int, default=60,
                   help="training speakers mixed with training noise for the U-ND noise models")
    args = p.parse_args(argv)
    if not os.path.isdir(args.realdata):
        sys.exit(f"no real data at {args.realdata}")
    os.makedirs(args.work, exist_ok=True)
    sp, fl = prepare(args.work, args.realdata, args.noise_train_files)
    deep = sorted({m.split("-")[0] for m in args.enhance_methods if not m.endswith("una")} & set(DEEP)) \
        if "enhance" in args.tasks else []
    trained = train(args.work, deep)
    for name, s in trained.items():
        print(f"{name}: best validation loss {s['best_val_loss']:.1f} at epoch {s['best_epoch']}"
              + (f", {s['seconds']:.0f} s ({s['seconds_per_epoch']:.1f} s per epoch)" if "seconds" in s else ""))
    rows_sep = separation(args.work, sp, fl, args.part, args.frames, args.mixtures, args.workers) \
        if "separate" in args.tasks else []
    noises = H.noise_split(os.path.join(args.realdata, "noise"))
    rows_enh = enhancement(args.work, sp, noises, args.part, args.per_snr, args.workers, args.enhance_methods) \
        if "enhance" in args.tasks else []
    rep = report(rows_sep, rows_enh)
    rep["priors"] = trained
    with open(os.path.join(args.work, f"report_{args.part}.json"), "w") as f:
        json.dump(_strict(rep), f, indent=1, allow_nan=False)


def _strict(obj):
    """``obj`` with every non-finite float replaced by ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


if __name__ == "__main__":
    main()
