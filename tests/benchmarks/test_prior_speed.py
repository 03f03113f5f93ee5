# SPDX-License-Identifier: Apache-2.0
"""Forward + backward of one training step (negative ELBO, analytic KL) per prior.

B = 32 sequences, T = 50 frames, x_dim = 513 (a 1024-point power spectrum), z_dim = 16, spectral
(Itakura-Saito) emission, sizes of the reference DVAE library's speech configurations: dense 256,
LSTM 128, latent MLPs 64-32 (VAE: one dense layer of 128). A round is one step, so the table's median is
BENCHMARKS.md's figure; it is also printed after the table (one line per prior) and kept in ``extra_info``
(``ms_per_step``, with the reference's ms and the ratio). Run with::

    pytest tests/benchmarks --benchmark-only --benchmark-columns=median,iqr,rounds
"""

import pytest
import torch

from pyro_dvae import priors

# the reference DVAE library on the same machine class (ms per forward + backward)
REFERENCE_MS = {"vae": 25, "dkf": 127, "storn": 108, "vrnn": 160, "srnn": 128, "rvae": 106,
                "rvae-noncausal": 165, "dsae": 198}
SPEECH_SIZES = {"vae": dict(dense_dim=128, z_dense=[]), "deepar": dict(z_dim=0, z_dense=[])}  # deepar: no latents


@pytest.mark.parametrize("name", priors.available(multimodal=False))
def test_forward_backward_speed(time_training_step, readme_units, name):
    torch.manual_seed(0)
    prior = priors.build(name, x_dim=513, emission="spectral", **{"z_dim": 16, **SPEECH_SIZES.get(name, {})})
    loss = time_training_step(prior, torch.rand(32, 50, 513), warmup=3, rounds=15)
    assert torch.isfinite(loss)
    ms = 1000 * readme_units.round_median_s  # a round is one step
    figures = dict(ms_per_step=ms)
    summary = (f"{ms:.1f} ms per forward + backward training step (B=32, T=50; median of 15 rounds, "
               f"torch threads: {torch.get_num_threads()})")
    if name in REFERENCE_MS:  # the reference library has no Deep AR model
        figures.update(reference_ms=REFERENCE_MS[name], ratio_to_reference=ms / REFERENCE_MS[name])
        summary += f", the reference {REFERENCE_MS[name]} ms, ratio {figures['ratio_to_reference']:.2f}"
    readme_units(summary, **figures)
