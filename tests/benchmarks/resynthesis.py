# SPDX-License-Identifier: Apache-2.0
"""Speech analysis-resynthesis benchmark of the spectral priors of the zoo (the LigHT-DVAE paper's seed table).

Trains VAE, DKF, causal RVAE, SRNN with scheduled sampling (the ``train-prior`` default), SRNN with teacher forcing
(``--ss-max 0``), HiT-DVAE and LigHT-DVAE with one recipe (``pyro-dvae train-prior`` and its defaults, the
*training* speakers of :func:`pyro_dvae.data.heldout.speech_split`), then runs ``pyro-dvae eval-prior`` on the
dev or test speakers with the decoder's own past (GEN) and the ground-truth past (GT), and prints the table with
parameter counts and seconds per training epoch.

Usage (needs ``../shared/realdata``; about 2.5 h of training on two cores the first time, then minutes)::

    python tests/benchmarks/resynthesis.py --work resynth --part dev
    python tests/benchmarks/resynthesis.py --work resynth --part test

A checkpoint already in ``--work`` is reused (``speech.pt`` / ``rvae.pt`` of ``audio_heldout.py``'s work folder
are the same commands: link them as ``srnn-ss.pt`` / ``rvae.pt`` with their ``.json``).
"""

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
#: name -> train-prior arguments
MODELS = {"vae": ["--model", "vae"], "dkf": ["--model", "dkf"], "rvae": ["--model", "rvae"],
          "srnn-ss": ["--model", "srnn"], "srnn-tf": ["--model", "srnn", "--ss-max", "0"],
          "hit-dvae": ["--model", "hit-dvae"], "light-dvae": ["--model", "light-dvae"]}
AUTOREGRESSIVE = {"srnn-ss", "srnn-tf", "hit-dvae", "light-dvae"}
#: The paper's Voice Bank rows (RMSE / SI-SDR / PESQ / ESTOI, generated past), for reference.
PAPER = {"vae": (0.052, 8.4, 3.24, 0.89), "dkf": (0.048, 9.3, 3.44, 0.91), "rvae": (0.050, 8.9, 3.39, 0.90),
         "srnn-ss": (0.044, 10.1, 3.42, 0.91), "srnn-tf": (0.102, -0.1, 2.15, 0.75),
         "hit-dvae": (0.039, 11.4, 3.60, 0.93), "light-dvae": (0.038, 11.6, 3.58, 0.93)}


def run(cmd, log):
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")


def prepare(work, realdata, part):
    sys.path.insert(0, os.path.join(HERE, "..", ".."))
    from pyro_dvae.data import heldout

    split = heldout.speech_split(os.path.join(realdata, "speech", "librispeech", "train-clean-100"))
    for name in ("train", part):
        heldout.link_files(split[name], os.path.join(work, f"speech_{name}"))


def train(work, models, workers):
    cmds = []
    for name in models:
        out = os.path.join(work, f"{name}.pt")
        if not os.path.exists(out + ".json"):
            cmds.append((["pyro-dvae", "train-prior", *MODELS[name], "--data", os.path.join(work, "speech_train"),
                          "--out", out, "--quiet", "--out-json", out + ".json"], out + ".log"))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda c: run(*c), cmds))


def evaluate(work, models, part, limit, workers):
    cmds, results = [], {}
    for name in models:
        for past in ("gen", "gt") if name in AUTOREGRESSIVE else ("gen",):
            js = os.path.join(work, f"eval_{part}_{name}_{past}.json")
            results[name, past] = js
            if not os.path.exists(js):
                cmd = ["pyro-dvae", "eval-prior", "--prior", os.path.join(work, f"{name}.pt"), "--data",
                       os.path.join(work, f"speech_{part}"), "--past", past, "--out-json", js]
                cmds.append((cmd + (["--limit", str(limit)] if limit else []), js[:-5] + ".log"))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda c: run(*c), cmds))
    out = {}
    for (name, past), js in results.items():
        out[name, past] = json.load(open(js))
        if name not in AUTOREGRESSIVE:
            out[name, "gt"] = out[name, "gen"]
    return out


def table(work, models, res, part):
    fmt = lambda v, d=2: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [f"Analysis-resynthesis, {part} speakers ({res[models[0], 'gen']['files']} utterances), 50-frame segments",
             "| model | parameters | s / epoch | GEN: RMSE / SI-SDR / PESQ-wb / PESQ-nb / ESTOI | GT: SI-SDR / "
             "PESQ-wb / ESTOI | paper (GEN, Voice Bank): RMSE / SI-SDR / PESQ / ESTOI |", "|---|---|---|---|---|---|"]
    for name in models:
        train_js = json.load(open(os.path.join(work, f"{name}.pt.json")))
        g, t = res[name, "gen"]["mean"], res[name, "gt"]["mean"]
        lines.append(f"| {name} | {res[name, 'gen']['parameters']:,} | {train_js['seconds_per_epoch']:.1f} | "
                     f"{fmt(g['rmse'], 3)} / {fmt(g['si_sdr'])} / {fmt(g['pesq_wb'])} / {fmt(g['pesq_nb'])} / "
                     f"{fmt(g['estoi'])} | {fmt(t['si_sdr'])} / {fmt(t['pesq_wb'])} / {fmt(t['estoi'])} | "
                     + " / ".join(str(v) for v in PAPER[name]) + " |")
    return "\n".join(lines)


def _segment_power(x, segment=50):
    """Peak-normalised power ``(n, segment, F)`` of the whole segments of ``x``."""
    import numpy as np
    import torch

    from pyro_dvae.data.audio import stft

    X = stft(torch.as_tensor(x / np.abs(x).max(), dtype=torch.float32))
    n = X.shape[0] // segment
    return (X[: n * segment].abs() ** 2).reshape(n, segment, -1)


