# SPDX-License-Identifier: Apache-2.0
import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pyro_dvae import priors
from pyro_dvae.training import TrainConfig, evaluate, train_prior

NAMES = ["light-dvae", "hit-dvae"]
SIZES = dict(dense_dim=16, rnn_dim=8, n_heads=2, n_layers=2, ff_dim=32, v_dim=3)


def make(name, emission="gaussian", x_dim=5, z_dim=3, **kw):
    torch.manual_seed(0)
    return priors.build(name, x_dim=x_dim, z_dim=z_dim, emission=emission, **{**SIZES, **kw})


def data(shape, emission="gaussian", seed=1):
    torch.manual_seed(seed)
    x = torch.randn(*shape)
    return x.exp() if emission == "spectral" else x


def test_registered():
    assert {"light-dvae", "hit-dvae"} <= set(priors.available())
    assert priors.prior_class("light-dvae") is priors.LigHTDVAE
    assert priors.prior_class("hit-dvae") is priors.HiTDVAE


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("emission", ["gaussian", "spectral"])
def test_causality(name, emission):
    prior = make(name, emission).eval()
    T, t0 = 7, 3
    x = data((2, T, 5), emission)
    z, v = torch.randn(2, T, 3), torch.randn(2, 3)
    with torch.no_grad():
        em = prior.emission_params(z, x, {"v": v})
        zp = prior.z_prior(z, x, v)
        x2, z2 = x.clone(), z.clone()
        x2[:, t0] = x2[:, t0] * 3.0 + 1.0
        z2[:, t0] += 5.0
        em_x, zp_x = prior.emission_params(z, x2, {"v": v}), prior.z_prior(z, x2, v)
        em_z, zp_z = prior.emission_params(z2, x, {"v": v}), prior.z_prior(z2, x, v)
    logvar = 1
    # emission at t reads s_{<t} and z_{<=t}; the z prior at t reads s_{<t} and z_{<t}
    assert torch.equal(em_x[logvar][:, : t0 + 1], em[logvar][:, : t0 + 1])
    assert not torch.allclose(em_x[logvar][:, t0 + 1], em[logvar][:, t0 + 1])
    assert torch.equal(em_z[logvar][:, :t0], em[logvar][:, :t0])
    assert not torch.allclose(em_z[logvar][:, t0], em[logvar][:, t0])
    for a, b in zip(zp_x, zp):
        assert torch.equal(a[:, : t0 + 1], b[:, : t0 + 1]) and not torch.allclose(a[:, t0 + 1], b[:, t0 + 1])
    for a, b in zip(zp_z, zp):
        assert torch.equal(a[:, : t0 + 1], b[:, : t0 + 1]) and not torch.allclose(a[:, t0 + 1], b[:, t0 + 1])
    if emission == "gaussian":
        assert torch.equal(em_x[0][:, : t0 + 1], em[0][:, : t0 + 1])
        assert torch.equal(em_z[0][:, :t0], em[0][:, :t0])


def test_decoder_is_shared_and_smaller():
    light, hit = make("light-dvae", x_dim=513), make("hit-dvae", x_dim=513)
    assert light.z_decoder is light.dec and not hasattr(light, "dec_z")
    assert hit.z_decoder is hit.dec_z and hit.dec_z is not hit.dec
    # every LigHT parameter appears once; the decoder's are used by both the emission and the z prior
    x, z, v = data((1, 6, 513)), torch.randn(1, 6, 3), torch.randn(1, 3)
    loc, logvar = light.emission_params(z, x, {"v": v})
    light.zero_grad()
    logvar.sum().backward()
    grad_em = [p.grad.clone() for p in light.dec.parameters()]
    light.zero_grad()
    light.z_prior(z, x, v)[0].sum().backward()
    assert all(g.abs().sum() > 0 for g in grad_em[:4])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in light.dec.parameters())
    n_light = sum(p.numel() for p in light.parameters())
    n_hit = sum(p.numel() for p in hit.parameters())
    assert n_hit - n_light == sum(p.numel() for p in hit.dec_z.parameters())
    assert n_light / n_hit < 0.9
    assert set(light.state_dict()) < set(hit.state_dict())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("residual", [False, True])
