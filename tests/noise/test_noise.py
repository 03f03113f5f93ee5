# SPDX-License-Identifier: Apache-2.0
import math

import pytest
import torch

from pyro_dvae import noise, priors
from pyro_dvae.nmf import is_divergence
from pyro_dvae.noise.base import FEATURE_SCALE

F, T = 17, 12


def _power(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, F, generator=g, dtype=torch.float64) ** 3 + 1e-3


def test_registry_and_bad_names():
    assert noise.available() == ["nmf", "lv", "no", "nolv"]
    with pytest.raises(ValueError, match="unknown noise model"):
        noise.build("gmm", F)
    with pytest.raises(ValueError, match="bad options"):
        noise.build("no", F, rank=3)
    with pytest.raises(ValueError, match="num_bins"):
        noise.build("nmf", 0)
    with pytest.raises(ValueError, match="quantile"):
        noise.build("nmf", F, quantile=1.0)


@pytest.mark.parametrize("name", ["lv", "no", "nolv"])
def test_deep_models_are_level_invariant_and_start_at_the_anchor(name):
    torch.manual_seed(0)
    model = noise.build(name, F, z_dim=3, rnn_dim=8, dense_dim=8).double()
    P, z = _power(), torch.randn(2, T, 3, dtype=torch.float64)
    v = model.variance(P, z)
    assert v.shape == (2, T, F) and (v > 0).all()
    torch.testing.assert_close(model.variance(7.0 * P, z), 7.0 * v)  # a gain on x scales v_n alike
    with torch.no_grad():
        model.out.weight.zero_()
    torch.testing.assert_close(model.variance(P, z), noise.noise_anchor(P, model.quantile).exp().expand(2, T, F))


@pytest.mark.parametrize("name", ["lv", "no", "nolv"])
def test_mean_start_sits_at_the_mean_level_the_anchor_implies(name):
    P, z = _power(), torch.randn(2, T, 3, dtype=torch.float64)
    v = {}
    for start in ("anchor", "mean"):
        torch.manual_seed(0)  # the same weights; only the output bias differs
        model = noise.build(name, F, z_dim=3, rnn_dim=8, dense_dim=8, start=start).double()
        assert model.config["start"] == start
        v[start] = model.variance(P, z)
    torch.testing.assert_close(v["mean"], v["anchor"] / noise.exponential_quantile(0.2))
    # stationary noise (exponential power per bin): the mean start is near the true mean, the anchor at 0.22 of it
    torch.manual_seed(1)
    model = noise.build(name, F, z_dim=3, rnn_dim=8, dense_dim=8, start="mean").double()
    with torch.no_grad():
        model.out.weight.zero_()
    mean = torch.linspace(0.5, 4.0, F, dtype=torch.float64)
    x = torch.distributions.Exponential(1.0 / mean).sample((1, 4000))
    ratio = model.variance(x, torch.zeros(1, 4000, 3, dtype=torch.float64))[0, 0] / mean
    assert ((ratio - 1.0).abs() < 0.1).all(), ratio
    with pytest.raises(ValueError, match="start must be one of"):
        noise.build(name, F, start="median")
    with pytest.raises(ValueError, match="quantile"):
        noise.build(name, F, quantile=0.0, start="mean")


def test_no_model_reads_only_past_frames():
    torch.manual_seed(0)
    model = noise.build("no", F, rnn_dim=8, dense_dim=8).double()
    feats = torch.randn(1, T, F, dtype=torch.float64)
    later = feats.clone()
    later[:, 6:] += torch.randn(1, T - 6, F, dtype=torch.float64)
    h, h_later = model._hidden(feats, None), model._hidden(later, None)
    torch.testing.assert_close(h[:, :7], h_later[:, :7])  # v_n,t reads x_{1:t-1} only
    assert not torch.allclose(h[:, 7:], h_later[:, 7:])


