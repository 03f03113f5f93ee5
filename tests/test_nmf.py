# SPDX-License-Identifier: Apache-2.0
import numpy as np
import pytest
import torch
from common import REALDATA, requires_realdata

from pyro_dvae import nmf
from pyro_dvae.data import audio
from pyro_dvae.metrics import si_sdr

DT = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small matmuls: with 2 OpenMP threads on a loaded 2-core machine each one can wait milliseconds
    for a descheduled worker (measured: this file 2 s alone, 200 s beside a training job); 1 thread avoids it."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _planted(F=40, T=120, K=4, seed=0, noisy=True):
    g = torch.Generator().manual_seed(seed)
    W = torch.rand(F, K, generator=g, dtype=DT) ** 3 + 1e-3
    H = torch.rand(K, T, generator=g, dtype=DT) ** 3 + 1e-3
    V = W @ H
    if noisy:  # |X|^2 of X ~ CN(0, WH): exponential with mean WH, the IS-NMF generative model
        V = V * -torch.log(torch.rand(F, T, generator=g, dtype=DT))
    return V, W, H


def _assert_monotone(costs):
    costs = torch.tensor(costs, dtype=DT)
    rises = costs.diff() / costs[:-1].abs()
    assert float(rises.max()) <= 1e-12, f"cost rose by a relative {float(rises.max()):.3g}"
    assert costs[-1] < 0.9 * costs[0]


def test_is_divergence_values():
    V = torch.tensor([1.0, 2.0, 4.0], dtype=DT)
    assert float(nmf.is_divergence(V, V)) == 0.0
    # x / v - log(x / v) - 1 at x / v = 2: 1 - log 2
    assert float(nmf.is_divergence(torch.tensor([2.0]), torch.tensor([1.0]))) == pytest.approx(1 - np.log(2))
    assert nmf.is_divergence(V, 2 * V, reduction="none").shape == (3,)
    with pytest.raises(ValueError, match="reduction"):
        nmf.is_divergence(V, V, reduction="max")


def test_plain_updates_never_increase_cost_and_match_is_nmf():
    V, _, _ = _planted()
    W, H = nmf.is_nmf(V, 4, iters=0, seed=3)
    W0, H0 = W.clone(), H.clone()
    costs = [float(nmf.is_nmf_cost(V, W, H))]
    for _ in range(60):
        W, H = nmf.is_nmf_step(V, None, W, H)
        costs.append(float(nmf.is_nmf_cost(V, W, H)))
    _assert_monotone(costs)
    assert torch.equal(W0, nmf.is_nmf(V, 4, iters=0, seed=3)[0]) and not torch.equal(W0, W) and not torch.equal(H0, H)
    W2, H2 = nmf.is_nmf(V, 4, iters=60, seed=3)
    assert torch.allclose(W2 @ H2, W @ H, rtol=1e-10)
    assert torch.allclose(W.sum(0), torch.ones(4, dtype=DT))  # columns normalised, H carries the scale


def test_fixed_variance_variant_and_gain_never_increase_cost():
    # speech-enhancement M-step: V_hat = g_t v_s + W H, with R = 3 samples of the speech variance v_s
    V, _, _ = _planted(seed=1)
    g = torch.Generator().manual_seed(5)
    v_s = torch.rand(3, *V.shape, generator=g, dtype=DT) * V.mean()
    gain = torch.ones(V.shape[-1], dtype=DT)
    W, H = nmf.is_nmf(V, 3, iters=0, seed=0)

    def cost():
        return float(sum(nmf.is_nmf_cost(V, W, H, V_fixed=gain * v_s[r]) for r in range(3)))

    costs = [cost()]
    for _ in range(40):
        W, H = nmf.is_nmf_step(V, gain * v_s, W, H)
        costs.append(cost())
        gain = nmf.gain_step(V, v_s, gain, W @ H)
        costs.append(cost())
    _assert_monotone(costs)
    assert gain.shape == (V.shape[-1],) and (gain > 0).all() and not torch.allclose(gain, torch.ones_like(gain))


