# SPDX-License-Identifier: Apache-2.0
"""Speed of one MixDVAE separation VEM iteration (E-Z, E-S, E-W, M-steps, exact ELBO) on CPU, one thread.

Two SRNN spectral priors (speech, flute), 513 bins, T = 50 frames (0.8 s of audio at 16 kHz, hop 256),
batch 8 as in the reference measurement (15.8 ms per iteration per 50-frame sequence; target 10x faster).
Priors of two sizes: the reference SC-ASS size (dense 256, LSTM 128, z 16) and the example's small one.
Run with::

    pytest tests/benchmarks/test_separation_speed.py --benchmark-only --benchmark-columns=median,rounds

The table's times are per round (one ``vem`` run of five iterations over the batch, set-up included). The
BENCHMARKS.md's figures are printed after the table, one line per case, and kept in ``extra_info``: ms per iteration
per sequence (mixture; ``ms_per_iter_per_seq``, the median of ``vem``'s own per-iteration times), seconds per
iteration per second of audio, the speed-up over the reference, the round median / (5 B)
(``round_ms_per_iter_per_seq``, to compare with the table) and the ratio of one VEM iteration to one batched
encoder + decoder pass of the priors over the same sequences: with the encoder's step-by-step draw of ``z``
(``ratio_to_encoder_decoder_pass``) and with its step conditionals teacher forced on a given path
(``ratio_to_teacher_forced_pass``, what a Jacobi E-Z iteration must at least run: every network of both
priors once over the batch).
"""

import time

import pytest
import torch

from pyro_dvae import inference, priors
from pyro_dvae.data.audio import HOP, SAMPLE_RATE, stft
from pyro_dvae.data.synthetic_audio import flute_like, speech_like
from pyro_dvae.likelihoods import ComplexGaussianBins
from pyro_dvae.models.separation import SeparationGuide, SeparationModel

REFERENCE_MS_PER_SEQ = 15.8  # the reference MixDVAE SC-ASS VEM, batch 8, T = 50, 513 bins
ITERS = 5  # iterations per timed run: the figure is the median of vem's per-iteration times (not the run set-up)
SIZES = {"reference": dict(z_dim=16, dense_dim=256, rnn_dim=128, z_dense=[64, 32]),
         "small": dict(z_dim=16, dense_dim=128, rnn_dim=64, z_dense=[64, 32])}


def mixtures(B, T, seed=0):
    length = (T - 1) * HOP
    out = []
    for b in range(B):
        dur = (length + 10) / SAMPLE_RATE
        s, f = speech_like(dur, seed=seed + b)[:length], flute_like(dur, seed=seed + 100 + b)[:length]
        out.append(torch.as_tensor(s + 3 * f, dtype=torch.float32))
    x = torch.stack(out)
    return stft(x / x.abs().amax(-1, keepdim=True))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_separation_vem_iteration_speed(benchmark, readme_units, size, mode):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    B, T = 8, 50
    X = mixtures(B, T)
    pri = [priors.build("srnn", x_dim=513, emission="spectral", **SIZES[size]) for _ in range(2)]
    model = SeparationModel(pri, ["speech", "flute"], ComplexGaussianBins(0.03))
    guide = SeparationGuide(model, mode=mode, sample_z=False).initialise(X, "equal")  # run_separation's defaults
    with torch.no_grad():
        inference.run("vem", model, guide, X, num_iters=2)
        iter_times = []

        def five_iterations():
            run = inference.run("vem", model, guide, X, num_iters=ITERS)
            iter_times.extend(run.iter_times)
            return run

        result = benchmark.pedantic(five_iterations, rounds=3, iterations=1)
        power = X.abs() ** 2
        t0 = time.perf_counter()
        for _ in range(3):
            for p in pri:
                p.decode(p.encode(power).rsample(), power)
        pass_s = (time.perf_counter() - t0) / 3
        z = [p.encode(power).rsample() for p in pri]
        t0 = time.perf_counter()
        for _ in range(3):
            for p, z_p in zip(pri, z):
                p.encode(power).log_prob(z_p)  # the encoder's step conditionals on the path z_p
                p.decode(z_p, power)
        tf_pass_s = (time.perf_counter() - t0) / 3
    iter_s = sorted(iter_times)[len(iter_times) // 2]  # one VEM iteration (vem's own per-iteration clock)
    seconds_of_audio = B * T * HOP / SAMPLE_RATE
    ms = 1000 * iter_s / B
    figures = dict(ms_per_iter_per_seq=ms, s_per_iter_per_audio_s=iter_s / seconds_of_audio,
                   ratio_to_encoder_decoder_pass=iter_s / pass_s, ratio_to_teacher_forced_pass=iter_s / tf_pass_s,
                   speedup_vs_reference=REFERENCE_MS_PER_SEQ / ms,
                   round_ms_per_iter_per_seq=1000 * readme_units.round_median_s / (ITERS * B))
    readme_units(
        f"{ms:.2f} ms / iteration / mixture (median of {len(iter_times)} vem iterations; {size} priors, E-S {mode}, "
        f"batch {B}, T={T}, torch threads: {torch.get_num_threads()}), "
        f"{figures['s_per_iter_per_audio_s']:.4f} s / iteration / s of audio, "
        f"{figures['speedup_vs_reference']:.1f}x vs the reference ({REFERENCE_MS_PER_SEQ} ms), "
        f"iteration / enc+dec pass {figures['ratio_to_encoder_decoder_pass']:.2f}, / teacher-forced pass "
        f"{figures['ratio_to_teacher_forced_pass']:.2f}; the table's round median / ({ITERS} x {B}) = "
        f"{figures['round_ms_per_iter_per_seq']:.2f} ms (with each run's set-up)",
        **figures,
    )
    assert len(result.losses) == ITERS