def test_stepwise_equals_teacher_forcing(name, residual):
    prior = make(name, residual=residual)
    x = data((2, 6, 5))
    z = torch.randn(2, 6, 3)
    with torch.no_grad():
        mean_tf, var_tf = prior.decode(z, x)
        seen = []
        mean_sw, var_sw = prior.decode_stepwise(z, lambda t, m, v: seen.append(t) or x[..., t, :], x=x)
    assert seen == list(range(6))
    assert torch.allclose(mean_tf, mean_sw, atol=1e-5) and torch.allclose(var_tf, var_sw, atol=1e-5)
    # fed its own means, the step-by-step path differs from teacher forcing on the data
    with torch.no_grad():
        mean_own, _ = prior.decode_stepwise(z, lambda t, m, v: m, x=x)
        v = prior.encode(x, with_statics=True)[1]["v"]
        again, _ = prior.decode_stepwise(z, lambda t, m, s: m, latents={"v": v})
        tf_own, _ = prior.decode(z, x)
    assert torch.allclose(mean_own, again, atol=1e-6)
    assert not torch.allclose(mean_own[:, 1:], tf_own[:, 1:])


@pytest.mark.parametrize("name", NAMES)
def test_the_encoder_ignores_padding(name):
    # the loss with padding is checked for every registered prior in test_priors.py; here the posteriors of
    # z and w (site v) of a short sequence padded to a longer one equal those of the sequence alone
    prior = make(name, "spectral")
    x = data((3, 9, 5), "spectral")
    mask = torch.arange(9) < torch.tensor([4, 9, 2])[:, None]
    padded_x = x.clone()
    padded_x[~mask] = 123.0  # arbitrary padding
    with torch.no_grad():
        q, st = prior.encode(padded_x, mask, with_statics=True)
        q1, st1 = prior.encode(x[2:, :2], with_statics=True)
    assert torch.allclose(q.mean[2, :2], q1.mean[0], atol=1e-5) and torch.allclose(st["v"][2], st1["v"][0], atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path):
    prior = make(name, "spectral", n_layers=1)
    path = tmp_path / "p.pt"
    prior.save(path)
    back = priors.load(path, expect=name)
    assert type(back) is type(prior) and back.config == prior.config
    assert back.config["n_layers"] == 1 and back.config["v_dim"] == 3
    x = data((2, 6, 5), "spectral")
    z = torch.randn(2, 6, 3)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(prior.decode(z, x), back.decode(z, x)))
        feed = lambda t, m, v: m  # noqa: E731
        assert all(torch.equal(a, b) for a, b in zip(prior.decode_stepwise(z, feed), back.decode_stepwise(z, feed)))
    pyro.set_rng_seed(3)
    a = TraceMeanField_ELBO().differentiable_loss(prior.model, prior.guide, x)
    pyro.set_rng_seed(3)
    b = TraceMeanField_ELBO().differentiable_loss(back.model, back.guide, x)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="expected 'dkf'"):
        priors.load(path, expect="dkf")


def test_bad_sizes():
    with pytest.raises(ValueError, match="multiple of n_heads"):
        priors.build("light-dvae", x_dim=3, dense_dim=10, n_heads=4)
    with pytest.raises(ValueError, match="n_layers"):
        priors.build("hit-dvae", x_dim=3, n_layers=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("emission", ["gaussian", "spectral"])
def test_training_lowers_validation_loss(name, emission):
    torch.manual_seed(0)
    t = torch.linspace(0, 1, 12)
    phase = torch.rand(96, 1, 1) * 6.3
    freq = 2 + 4 * torch.rand(96, 1, 1)
    x = torch.sin(freq * t[None, :, None] * 6.3 + phase + torch.arange(4.0)) + 0.05 * torch.randn(96, 12, 4)
    if emission == "spectral":
        x = x.exp()
    train, val = x[:64], x[64:]
    prior = make(name, emission, x_dim=4)
    before = evaluate(prior, val)
    res = train_prior(prior, train, val, TrainConfig(epochs=4, batch_size=16, lr=3e-3, warmup_epochs=1, ss_max=0.0,
                                                     patience=50))
    assert all(h["ss_prob"] == 0.0 for h in res.history)  # teacher forcing
    assert res.best_val < before - 0.3, (before, res.best_val)