def test_floored_gain_step_is_the_constrained_minimiser_and_stays_monotone():
    """``gain_step(floor=L)``: the majoriser of each gain is ``a / g + b g``, convex, so ``max(g_mm, L)`` is its
    minimiser over ``g >= L``: the IS cost never rises from a start at or above the floor. Without a floor a zero
    gain is a fixed point of the multiplicative update; with one it comes back."""
    V, _, _ = _planted(seed=4)
    g = torch.Generator().manual_seed(6)
    v_s = torch.rand(3, *V.shape, generator=g, dtype=DT) * V.mean()
    W, H = nmf.is_nmf(V, 3, iters=5, seed=0)
    other = W @ H
    floor = torch.full((V.shape[-1],), 0.3, dtype=DT)

    def cost(gain):
        return float(sum(nmf.is_divergence(V, gain * v_s[r] + other) for r in range(3)))

    gain = torch.ones(V.shape[-1], dtype=DT)
    costs = [cost(gain)]
    for _ in range(30):
        free = nmf.gain_step(V, v_s, gain, other)
        gain = nmf.gain_step(V, v_s, gain, other, floor=floor)
        torch.testing.assert_close(gain, torch.maximum(free, floor))
        costs.append(cost(gain))
    _assert_monotone(costs)
    assert bool((gain >= floor).all()) and bool((gain == floor).any())  # the floor binds somewhere
    # brute force on a grid, on the true cost: a frame's cost depends on its own gain only, and where the floor binds
    # no gain on [floor, 5] gives that frame a lower cost than the floor itself
    t = int(torch.nonzero(gain == floor)[0])
    grid = torch.linspace(0.3, 5.0, 400, dtype=DT)
    frame = [float(sum(nmf.is_divergence(V[:, t], c * v_s[r, :, t] + other[:, t]) for r in range(3))) for c in grid]
    assert min(frame) >= frame[0] - 1e-9  # at the floor the frame's cost is lowest among g >= floor
    dead = gain.clone()
    dead[0] = 0.0
    assert float(nmf.gain_step(V, v_s, dead, other)[0]) == 0.0
    assert float(nmf.gain_step(V, v_s, dead, other, floor=floor)[0]) == 0.3


def test_temporal_nmf_full_cost_never_increases():
    V, _, _ = _planted(seed=2)
    for alpha, beta in [(0.0, 0.0), (5.0, 0.5), (200.0, 20.0)]:
        W, H = nmf.temporal_nmf(V, 4, iters=0, seed=0)
        costs = [float(nmf.temporal_cost(V, W, H, alpha, beta))]
        for _ in range(40):
            W, H = nmf.temporal_nmf(V, W=W, H=H, update_W=True, iters=1, alpha=alpha, beta=beta)
            costs.append(float(nmf.temporal_cost(V, W, H, alpha, beta)))
        _assert_monotone(costs)
    # strong continuity gives smoother activations than none
    rough = nmf.temporal_nmf(V, 4, iters=60, alpha=0.0)[1]
    smooth = nmf.temporal_nmf(V, 4, iters=60, alpha=200.0)[1]
    c_rough, _ = nmf._penalties(rough, nmf.EPS)
    c_smooth, _ = nmf._penalties(smooth, nmf.EPS)
    assert c_smooth.sum() < 0.5 * c_rough.sum()


def test_penalty_gradients_match_autograd():
    H = torch.rand(2, 3, 7, dtype=DT, requires_grad=True)
    c_t, c_s = nmf._penalties(H, nmf.EPS)
    (2.0 * c_t.sum() + 0.7 * c_s.sum()).backward()
    pos, neg = nmf._penalty_gradients(H.detach(), 2.0, 0.7, nmf.EPS)
    assert (pos >= 0).all() and (neg >= 0).all()
    assert torch.allclose(pos - neg, H.grad, atol=1e-10)


def test_recovers_planted_factorisation_batched():
    V, _, _ = _planted(F=30, T=80, K=3, noisy=False)
    Vb = torch.stack([V, 2 * V])  # (B, F, T): one dictionary per item
    W, H = nmf.is_nmf(Vb, 3, iters=400, seed=0, power=1.0)
    assert W.shape == (2, 30, 3) and H.shape == (2, 3, 80)
    start = nmf.is_nmf_cost(Vb, *nmf.is_nmf(Vb, 3, iters=0, seed=0))
    per_bin = float(nmf.is_nmf_cost(Vb, W, H)) / Vb.numel()
    assert per_bin < 1e-4 and per_bin * Vb.numel() < 1e-3 * float(start)


