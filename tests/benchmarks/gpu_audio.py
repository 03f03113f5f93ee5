# SPDX-License-Identifier: Apache-2.0
"""GPU against CPU: MixDVAE separation of a batch of 8 mixtures (T = 100, the shipped priors, 30 VEM iterations)
and `enhance --noise nmf` (the shipped LigHT-DVAE, defaults) on a 4 s utterance. Run on a machine with CUDA::

    python tests/benchmarks/gpu_audio.py
"""
import sys
import time

import numpy as np
import torch

from pyro_dvae import pretrained, priors
from pyro_dvae.data.synthetic_audio import speech_like
from pyro_dvae.models.enhancement import enhance
from pyro_dvae.models.separation import run_separation

if not torch.cuda.is_available():
    sys.exit("gpu_audio.py compares CUDA with the CPU: no CUDA device here")
torch.set_num_threads(1)
rng = np.random.default_rng(0)
mix = rng.standard_normal((8, 100 * 256 + 768)).astype(np.float32)
clean = speech_like(4.0, seed=0)
noisy = clean + 0.3 * np.std(clean) * rng.standard_normal(len(clean))
for device in ("cpu", "cuda"):
    pl = [priors.load_spectral(pretrained.path(n)).to(device).eval() for n in ("speech", "flute")]
    run_separation(mix[:1], pl, names=["s", "f"], num_iters=2)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = run_separation(mix, pl, names=["s", "f"], num_iters=30)
    sep = time.perf_counter() - t
    sp = priors.load_spectral(pretrained.path("speech_light")).to(device).eval()
    enhance(noisy[:16000], sp, "nmf", "una", num_iters=2)
    t = time.perf_counter()
    enhance(noisy, sp, "nmf", "una")
    enh = time.perf_counter() - t
    per_mix = 1000 * out.result.seconds_per_iter / 8
    print(f"{device}: separation batch 8 x T=100, 30 VEM iterations: {sep:.2f} s ({per_mix:.1f} ms "
          f"per iteration and mixture); enhance nmf (LigHT prior, defaults) 4 s utterance: {enh:.2f} s", flush=True)