def swap_w(prior, xa, xb):
    """Decode utterance A's ``z`` with B's ``w`` (generated past): the log-spectral distance (dB) of the
    long-term average spectrum of the output to A's and to B's, for the output with A's own ``w`` and with B's,
    and the correlation of the frame-energy contour (dB) with A's. Returns a dict and the swapped power."""
    import torch

    from pyro_dvae.priors import SequentialNormal

    Pa, Pb = _segment_power(xa), _segment_power(xb)
    with torch.no_grad():
        qa, sa = prior.encode(Pa, with_statics=True)
        _, sb = prior.encode(Pb, with_statics=True)
        za = qa.noiseless() if isinstance(qa, SequentialNormal) else qa.mean
        wb = sb["v"].mean(0, keepdim=True).expand_as(sa["v"])  # B's w, averaged over its segments
        feed = lambda t, mean, var: mean  # noqa: E731
        own = prior.decode_stepwise(za, feed, latents={"v": sa["v"]})[1].reshape(-1, Pa.shape[-1])
        swapped = prior.decode_stepwise(za, feed, latents={"v": wb})[1].reshape(-1, Pa.shape[-1])
    ltas = lambda P: 10 * torch.log10(P.reshape(-1, P.shape[-1]).mean(0) + 1e-10)  # noqa: E731
    lsd = lambda a, b: float((ltas(a) - ltas(b)).pow(2).mean().sqrt())  # noqa: E731
    contour = lambda P: 10 * torch.log10(P.reshape(-1, P.shape[-1]).sum(-1) + 1e-10)  # noqa: E731
    corr = lambda a, b: float(torch.corrcoef(torch.stack([contour(a), contour(b)]))[0, 1])  # noqa: E731
    return {"own_w": {"ltas_dist_to_a": lsd(own, Pa), "ltas_dist_to_b": lsd(own, Pb), "energy_corr_a": corr(own, Pa)},
            "swapped_w": {"ltas_dist_to_a": lsd(swapped, Pa), "ltas_dist_to_b": lsd(swapped, Pb),
                          "energy_corr_a": corr(swapped, Pa)}}, swapped


def figure(work, models, part, pairs=8):
    """Spectrograms of one utterance resynthesised by each model (GEN), and the swap-w measurements of LigHT- and
    HiT-DVAE over ``pairs`` pairs of utterances of different speakers; writes ``figure_<part>.png`` and
    ``swap_w_<part>.json``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from pyro_dvae.data import audio
    from pyro_dvae.data.heldout import active_segment
    from pyro_dvae.priors import load_spectral
    from pyro_dvae.resynthesis import decoded_power

    files = audio.audio_files(os.path.join(work, f"speech_{part}"))
    clips = [active_segment(audio.load_audio(f), 3.2) for f in files[: 2 * pairs]]  # each file read once
    P = _segment_power(clips[0])
    loaded = {m: load_spectral(os.path.join(work, f"{m}.pt")).eval() for m in models}
    panels = [("input", P.reshape(-1, P.shape[-1]))]
    for m, prior in loaded.items():
        panels.append((f"{m} (GEN)", decoded_power(prior, P, "gen").reshape(-1, P.shape[-1])))
    swaps = {}
    for m in [m for m in ("light-dvae", "hit-dvae") if m in loaded]:
        rows = [swap_w(loaded[m], clips[2 * k], clips[2 * k + 1]) for k in range(len(clips) // 2)]
        swaps[m] = {kind: {key: float(np.mean([r[0][kind][key] for r in rows])) for key in rows[0][0][kind]}
                    for kind in ("own_w", "swapped_w")}
        swaps[m]["pairs"] = len(rows)
        panels.append((f"{m}: utterance 1's z with utterance 2's w", rows[0][1]))
    with open(os.path.join(work, f"swap_w_{part}.json"), "w") as f:
        json.dump(swaps, f, indent=1)
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.6 * len(panels)), sharex=True)
    for ax, (title, power) in zip(np.atleast_1d(axes), panels):
        ax.imshow(10 * torch.log10(power.T + 1e-10).numpy(), origin="lower", aspect="auto", cmap="magma",
                  vmin=-80, vmax=20, extent=(0, power.shape[0] * 256 / 16000, 0, 8))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz")
    np.atleast_1d(axes)[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(os.path.join(work, f"figure_{part}.png"), dpi=90)
    return swaps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="working folder (checkpoints, links, JSON); reused across runs")
    p.add_argument("--realdata", default=os.path.join(HERE, "..", "..", "..", "shared", "realdata"))
    p.add_argument("--part", choices=["dev", "test"], default="dev")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--limit", type=int, help="evaluate the first N utterances only")
    p.add_argument("--workers", type=int, default=2, help="commands run at once (each on one thread)")
    p.add_argument("--figure", action="store_true",
                   help="also write figure_<part>.png (spectrograms, swap w) and swap_w_<part>.json")
    args = p.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    prepare(args.work, args.realdata, args.part)
    train(args.work, args.models, args.workers)
    res = evaluate(args.work, args.models, args.part, args.limit, args.workers)
    text = table(args.work, args.models, res, args.part)
    print(text)
    with open(os.path.join(args.work, f"table_{args.part}.md"), "w") as f:
        f.write(text + "\n")
    if args.figure:
        print(json.dumps(figure(args.work, args.models, args.part), indent=1))


if __name__ == "__main__":
    main()