def _band_noise(seconds, band, seed, sr=16000):
    """White noise restricted to ``band`` (Hz) with a slow random amplitude envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < band[0]) | (f > band[1])] = 0
    env = np.interp(np.arange(n), np.linspace(0, n, 9), rng.uniform(0.2, 1.0, 9))
    return np.fft.irfft(spec, n) * env


def _power(x):
    return audio.stft(torch.as_tensor(x)).abs().pow(2).mT  # (F, T)


@pytest.mark.parametrize("method", ["is", "temporal"])
def test_separates_disjoint_supports(method):
    low, high = (100, 2500), (4000, 7500)
    sep = nmf.NMFSeparator(rank=6, iters=60, method=method, alpha=5.0, beta=0.5)
    sep.fit("low", [_power(_band_noise(1.0, low, s)) for s in (1, 2)])
    sep.fit("high", _power(_band_noise(1.0, high, 3)))
    assert sep.names == ["low", "high"] and sep.dictionaries["low"].shape == (513, 6)
    a, b = _band_noise(1.0, low, 10), 3 * _band_noise(1.0, high, 11)
    mix = a + b
    X = audio.stft(torch.as_tensor(mix))
    out = sep.separate(X.abs().pow(2).mT)
    assert out.variances.shape == out.masks.shape == (2, 513, X.shape[0])
    assert torch.allclose(out.masks.sum(0), torch.ones(513, X.shape[0], dtype=DT))
    batched = sep.separate(torch.stack([X.abs().pow(2).mT, 2 * X.abs().pow(2).mT]))
    assert batched.masks.shape == (2, 2, 513, X.shape[0]) and batched.activations[0].shape == (2, 6, X.shape[0])
    assert torch.allclose(batched.masks[0], out.masks, atol=1e-6) and torch.allclose(batched.masks[1], out.masks,
                                                                                   atol=1e-6)
    for i, ref in enumerate((a, b)):
        est = audio.istft(out.masks[i].mT * X, len(mix)).numpy()
        gain = si_sdr(est, ref) - si_sdr(mix, ref)
        assert gain > 10.0, f"{method} source {i}: SI-SDR gain {gain:.1f} dB"


def test_bad_inputs_raise():
    V, _, _ = _planted()
    with pytest.raises(ValueError, match="nonnegative"):
        nmf.is_nmf(-V, 2)
    bad = V.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        nmf.is_nmf(bad, 2)
    with pytest.raises(ValueError, match="NaN"):
        nmf.temporal_nmf(bad, 2)
    for rank in (0, -1, 1.5, None):
        with pytest.raises(ValueError, match="rank must be a positive integer"):
            nmf.is_nmf(V, rank)
    with pytest.raises(ValueError, match="shape"):
        nmf.is_nmf(V[0], 2)
    with pytest.raises(ValueError, match="W must be"):
        nmf.is_nmf(V, 3, W=torch.rand(V.shape[0] + 1, 3, dtype=DT))
    with pytest.raises(ValueError, match="iters"):
        nmf.is_nmf(V, 2, iters=-1)
    with pytest.raises(ValueError, match="alpha"):
        nmf.temporal_nmf(V, 2, alpha=-1.0)
    with pytest.raises(ValueError, match="method"):
        nmf.nmf_separate(V, [torch.rand(V.shape[0], 2)], method="kl")
    with pytest.raises(ValueError, match="dictionaries\\[1\\]"):
        nmf.nmf_separate(V, [torch.rand(V.shape[0], 2), torch.rand(3, 2)])
    with pytest.raises(RuntimeError, match="fit"):
        nmf.NMFSeparator().separate(V)
    with pytest.raises(ValueError, match="same F"):
        nmf.NMFSeparator().fit("a", [V, V[:-1]])


@requires_realdata("speech/librispeech", "music/iowa_flute")
def test_real_speech_flute_separation_improves_speech():
    pytest.importorskip("soundfile")
    from pyro_dvae.data import mixtures as mx

    real = REALDATA
    speech = sorted(str(p) for p in (real / "speech" / "librispeech").rglob("*.flac"))
    flute = sorted(str(p) for p in (real / "music" / "iowa_flute").glob("*.wav"))
    train, test = mx.speaker_split(speech, test_fraction=0.2, seed=0)
    sep = nmf.NMFSeparator(rank=20, iters=50)
    sep.fit("speech", [_power(audio.load_audio(f)).float() for f in train[:4]])
    # the flute dictionary sees every note (an unseen pitch is not representable by a note dictionary)
    sep.fit("music", [_power(audio.load_audio(f)).float() for f in flute])
    gains = []
    for m in mx.make_mixtures(test[:3], flute, 3, num_frames=100, smr_db=-10.0, seed=0):
        X = audio.stft(torch.as_tensor(m.mix, dtype=torch.float32))
        mask = sep.separate(X.abs().pow(2).mT).masks[sep.names.index("speech")]
        est = audio.istft(mask.mT * X, len(m.mix)).numpy()
        gains.append(si_sdr(est, m.sources["speech"]) - si_sdr(m.mix, m.sources["speech"]))
    assert min(gains) > 3.0, gains