@pytest.mark.parametrize("name", ["lv", "no"])
def test_smoothed_offsets_are_moving_averages_and_stay_causal_when_reading_x(name):
    """``smooth=k``: the log-variance offset is the k-frame moving average of the unsmoothed one (centred for LV,
    trailing for NO, so that v_n,t still never reads x_t); even or zero windows are refused."""
    torch.manual_seed(0)
    raw = noise.build(name, F, z_dim=3, rnn_dim=8, dense_dim=8).double()
    smooth = noise.build(name, F, z_dim=3, rnn_dim=8, dense_dim=8, smooth=3).double()
    smooth.load_state_dict(raw.state_dict())
    assert smooth.config["smooth"] == 3
    P, z = _power(), torch.randn(2, T, 3, dtype=torch.float64)
    off, off_s = raw.variance(P, z).log(), smooth.variance(P, z).log()
    t = 5
    window = off[:, t - 2:t + 1] if name == "no" else off[:, t - 1:t + 2]
    torch.testing.assert_close(off_s[:, t], window.mean(1))
    if name == "no":  # changing x_t and later leaves v_n,t alone (the anchor held fixed)
        later = P.clone()
        later[:, t:] *= 1.0 + torch.rand(2, T - t, F, dtype=torch.float64)
        anchor = smooth.inputs(P)[0]
        smooth.inputs = lambda power: (anchor, (noise.log_power(power) - anchor) / FEATURE_SCALE)
        torch.testing.assert_close(smooth.variance(later, z)[:, :t + 1], smooth.variance(P, z)[:, :t + 1])
    for bad in (0, 2, True):
        with pytest.raises(ValueError, match="smooth"):
            noise.build(name, F, smooth=bad)


def test_particles_repeat_the_utterances():
    torch.manual_seed(0)
    model = noise.build("nolv", F, z_dim=3, rnn_dim=8, dense_dim=8).double()
    P, z = _power(), torch.randn(2, T, 3, dtype=torch.float64)
    v2 = model.variance(P, torch.cat([z, z]))
    torch.testing.assert_close(v2, torch.cat([model.variance(P, z)] * 2))
    with pytest.raises(ValueError, match="speech latents"):
        model.variance(P, z[:, :5])


def test_nmf_m_step_gain_floor_is_a_share_of_the_incoming_mean_gain():
    """``m_step(gain_floor=r)``: no frame's gain ends below ``r`` times the utterance's mean gain as it came in;
    frames above it get the free update, and ``None`` is the free update everywhere."""
    P = _power()
    g = torch.Generator().manual_seed(2)
    v_s = torch.rand(4, 2, T, F, generator=g, dtype=torch.float64) + 0.05
    v_s[..., 3:7, :] *= 1e3  # a loud speech estimate on frames the noisy power does not back: their gain drops
    gain = torch.rand(2, T, generator=g, dtype=torch.float64) + 0.5
    free_model = noise.build("nmf", F, rank=3).initialise(P, "floor")
    floored_model = noise.build("nmf", F, rank=3).initialise(P, "floor")
    free = free_model.m_step(P, v_s, gain)
    floored = floored_model.m_step(P, v_s, gain, gain_floor=0.2)
    floor = 0.2 * gain.mean(-1, keepdim=True)
    torch.testing.assert_close(floored, torch.maximum(free, floor))
    assert bool((free < floor).any())  # the floor binds on the frames the noise model would otherwise take
    torch.testing.assert_close(floored_model.H, free_model.H)  # W, H move as without a floor
    none = noise.build("nmf", F, rank=3).initialise(P, "floor").m_step(P, v_s, gain, gain_floor=None)
    torch.testing.assert_close(none, free)


