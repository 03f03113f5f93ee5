# SPDX-License-Identifier: Apache-2.0
"""Choose MixDVAE separation settings on the DEV split of ``scass_mixdvae.py`` (never the test mixtures).

Loads the two priors saved by ``scass_mixdvae.py --dev --save-priors DIR`` (held-out test speakers and notes
are left out; the dev speakers / notes are split off the training files), builds the same 20 dev mixtures per
length, and prints the mean SI-SDR (speech, flute) of :func:`run_separation` for every setting given, all dev
mixtures of a length run as one batch. ``--baselines`` also prints IS-NMF, temporal NMF, the mixture and the
oracle Wiener mask on the same mixtures. Usage::

    python examples/scass_mixdvae.py --speech-dir ../shared/realdata/speech \\
        --music-dir ../shared/realdata/music/iowa_flute --pitch-shift -2 -1 0 1 2 --dev --save-priors dev
    python examples/scass_dev_sweep.py dev '[{}, {"init": "prior"}, {"mode": "parallel"}]' --baselines
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scass_mixdvae as ex  # noqa: E402

from pyro_dvae.data import mixtures as mx  # noqa: E402
from pyro_dvae.engine import threads  # noqa: E402
from pyro_dvae.metrics import si_sdr  # noqa: E402
from pyro_dvae.models.separation import run_separation  # noqa: E402


def scores(waves, refs):
    return np.array([[si_sdr(w[k], r[k]) for k in range(len(r))] for w, r in zip(waves, refs)]).mean(0).round(2)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("priors", help="folder of speech.pt / flute.pt saved by scass_mixdvae.py --dev --save-priors")
    p.add_argument("settings", help="JSON list of run_separation keyword dicts")
    p.add_argument("--speech-dir", default="../shared/realdata/speech")
    p.add_argument("--music-dir", default="../shared/realdata/music/iowa_flute")
    p.add_argument("--pitch-shift", type=float, nargs="+", default=[-2, -1, 0, 1, 2], help="NMF training notes")
    p.add_argument("--frames", type=int, nargs="+", default=[50, 100])
    p.add_argument("--num-mixtures", type=int, default=20)
    p.add_argument("--baselines", action="store_true")
    args = p.parse_args(argv)
    threads(1)
    data = ex.real_data(args.speech_dir, args.music_dir, 0, dev=True)
    load = argparse.Namespace(load_priors=args.priors, split="dev")
    prior_list = [ex.train_source_prior(name, None, load) for name in ex.SOURCES]
    train = {"speech": data["speech"][0],
             "flute": [ex.pitch_shift(x, k) for x in data["flute"][0] for k in args.pitch_shift]}
    sep = ex.nmf_dictionaries(train, argparse.Namespace(nmf_rank=64, nmf_iters=100, nmf_alpha=1.0))
    sets = {}
    for T in args.frames:
        ms = mx.make_mixtures(data["speech"][1], data["flute"][1], args.num_mixtures, num_frames=T, smr_db=-10.0,
                              seed=0)
        sets[T] = (np.stack([m.mix for m in ms]), np.stack([[m.sources["speech"], m.sources["music"]] for m in ms]))
    if args.baselines:
        for method in ("is_nmf", "temporal_nmf", "mixture", "oracle_wiener"):
            row = {T: scores([run_separation(x, names=list(ex.SOURCES), method=method, refs=r, nmf=sep).waveforms
                              for x, r in zip(X, R)], R).tolist() for T, (X, R) in sets.items()}
            print(f"{method:70s} " + "  ".join(f"T={T} {v}" for T, v in row.items()), flush=True)
    for kw in json.loads(args.settings):
        t0 = time.perf_counter()
        row = {T: scores(run_separation(X, prior_list, names=list(ex.SOURCES), nmf=sep, **kw).waveforms, R).tolist()
               for T, (X, R) in sets.items()}
        print(f"mixdvae {json.dumps(kw):62s} " + "  ".join(f"T={T} {v}" for T, v in row.items()) +
              f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
