# SPDX-License-Identifier: Apache-2.0
"""MDVAE: shapes with two batch dims, the factorisation of the emissions, analytic KLs against Monte Carlo,
training, save / load."""

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_dvae import priors
from pyro_dvae.training import TrainConfig, evaluate, train_prior

SMALL = dict(x_a_dim=7, x_v_dim=9, w_dim=3, z_av_dim=2, z_a_dim=2, z_v_dim=2, rnn_dim=8, w_rnn_dim=8, dense_dim=16)


def data(*batch, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.rand(*batch, T, 7, generator=g) + 0.1, torch.rand(*batch, T, 9, generator=g)], -1)


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = priors.build("mdvae", **SMALL)
    m.fit_normalisation(data(16))
    return m.eval()  # deterministic emissions (zv_center acts in training only)


def test_default_build_and_config():
    m = priors.build("mdvae")
    assert (m.x_a_dim, m.x_v_dim, m.w_dim, m.z_av_dim, m.z_a_dim, m.z_v_dim) == (513, 1024, 84, 16, 8, 4)
    assert m.x_dim == 513 + 1024 and m.latent_sites == ("w", "z_av", "z_a", "z_v")
    with pytest.raises(ValueError, match="name the same size"):
        priors.build("mdvae", z_dim=4, z_av_dim=5)


def test_sites_and_shapes_with_two_batch_dims(model):
    x = data(2, 3)
    mask = torch.ones(2, 3, 6, dtype=torch.bool)
    mask[0, 1, 4:] = False
    guide = poutine.trace(model.guide).get_trace(x, mask)
    tr = poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(x, mask)
    tr.compute_log_prob()
    assert tr.nodes["w"]["value"].shape == (2, 3, 3)
    for name, dim in (("z_av", 2), ("z_a", 2), ("z_v", 2)):
        assert tr.nodes[name]["value"].shape == (2, 3, 6, dim)
        assert tr.nodes[name]["log_prob"].shape == (2, 3)
    assert tr.nodes["x_a"]["value"].shape == (2, 3, 6, 7) and tr.nodes["x_v"]["value"].shape == (2, 3, 6, 9)
    # the masked steps do not count: changing them leaves the log-likelihood unchanged
    y = x.clone()
    y[0, 1, 4:] = 5.0
    tr2 = poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(y, mask)
    tr2.compute_log_prob()
    assert torch.allclose(tr.nodes["x_v"]["log_prob"], tr2.nodes["x_v"]["log_prob"])
    lat = model.encode(x, mask)
    a, v = model.decode(lat)
    assert a.shape == (2, 3, 6, 7) and v.shape == (2, 3, 6, 9)


def test_audio_never_reads_z_v_and_visual_never_reads_z_a(model):
    x = data(4)
    lat = {k: v.clone().requires_grad_(True) for k, v in model.encode(x).items()}
    (ma, _), (mv, _) = model.emissions(lat["w"], lat["z_av"], lat["z_a"], lat["z_v"])
    keys = [lat[k] for k in ("w", "z_av", "z_a", "z_v")]
    ga = torch.autograd.grad(ma.sum(), keys, allow_unused=True, retain_graph=True)
    gv = torch.autograd.grad(mv.sum(), keys, allow_unused=True, retain_graph=True)
    assert ga[3] is None or ga[3].abs().max() == 0  # audio: not z_v
    assert gv[2] is None or gv[2].abs().max() == 0  # visual: not z_a
    assert all(g is not None and g.abs().max() > 0 for g in (ga[0], ga[1], ga[2], gv[0], gv[1], gv[3]))
    # frame-wise: x_a_t does not read z_av at another step
    g = torch.autograd.grad(ma[:, 2].sum(), lat["z_av"])[0]
    assert g[:, [0, 1, 3, 4, 5]].abs().max() == 0 and g[:, 2].abs().max() > 0


