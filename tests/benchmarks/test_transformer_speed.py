# SPDX-License-Identifier: Apache-2.0
"""LigHT-DVAE / HiT-DVAE against SRNN at a matched parameter count: one training step, and the decoder fed its
own past step by step (``decode_stepwise``, what the VEM E-S steps and the GEN analysis-resynthesis call).

Spectral emission, x_dim = 513, z_dim = 16. SRNN: dense 256, LSTM 128, latent MLP 64-32 (786,177 parameters);
LigHT-DVAE: width 116, 4 heads, 2 layers, feed-forward 232 (802,009); HiT-DVAE: the same width (1,146,297: its
second decoder). Training step: B = 32, T = 50, forward + backward of the negative ELBO. Stepwise decoding:
B = 8, T = 50, no gradient; the figure is ms per frame. Run with::

    pytest tests/benchmarks/test_transformer_speed.py --benchmark-only --benchmark-columns=median,iqr,rounds
"""

import pytest
import torch

from pyro_dvae import priors

SIZES = {"srnn": {}, "light-dvae": dict(dense_dim=116, ff_dim=232), "hit-dvae": dict(dense_dim=116, ff_dim=232)}


def _build(name):
    torch.manual_seed(0)
    return priors.build(name, x_dim=513, z_dim=16, emission="spectral", **SIZES[name])


@pytest.mark.parametrize("name", list(SIZES))
def test_training_step_at_matched_size(time_training_step, readme_units, name):
    prior = _build(name)
    loss = time_training_step(prior, torch.rand(32, 50, 513) + 0.01, warmup=2, rounds=10)
    assert torch.isfinite(loss)
    params = sum(p.numel() for p in prior.parameters())
    ms = 1000 * readme_units.round_median_s
    readme_units(f"{ms:.1f} ms per training step (B=32, T=50), {params:,} parameters, torch threads "
                 f"{torch.get_num_threads()}", ms_per_step=ms, parameters=params)


@pytest.mark.parametrize("name", list(SIZES))
def test_decode_stepwise_per_frame(benchmark, readme_units, name):
    prior = _build(name).eval()
    z, x = torch.randn(8, 50, 16), torch.rand(8, 50, 513) + 0.01

    def run():
        with torch.no_grad():
            return prior.decode_stepwise(z, lambda t, mean, var: mean, x=x)[1]

    run()
    v = benchmark.pedantic(run, rounds=5, iterations=1)
    assert v.shape == (8, 50, 513) and torch.isfinite(v).all()
    ms = 1000 * readme_units.round_median_s / 50
    readme_units(f"{ms:.2f} ms per frame of decode_stepwise (B=8, T=50), torch threads {torch.get_num_threads()}",
                 ms_per_frame=ms)
