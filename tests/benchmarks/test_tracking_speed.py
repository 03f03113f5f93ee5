# SPDX-License-Identifier: Apache-2.0
"""Speed of one MixDVAE VEM iteration (E-W, E-Z, E-S, M-step, exact ELBO) on CPU, one thread.

Default setting T = 60 frames, N = 3 sources, K = 3 detections, the shipped SRNN prior, MixDVAE's parallel E-S
step; the other parameters vary one at a time (``mode="velocity"``: the E-S step of ``pyro-dvae track-mot``). Run with::

    pytest tests/benchmarks/test_tracking_speed.py --benchmark-only --benchmark-columns=median,rounds

The table's times are per round (one ``vem`` run of ten iterations over B sequences, set-up included). The
BENCHMARKS.md's figures are printed after the table, one line per case, and kept in ``extra_info``: ms per iteration
per sequence (``ms_per_iter_per_seq``: the median of ``vem``'s own per-iteration times over five runs of ten
iterations; the run's set-up, about 0.3 ms, is not an iteration), the ratio of one VEM iteration to one batched
encoder + decoder pass of the prior over the same B * N sequences, the speed-up over the reference (B = 8, 64)
and, to compare with the table, its round median / (10 B) (``round_ms_per_iter_per_seq``).
"""

import time

import numpy as np
import pytest
import torch

from pyro_dvae import inference, pretrained
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
from pyro_dvae.models.tracking import TrackingGuide, TrackingModel

# the reference MixDVAE VEM, same machine class, T=60, N=3, K=3: ms per iteration per sequence
REFERENCE_MS_PER_SEQ = {8: 21.5, 64: 6.0}
ITERS = 10  # iterations per timed run: the figure is the median of vem's per-iteration times
CASES = [dict(B=8), dict(B=64), dict(B=16, T=30), dict(B=16, T=120), dict(B=16, N=2), dict(B=16, N=5),
         dict(B=16, K=6), dict(B=16), dict(B=8, mode="velocity"), dict(B=64, mode="velocity")]


def scene(B, T=60, N=3, K=3):
    gt = torch.stack([torch.as_tensor(crossing_scene(T, N, seed=s)) for s in range(B)])
    obs, mask, _ = simulate_detections(gt.numpy(), seed=0)
    obs, mask = torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(mask)
    if K > N:  # extra clutter slots, masked out half of the time
        extra = torch.rand(B, T, K - N, 4) * 0.5
        extra[..., 2:] += extra[..., :2] + 0.05
        obs = torch.cat([obs, extra], 2)
        mask = torch.cat([mask, torch.rand(B, T, K - N) < 0.5], 2)
    return obs, mask


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_vem_iteration_speed(benchmark, readme_units, case):
    torch.set_num_threads(1)
    B, T, N, K = case["B"], case.get("T", 60), case.get("N", 3), case.get("K", 3)
    obs, mask = scene(B, T, N, K)
    prior = pretrained.load()
    model = TrackingModel(prior, N, clutter_prob=0.1 if K > N else 0.0)
    mode = case.get("mode", "parallel")  # "velocity": track-mot's E-S step, with the prior's forecast latents
    latents = "prior" if mode == "velocity" else "posterior"
    guide = TrackingGuide(model, mode=mode, latents=latents).initialise(obs, mask)
    iter_times = []

    def ten_iterations():
        result = inference.run("vem", model, guide, obs, mask, num_iters=ITERS)
        iter_times.extend(result.iter_times)
        return result

    with torch.no_grad():
        inference.run("vem", model, guide, obs, mask, num_iters=2)
        result = benchmark.pedantic(ten_iterations, rounds=5, iterations=1)
        s = guide["s"].mean
        t0 = time.perf_counter()
        for _ in range(5):
            prior.decode(prior.encode(s).rsample(), s)
        pass_s = (time.perf_counter() - t0) / 5
    iter_s = float(np.median(iter_times))  # one VEM iteration (vem's own per-iteration clock)
    ms = 1000 * iter_s / B
    ratio = iter_s / pass_s
    table_ms = 1000 * readme_units.round_median_s / (ITERS * B)  # the table's round: one vem run of ITERS
    summary = (f"{ms:.3f} ms per iteration per sequence (median of {len(iter_times)} vem iterations; B={B}, T={T}, "
               f"N={N}, K={K}, torch threads: {torch.get_num_threads()}), iteration / encoder+decoder pass {ratio:.2f}")
    figures = dict(ms_per_iter_per_seq=ms, ratio_to_encoder_decoder_pass=ratio, round_ms_per_iter_per_seq=table_ms)
    if B in REFERENCE_MS_PER_SEQ and T == 60 and N == 3 and K == 3:
        figures["speedup_vs_reference"] = REFERENCE_MS_PER_SEQ[B] / ms
        summary += f", {figures['speedup_vs_reference']:.0f}x vs the reference ({REFERENCE_MS_PER_SEQ[B]} ms)"
    summary += f"; the table's round median / ({ITERS} x {B}) = {table_ms:.3f} ms (with each run's set-up)"
    readme_units(summary, **figures)
    assert len(result.losses) == ITERS and np.isfinite(result.losses).all()
