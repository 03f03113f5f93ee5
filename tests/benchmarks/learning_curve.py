# SPDX-License-Identifier: Apache-2.0
"""Learning curve of a speech prior: analysis-resynthesis against minutes of training speech and against epochs.

Trains ``--model`` (default the frame VAE) with ``pyro-dvae train-prior`` and its defaults on the first speakers of
the *training* part of :func:`pyro_dvae.data.heldout.speech_split` (nested subsets of about ``--minutes`` minutes
each, the last one all of it), for each of ``--epochs``, and scores each checkpoint with ``pyro-dvae eval-prior`` on
the *dev* speakers (SI-SDR mean and worst file). Whether more speech, more epochs or neither would help is then read
off the table instead of guessed.

Usage (needs ``../shared/realdata``; the frame VAE takes about 25 minutes on one thread)::

    OMP_NUM_THREADS=1 python tests/benchmarks/learning_curve.py --work curve [--model vae] [--minutes 10 25 0]
        [--epochs 25 50 100] [--limit 30]
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))


def run(cmd, log):
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")


def subsets(files, minutes):
    """``{minutes: files}``: the shortest prefix of ``files`` holding at least that much speech (0: all of it)."""
    import soundfile as sf

    total, cum = 0.0, []
    for f in files:
        total += sf.info(f).duration / 60
        cum.append(total)
    out = {}
    for m in minutes:
        n = len(files) if not m or m >= total else next(i + 1 for i, c in enumerate(cum) if c >= m)
        out[round(cum[n - 1], 1)] = files[:n]
    return out


def main(argv=None):
    from pyro_dvae.data import heldout

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", required=True)
    p.add_argument("--realdata", default=os.path.join(HERE, "..", "..", "..", "shared", "realdata"))
    p.add_argument("--model", default="vae")
    p.add_argument("--minutes", type=float, nargs="+", default=[10, 25, 0], help="training speech (0: all)")
    p.add_argument("--epochs", type=int, nargs="+", default=[25, 50, 100])
    p.add_argument("--limit", type=int, default=30, help="dev files scored")
    a = p.parse_args(argv)
    split = heldout.speech_split(os.path.join(a.realdata, "speech", "librispeech", "train-clean-100"))
    os.makedirs(a.work, exist_ok=True)
    dev = os.path.join(a.work, "speech_dev")
    heldout.link_files(split["dev"], dev)
    sizes = subsets(split["train"], a.minutes)
    full = max(sizes)
    rows = []
    for minutes, files in sorted(sizes.items()):
        data = os.path.join(a.work, f"train_{minutes:g}min")
        heldout.link_files(files, data)
        for epochs in a.epochs if minutes == full else [max(a.epochs)]:
            name = os.path.join(a.work, f"{a.model}_{minutes:g}min_{epochs}ep")
            if not os.path.exists(name + ".pt.json"):
                run(["pyro-dvae", "train-prior", "--model", a.model, "--data", data, "--epochs", str(epochs),
                     "--out", name + ".pt", "--out-json", name + ".pt.json", "--quiet"], name + ".train.log")
            if not os.path.exists(name + ".eval.json"):
                run(["pyro-dvae", "eval-prior", "--prior", name + ".pt", "--data", dev, "--limit", str(a.limit),
                     "--out-json", name + ".eval.json"], name + ".eval.log")
            ev, tr = json.load(open(name + ".eval.json")), json.load(open(name + ".pt.json"))
            sdr = [r["si_sdr"] for r in ev["per_file"]]
            rows.append((minutes, len(files), epochs, tr["best_val_loss"], tr["seconds"], ev["mean"]["si_sdr"],
                         min(sdr)))
    print(f"{a.model}: analysis-resynthesis of {a.limit} dev utterances against training speech and epochs "
          "(train-prior defaults otherwise)")
    print("| training speech (min) | speakers | epochs | best val. loss | training s | SI-SDR mean | worst |")
    print("|---|---|---|---|---|---|---|")
    for m, n, e, v, s, mean, worst in rows:
        print(f"| {m:g} | {n} | {e} | {v:.1f} | {s:.0f} | {mean:.2f} | {worst:.2f} |")


if __name__ == "__main__":
    main()
