# SPDX-License-Identifier: Apache-2.0
"""One U-NA Adam step (``inference.run("svi", ...)``) of speech enhancement on a 100-frame utterance, one thread.

Speech prior: causal RVAE with the speech sizes of the DVAE library (z 16, dense 256, LSTM 128, latent MLPs
64-32), noise models with the reference sizes (LSTM 128, dense 128). ``parallel``: the encoder's draw runs
without autograd and one teacher-forced pass is differentiated (the package default); ``sequential``:
differentiating through the step-by-step draw (the reference's estimator). The table's time is one round: one
``fit_svi`` of 30 steps, its set-up and max-kept checks included. BENCHMARKS.md's figure, printed after the table
(one line per case) and kept in ``extra_info``, is the median milliseconds per step (``ms_per_step``, steps
6-30), with the round / 30 (``round_ms_per_step``) and the ratio to the reference implementation (Lin et al. 2023,
``DDGM_SE``, measured on CPU with torch 2.13: 120 ms LV, 87 ms NO, 84 ms NOLV). Run with::

    pytest tests/benchmarks/test_enhancement_speed.py --benchmark-only --benchmark-columns=median,rounds

:func:`test_heavy_tailed_output_gain_speed` times the output gain that ``enhance`` computes once per utterance.
"""

import numpy as np
import pytest
import torch

from pyro_dvae import priors
from pyro_dvae.models import enhancement as E

REFERENCE_MS = {"lv": 120, "no": 87, "nolv": 84}
STEPS = 30  # Adam steps per timed fit_svi (one round)


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "sequential"])
@pytest.mark.parametrize("name", ["lv", "no", "nolv"])
def test_una_step_speed(benchmark, readme_units, name, parallel):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        prior = priors.build("rvae", x_dim=513, z_dim=16, emission="spectral", dense_dim=256, rnn_dim=128,
                             z_dense=[64, 32])
        power = torch.rand(1, 100, 513) ** 3
        model = E.build_model(prior, name, "una")
        model.parallel = parallel
        if not parallel:
            model._fast = None
        E.fit_svi(model, power, num_steps=3)  # warm-up
        result = benchmark.pedantic(lambda: E.fit_svi(model, power, num_steps=STEPS), rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    ms = 1000 * float(np.median(result.iter_times[5:]))
    assert np.isfinite(result.losses).all()
    figures = dict(ms_per_step=ms, reference_ms=REFERENCE_MS[name], speedup=REFERENCE_MS[name] / ms,
                   round_ms_per_step=1000 * readme_units.round_median_s / STEPS)
    readme_units(
        f"{ms:.1f} ms per U-NA Adam step on 100 frames ({name}, {'parallel' if parallel else 'sequential'} draw, "
        f"median of steps 6-{STEPS}, 1 thread), {figures['speedup']:.1f}x vs the reference ({REFERENCE_MS[name]} ms); "
        f"the table's round / {STEPS} = {figures['round_ms_per_step']:.1f} ms (one fit_svi: set-up and max-kept "
        "checks included)",
        **figures,
    )


def test_heavy_tailed_output_gain_speed(benchmark, readme_units):
    """The output gain of ``enhance`` (:func:`~pyro_dvae.masks.scale_mixture_gain`, shape 0.25) for the 8
    posterior draws of a 4 s utterance (251 frames x 513 bins), one thread::

        pytest tests/benchmarks/test_enhancement_speed.py --benchmark-only -k output_gain
    """
    from pyro_dvae.masks import scale_mixture_gain

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        v_s, v_n = torch.rand(8, 1, 251, 513) * 2, torch.rand(8, 1, 251, 513)
        power = torch.rand(1, 251, 513) * 3
        scale_mixture_gain(v_s, v_n, power, 0.25)  # warm-up
        gain = benchmark.pedantic(lambda: scale_mixture_gain(v_s, v_n, power, 0.25), rounds=5, iterations=1)
    finally:
        torch.set_num_threads(threads)
    assert gain.shape == power.shape and ((gain >= 0) & (gain <= 1)).all()
    readme_units(f"{1000 * readme_units.round_median_s:.0f} ms for the heavy-tailed gain of 8 draws of a 4 s "
                 "utterance (1 thread)", ms=1000 * readme_units.round_median_s)