def test_analytic_kl_matches_monte_carlo(model):
    """TraceMeanField_ELBO (analytic per-step KLs) and Trace_ELBO (Monte Carlo) estimate the same ELBO."""
    n = 4000  # copies of one sequence in the batch: each term averages n independent draws
    x = data(1).expand(n, -1, -1)
    pyro.set_rng_seed(0)
    analytic = TraceMeanField_ELBO().loss(model.model, model.guide, x) / n
    mc = Trace_ELBO().loss(model.model, model.guide, x) / n
    kl = TraceMeanField_ELBO().loss(poutine.block(model.model, hide=["x_a", "x_v"]), model.guide, x) / n
    assert kl > 1.0  # the KL part is large enough for the comparison to see an error in it
    assert abs(analytic - mc) < 0.2, (analytic, mc, kl)


def test_training_lowers_the_validation_loss_and_round_trips(tmp_path):
    torch.manual_seed(0)
    m = priors.build("mdvae", **SMALL)
    t = torch.linspace(0, 1, 6)
    base = torch.sin(6.3 * t[:, None] * torch.rand(48, 1, 1) * 3 + torch.arange(16.0))  # smooth sequences
    x = torch.cat([base[..., :7].exp(), base[..., 7:]], -1)
    before = evaluate(priors.build("mdvae", **SMALL).fit_normalisation(x[:32]), x[32:])
    res = train_prior(m, x[:32], x[32:], TrainConfig(epochs=6, batch_size=8, lr=3e-3, patience=50),
                      out=tmp_path / "m.pt")
    assert res.best_val < before - 0.5, (before, res.best_val)
    loaded = priors.load(tmp_path / "m.pt", expect="mdvae")
    assert loaded.config == m.config
    for k, v in m.state_dict().items():
        assert torch.equal(v.cpu(), loaded.state_dict()[k]), k
    assert evaluate(loaded, x[32:], batch_size=8) == pytest.approx(res.best_val, rel=1e-5)
    with pytest.raises(ValueError, match="single-stream spectral prior"):  # not a prior for the audio tasks
        priors.load_spectral(tmp_path / "m.pt", task="separation")


def test_a_config_from_before_an_option_still_matches(model):
    """Checkpoints written before an option existed (resume, load) describe the same model at its default."""
    old = {k: v for k, v in model.config.items() if k not in ("w_pool", "w_beta", "zv_center")}
    assert priors.same_prior("mdvae", old, model)
    assert not priors.same_prior("mdvae", {**old, "z_v_dim": 3}, model)
    assert not priors.same_prior("vae", model.config, model)


def test_zv_center_hides_z_v_constants_from_the_visual_decoder_in_training_only(model):
    """zv_center=1: in training the visual emission reads z_v minus its temporal mean, so a constant added to z_v
    changes nothing; in evaluation it does; the audio emission never reads z_v; 0 is the reference's decoder."""
    torch.manual_seed(1)
    w, z_av, z_a, z_v = torch.randn(4, 3), torch.randn(4, 6, 2), torch.randn(4, 6, 2), torch.randn(4, 6, 2)
    shifted = z_v + torch.tensor([0.7, -1.3])
    assert model.zv_center == 0.5 and model.config["zv_center"] == 0.5
    model.zv_center = 1.0
    model.train()
    (a1, _), (v1, _) = model.emissions(w, z_av, z_a, z_v)
    (a2, _), (v2, _) = model.emissions(w, z_av, z_a, shifted)
    assert torch.allclose(v1, v2, atol=1e-6) and torch.equal(a1, a2)
    model.eval()
    (_, _), (v3, _) = model.emissions(w, z_av, z_a, z_v)
    (_, _), (v4, _) = model.emissions(w, z_av, z_a, shifted)
    assert not torch.allclose(v3, v4, atol=1e-3)
    model.zv_center = 0.0
    model.train()
    (_, _), (v5, _) = model.emissions(w, z_av, z_a, z_v)
    assert torch.allclose(v5, v3)
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="zv_center"):
            priors.build("mdvae", **SMALL, zv_center=bad)