@pytest.mark.parametrize("learn_dictionary", [True, False])
def test_nmf_m_step_never_raises_the_is_divergence(learn_dictionary):
    P = _power()
    model = noise.build("nmf", F, rank=3, learn_dictionary=learn_dictionary).initialise(P, "floor")
    W0 = model.W.clone()
    g = torch.Generator().manual_seed(1)
    v_s = torch.rand(4, 2, T, F, generator=g, dtype=torch.float64) + 0.05
    gain = torch.ones(2, T, dtype=torch.float64)
    cost = model.cost(P, v_s, gain)
    for _ in range(30):
        W, H = model.W, model.H
        before = gain.clone()
        gain_only = model.m_step(P, v_s, gain, update_gain=False)
        assert torch.equal(gain_only, before) and torch.equal(gain, before)  # neither returned nor changed in place
        c_wh = model.cost(P, v_s, gain)
        assert c_wh <= cost * (1 + 1e-12)
        model.W, model.H = W, H
        gain = model.m_step(P, v_s, gain)
        c = model.cost(P, v_s, gain)
        assert c <= c_wh * (1 + 1e-12)
        cost = c
    assert torch.equal(model.W, W0) != learn_dictionary  # a fixed dictionary stays the floor start
    # the cost is the sample average of D_IS(|x|^2 | g v_s + W H)
    manual = sum(is_divergence(P, gain.unsqueeze(-1) * v + model.variance()) for v in v_s) / 4
    torch.testing.assert_close(cost, manual)


@pytest.mark.parametrize("quantile", [0.2, 0.5])
def test_nmf_floor_start_levels(quantile):
    """The "floor" start on stationary noise: W H starts at the floor (the quantile of the power, -log(1 - q) times
    its mean: 0.22 / 0.69), or with mean_level=True at the mean power, the floor divided by -log(1 - q)."""
    g = torch.Generator().manual_seed(0)
    level = torch.linspace(0.5, 4.0, F, dtype=torch.float64)  # a coloured stationary noise
    P = -torch.log(torch.rand(1, 4000, F, generator=g, dtype=torch.float64)) * level
    model = noise.build("nmf", F, rank=3, quantile=quantile)
    floor = float(model.initialise(P, "floor").variance().mean() / P.mean())
    assert abs(floor / -math.log1p(-quantile) - 1.0) < 0.05
    assert abs(float(model.initialise(P, "floor", mean_level=True).variance().mean() / P.mean()) - 1.0) < 0.05
    assert model.start_quantile == quantile
    assert model.initialise(P, "uniform").start_quantile is None


def test_checkpoint_roundtrip_and_identity_checks(tmp_path):
    torch.manual_seed(0)
    prior = priors.build("rvae", x_dim=F, z_dim=3, emission="spectral", dense_dim=8, rnn_dim=8, z_dense=[8])
    model = noise.build("lv", F, z_dim=3, rnn_dim=8, dense_dim=8)
    enc = {"phi_x.0.weight": prior.phi_x[0].weight.detach()}
    path = tmp_path / "noise.pt"
    noise.save_noise(path, model, prior, enc, 16000, 32, 8)
    raw = torch.load(path, weights_only=True)  # plain tensors and builtins only
    assert raw["speech_prior"]["sha256"] == noise.prior_fingerprint(prior)["sha256"]
    ckpt = noise.load_noise_checkpoint(path, prior, 16000, 32, 8)
    again = noise.from_checkpoint(ckpt)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="sample_rate=16000"):
        noise.load_noise_checkpoint(path, prior, 8000, 32, 8)
    with pytest.raises(ValueError, match="hop=8"):
        noise.load_noise_checkpoint(path, prior, 16000, 32, 16)
    other = priors.build("rvae", x_dim=F, z_dim=3, emission="spectral", dense_dim=8, rnn_dim=8, z_dense=[8])
    with pytest.raises(ValueError, match="different weights"):
        noise.load_noise_checkpoint(path, other)
    bigger = priors.build("rvae", x_dim=F, z_dim=4, emission="spectral", dense_dim=8, rnn_dim=8, z_dense=[8])
    with pytest.raises(ValueError, match="not for this"):
        noise.load_noise_checkpoint(path, bigger)
    prior.save(tmp_path / "prior.pt")
    with pytest.raises(ValueError, match="speech prior checkpoint"):
        noise.load_noise_checkpoint(tmp_path / "prior.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a valid"):
        noise.load_noise_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        noise.load_noise_checkpoint(tmp_path / "missing.pt")
