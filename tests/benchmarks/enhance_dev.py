# SPDX-License-Identifier: Apache-2.0
"""Enhancement on the *dev* utterances of the held-out protocol: what BENCHMARKS.md's dev comparisons of priors and
settings ran (one noise model, one mode, one band). Never point it at the test part to choose anything. ::

    OMP_NUM_THREADS=1 python tests/benchmarks/enhance_dev.py --prior speech_light --noise nmf --band 16k
    OMP_NUM_THREADS=1 python tests/benchmarks/enhance_dev.py --prior light.pt --noise nmf --band 8k \\
        --options '{"num_iters": 30}'
    OMP_NUM_THREADS=1 python tests/benchmarks/enhance_dev.py --prior speech_light --noise lv --mode unda \\
        --noise-model lv.pt --band 8k

16 utterances per band (4 per input SNR of -5, 0, 5, 10 dB; dev speakers x dev noise segments, 4 s each); prints
one line per file and the mean SI-SDR gain, the worst file, the share of files made worse and the mean ESTOI
change.
"""

import argparse
import json
import os
import time
import warnings

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    from pyro_dvae import pretrained
    from pyro_dvae.data import heldout as H
    from pyro_dvae.metrics import si_sdr
    from pyro_dvae.metrics.audio import estoi
    from pyro_dvae.models.enhancement import EnhanceConfig, enhance, load_speech_prior

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", default="speech_light", help="prior checkpoint or shipped name")
    p.add_argument("--noise", default="nmf", choices=["nmf", "lv", "no", "nolv"])
    p.add_argument("--mode", default="una", choices=["una", "und", "unda"])
    p.add_argument("--noise-model", help="noise checkpoint of pyro-dvae train-noise (und / unda)")
    p.add_argument("--band", default="16k", choices=["16k", "8k"])
    p.add_argument("--per-snr", type=int, default=4, help="dev utterances per input SNR")
    p.add_argument("--snrs", type=int, nargs="+", default=[-5, 0, 5, 10], help="input SNRs in dB")
    p.add_argument("--options", default="{}", help="JSON fields of EnhanceConfig (keyword arguments of enhance())")
    p.add_argument("--defaults", default="{}",
                   help='JSON updates of the option groups of EnhanceConfig (nmf, deep), e.g. '
                        '\'{"deep": {"select": null}}\'')
    p.add_argument("--realdata", default=os.path.join(HERE, "..", "..", "..", "shared", "realdata"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    config = EnhanceConfig(noise=args.noise, mode=args.mode, noise_checkpoint=args.noise_model)
    config = config.replace(**json.loads(args.defaults), **json.loads(args.options))
    warnings.simplefilter("ignore")
    prior = load_speech_prior(pretrained.resolve(args.prior))
    sp = H.speech_split(os.path.join(args.realdata, "speech", "librispeech", "train-clean-100"))
    items = H.noisy_set(sp["dev"], H.noise_split(os.path.join(args.realdata, "noise")), per_snr=args.per_snr,
                        snrs=tuple(args.snrs), narrow=args.band == "8k", part="dev", seconds=4.0)
    gains, d_estoi, t0 = [], [], time.perf_counter()
    for it in items:
        out = enhance(it["noisy"], prior, config)
        a, b = si_sdr(it["noisy"], it["clean"]), si_sdr(out.waveform, it["clean"])
        d = estoi(out.waveform, it["clean"], 16000) - estoi(it["noisy"], it["clean"], 16000)
        gains.append(b - a)
        d_estoi.append(d)
        print(f"{it['name']:40s} in {a:6.2f} out {b:6.2f} gain {b - a:6.2f} dESTOI {d:+.3f}", flush=True)
    g = np.array(gains)
    print(f"MEAN gain {g.mean():.2f} worst {g.min():.2f} share worse {(g < 0).mean():.2f} dESTOI "
          f"{np.mean(d_estoi):+.4f} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
