# SPDX-License-Identifier: Apache-2.0
import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence

from pyro_dvae import priors
from pyro_dvae.handlers import scale_sites
from pyro_dvae.priors.distributions import SequentialNormal
from pyro_dvae.training import elbo_loss

# latent_sequence's densities are checked here as the prior defines them; the warning that an autoregressive prior
# runs uncalibrated is tested in tests/models/test_user_parameters.py
pytestmark = pytest.mark.filterwarnings("ignore::pyro_dvae.smoothing.UncalibratedPriorWarning")

NAMES = priors.available(multimodal=False)
SIZES = dict(dense_dim=8, rnn_dim=8, z_dense=[8])


def latent_dim(name, z_dim=3):
    return z_dim if priors.prior_class(name).latent_sites else 0  # deepar has no latents


def make(name, emission="gaussian", x_dim=5, z_dim=3):
    torch.manual_seed(0)
    return priors.build(name, x_dim=x_dim, z_dim=latent_dim(name, z_dim), emission=emission, **SIZES)


def data(shape, emission):
    torch.manual_seed(1)
    x = torch.randn(*shape)
    return x.exp() if emission == "spectral" else x


def loss_at(prior, x, mask=None, seed=0, elbo=TraceMeanField_ELBO, ss_prob=0.0):
    pyro.set_rng_seed(seed)
    return elbo().differentiable_loss(prior.model, prior.guide, x, mask, ss_prob)


def test_available_names():
    assert NAMES == ["vae", "dkf", "storn", "vrnn", "srnn", "srnn-velocity", "rvae", "rvae-noncausal", "dsae", "deepar",
                     "light-dvae", "hit-dvae"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("emission", ["gaussian", "spectral"])
def test_trace_shapes_two_batch_plates(name, emission):
    prior = make(name, emission)
    x = data((2, 3, 7, 5), emission)
    guide_tr = poutine.trace(prior.guide).get_trace(x, plates=["batch", "sources"])
    tr = poutine.trace(poutine.replay(prior.model, guide_tr)).get_trace(x, plates=["batch", "sources"])
    tr.compute_log_prob()
    sites = {k: v for k, v in tr.nodes.items() if v["type"] == "sample" and k not in ("batch", "sources")}
    assert set(sites) == set(prior.latent_sites) | {"x"}
    assert sites["x"]["fn"].batch_shape == (2, 3) and sites["x"]["fn"].event_shape == (7, 5)
    if "z" in sites:
        assert sites["z"]["fn"].batch_shape == (2, 3) and sites["z"]["fn"].event_shape == (7, 3)
    assert sites["x"]["log_prob"].shape == (2, 3)
    frames = {f.name: f.dim for f in sites["x"]["cond_indep_stack"]}
    assert frames == {"batch": -2, "sources": -1}
    assert sites["x"]["is_observed"] and torch.equal(sites["x"]["value"], x)


@pytest.mark.parametrize("name", NAMES)
def test_elbo_finite_and_gradients_finite(name):
    prior = make(name)
    x = data((2, 3, 6, 5), "gaussian")
    for elbo in (Trace_ELBO, TraceMeanField_ELBO):
        for ss in (0.0, 0.5):
            prior.zero_grad()
            loss = loss_at(prior, x, elbo=elbo, ss_prob=ss)
            assert torch.isfinite(loss)
            loss.backward()
            grads = [p.grad for p in prior.parameters() if p.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_sequential_sampler_matches_teacher_forcing(name):
    # The step-by-step sampler and the parallel teacher-forced log-density must describe the same q.
    prior = make(name)
    x = data((4, 6, 5), "gaussian")
    q = prior.encode(x)
    z = q.rsample()
    if isinstance(q, SequentialNormal):
        loc, scale = q._loc, q._scale
        q_loc, q_scale = q.params_fn(z.clone())
        assert torch.allclose(loc, q_loc, atol=1e-5) and torch.allclose(scale, q_scale, atol=1e-5)
    assert q.log_prob(z).shape == (4, 6)


@pytest.mark.parametrize("name", NAMES)
def test_analytic_kl_is_used_and_unbiased(name):
    # TraceMeanField uses the per-step Gaussian KL; averaged over draws it equals the MC ELBO.
    prior = make(name)
    x = data((3, 5, 5), "gaussian")
    guide_tr = poutine.trace(prior.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(prior.model, guide_tr)).get_trace(x)
    for site in prior.latent_sites:
        kl = kl_divergence(guide_tr.nodes[site]["fn"], model_tr.nodes[site]["fn"])
        assert kl.shape == (3,) and (kl >= -1e-5).all()
    with torch.no_grad():
        a = torch.stack([loss_at(prior, x, seed=s, elbo=TraceMeanField_ELBO) for s in range(150)])
        b = torch.stack([loss_at(prior, x, seed=s, elbo=Trace_ELBO) for s in range(150)])
    se = math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(float(a.mean() - b.mean())) < 4 * se + 1e-3
    assert a.var() <= b.var() * 1.05  # the analytic KL does not add variance


def log_weights(prior, x, mask, latents):
    """Per-sequence ``log p(x, z) - log q(z | x)`` at fixed latent values (deterministic)."""
    guide_tr = poutine.trace(poutine.condition(prior.guide, data=latents)).get_trace(x, mask)
    model_tr = poutine.trace(poutine.condition(prior.model, data=latents)).get_trace(x, mask)
    model_tr.compute_log_prob()
    guide_tr.compute_log_prob()
    lp = sum(model_tr.nodes[s]["log_prob"] for s in ("x", *prior.latent_sites))
    return lp - sum(guide_tr.nodes[s]["log_prob"] for s in prior.latent_sites)


def fixed_latents(prior, batch, T):
    torch.manual_seed(7)
    lat = {"z": torch.randn(*batch, T, prior.z_dim)}
    if "v" in prior.latent_sites:
        lat["v"] = torch.randn(*batch, prior.v_dim)
    return lat


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("emission", ["gaussian", "spectral"])
def test_masked_padding_leaves_loss_unchanged(name, emission):
    prior = make(name, emission)
    x = data((3, 8, 5), emission)
    lengths = torch.tensor([5, 8, 1])
    mask = torch.arange(8) < lengths[:, None]
    lat = fixed_latents(prior, (3,), 8)
    junk_x, junk_lat = x.clone(), {k: v.clone() for k, v in lat.items()}
    junk_x[~mask] = float("nan")
    junk_lat["z"][~mask] = 1e3
    batch = log_weights(prior, x, mask, lat)
    assert torch.equal(batch, log_weights(prior, junk_x, mask, junk_lat))
    for i, n in enumerate(lengths.tolist()):
        single = {k: (v[i : i + 1, :n] if k == "z" else v[i : i + 1]) for k, v in lat.items()}
        alone = log_weights(prior, x[i : i + 1, :n], None, single)
        assert torch.allclose(batch[i], alone[0], rtol=1e-5, atol=1e-3), (i, batch[i], alone)
    # gradients stay finite with NaN padding
    prior.zero_grad()
    loss = loss_at(prior, junk_x, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in prior.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path):
    prior = make(name, "spectral")
    path = tmp_path / f"{name}.pt"
    prior.save(path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["prior"] == name
    back = priors.load(path)
    assert type(back) is type(prior) and back.config == prior.config
    x = data((2, 6, 5), "spectral")
    z = torch.randn(2, 6, latent_dim(name))
    m1, v1 = prior.decode(z, x)
    m2, v2 = back.decode(z, x)
    assert torch.equal(m1, m2) and torch.equal(v1, v2)
    assert torch.equal(loss_at(prior, x, seed=3), loss_at(back, x, seed=3))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        priors.load(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a valid"):
        priors.load(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a pyro_dvae prior checkpoint"):
        priors.load(other)
    good = tmp_path / "srnn.pt"
    make("srnn").save(good)
    with pytest.raises(ValueError, match="holds a 'srnn' prior, expected 'dkf'"):
        priors.load(good, expect="dkf")
    ckpt = torch.load(good, weights_only=True)
    ckpt["prior"] = "vrnn"
    torch.save(ckpt, other)
    with pytest.raises(ValueError, match="do not match"):
        priors.load(other)
    half = tmp_path / "half.pt"
    half.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError):
        priors.load(half)


def test_save_is_atomic_and_refuses_nan(tmp_path):
    prior = make("vae")
    path = tmp_path / "p.pt"
    prior.save(path)
    before = path.read_bytes()
    with torch.no_grad():
        next(prior.parameters())[0] = float("nan")
    with pytest.raises(FloatingPointError):
        prior.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.pt"]


@pytest.mark.parametrize("name", ["srnn", "dsae", "vae"])
def test_kl_warmup_scales_only_latent_sites(name):
    prior = make(name)
    x = data((2, 6, 5), "gaussian")
    tr = poutine.trace(scale_sites(prior.model, scale=0.3, sites=prior.latent_sites)).get_trace(x)
    scales = {k: v["scale"] for k, v in tr.nodes.items() if v["type"] == "sample" and k != "batch"}
    assert scales == {**{s: 0.3 for s in prior.latent_sites}, "x": 1.0}
    # the loss is affine in the KL weight: L(b) = recon + b * KL
    with torch.no_grad():
        def at(b):
            pyro.set_rng_seed(5)
            return elbo_loss(prior, x, kl_scale=b)
        l0, l1, lh = at(0.0), at(1.0), at(0.5)
    assert torch.allclose(lh, 0.5 * (l0 + l1), atol=1e-5)
    assert l1 > l0  # KL is positive


@pytest.mark.parametrize("name", ["storn", "vrnn", "srnn"])
def test_stepwise_decoder_fed_with_truth_equals_teacher_forcing(name):
    prior = make(name)
    x = data((2, 6, 5), "gaussian")
    z = torch.randn(2, 6, 3)
    mean_tf, var_tf = prior.decode(z, x)
    mean_sw, var_sw = prior.decode_stepwise(z, lambda t, m, v: x[..., t, :])
    assert torch.allclose(mean_tf, mean_sw, atol=1e-5) and torch.allclose(var_tf, var_sw, atol=1e-5)


@pytest.mark.parametrize("name", ["vae", "dkf", "rvae", "rvae-noncausal", "dsae"])
def test_stepwise_decoder_non_autoregressive(name):
    prior = make(name)
    x = data((2, 6, 5), "gaussian")
    z = torch.randn(2, 6, 3)
    seen = []
    mean, var = prior.decode_stepwise(z, lambda t, m, v: seen.append(t) or m, x=x)
    assert seen == list(range(6))
    assert torch.equal(mean, prior.decode(z, x)[0]) and (var > 0).all()


def test_scheduled_sampling_changes_autoregressive_inputs_only():
    x = data((2, 6, 5), "gaussian")
    for name in NAMES:
        prior = make(name)
        with torch.no_grad():
            l0, l1 = loss_at(prior, x, seed=2), loss_at(prior, x, seed=2, ss_prob=1.0)
        assert torch.isfinite(l1)
        if prior.autoregressive:
            assert not torch.allclose(l0, l1)
        else:
            assert torch.equal(l0, l1)


def test_seeds_reproducible():
    prior = make("srnn")
    x = data((2, 6, 5), "gaussian")
    assert torch.equal(loss_at(prior, x, seed=11), loss_at(prior, x, seed=11))
    assert not torch.equal(loss_at(prior, x, seed=11), loss_at(prior, x, seed=12))


def test_bad_inputs():
    prior = make("srnn")
    with pytest.raises(ValueError, match="x_dim=5"):
        prior.model(torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="prefix mask"):
        prior.model(torch.randn(2, 6, 5), torch.tensor([[1, 0, 1, 1, 1, 1]] * 2))
    with pytest.raises(ValueError, match="mask must be shaped"):
        prior.model(torch.randn(2, 6, 5), torch.ones(2, 5))
    bad = torch.randn(2, 6, 5)
    bad[0, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        prior.guide(bad)
    with pytest.raises(ValueError, match="non-negative"):
        make("vae", "spectral").model(-torch.ones(1, 3, 5))
    with pytest.raises(ValueError, match="ss_prob"):
        prior.model(torch.randn(1, 3, 5), ss_prob=2.0)
    with pytest.raises(ValueError, match="pass x"):
        prior.decode(torch.randn(1, 3, 3))
    with pytest.raises(ValueError, match="unknown prior 'lstm'"):
        priors.build("lstm", x_dim=3)
    with pytest.raises(ValueError, match="emission"):
        priors.build("vae", x_dim=3, emission="poisson")
    with pytest.raises(ValueError, match="bad options"):
        priors.build("vae", x_dim=3, hidden=4)


@pytest.mark.parametrize("name", NAMES)
def test_latent_sequence_density_equals_observed_model(name):
    # Inside a larger model the sequence is latent; its joint density p(z, s) must equal the prior's
    # model with the same sequence observed.
    prior = make(name)
    s = data((2, 6, 5), "gaussian")
    lat = fixed_latents(prior, (2,), 6)

    def outer():
        with pyro.plate("batch", 2, dim=-1):
            prior.latent_sequence("s", s)

    tr = poutine.trace(poutine.condition(outer, data={**lat, "s": s})).get_trace()
    tr.compute_log_prob()
    ref = poutine.trace(poutine.condition(prior.model, data=lat)).get_trace(s)
    ref.compute_log_prob()
    got = sum(tr.nodes[k]["log_prob"] for k in (*prior.latent_sites, "s"))
    want = sum(ref.nodes[k]["log_prob"] for k in (*prior.latent_sites, "x"))
    assert torch.allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_latent_sequence_var_scale_multiplies_the_sequence_variance(name):
    # p(s_t | z, s_{<t}) = N(mu_t, var_scale * v_t), from t = 1 on for autoregressive priors
    prior = make(name)
    s = data((2, 6, 5), "gaussian")
    lat = fixed_latents(prior, (2,), 6)
    factor = torch.tensor([1.0, 4.0, 0.25, 9.0, 2.0])

    def site(var_scale):
        def outer():
            with pyro.plate("batch", 2, dim=-1):
                prior.latent_sequence("s", s, var_scale=var_scale)

        tr = poutine.trace(poutine.condition(outer, data={**lat, "s": s})).get_trace()
        tr.compute_log_prob()
        return tr.nodes["s"]

    plain, scaled = site(None), site(factor)
    loc, sd = plain["fn"].base_dist.bind(s)
    want = sd * factor.sqrt()
    if prior.autoregressive:
        want[..., 0, :] = sd[..., 0, :]
    got_loc, got_sd = scaled["fn"].base_dist.bind(s)
    assert torch.allclose(got_loc, loc) and torch.allclose(got_sd, want)
    log_p = torch.distributions.Normal(loc, want).log_prob(s).sum((-1, -2))
    assert torch.allclose(scaled["log_prob"], log_p, atol=1e-4)


@pytest.mark.parametrize("name", ["vae", "storn"])
def test_latent_sequence_var_scale_draws_match_the_density(name):
    # the step-by-step draw uses the same scaled variances as the teacher-forced density
    prior = make(name)

    def outer():
        with pyro.plate("batch", 3, dim=-1):
            prior.latent_sequence("s", torch.zeros(3, 6, 5), var_scale=torch.tensor([1.0, 4.0, 0.25, 9.0, 2.0]))

    torch.manual_seed(0)
    site = poutine.trace(outer).get_trace().nodes["s"]
    d = site["fn"].base_dist
    loc, sd = d.params_fn(site["value"])
    assert torch.allclose(d._loc, loc, atol=1e-5) and torch.allclose(d._scale, sd, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_latent_sequence_prior_predictive(name):
    prior = make(name)

    def outer():
        with pyro.plate("batch", 3, dim=-1):
            return prior.latent_sequence("s", torch.zeros(3, 6, 5))

    out = outer()
    assert out["s"].shape == (3, 6, 5) and torch.isfinite(out["s"]).all()


@pytest.mark.parametrize("name", ["srnn", "vrnn", "light-dvae", "hit-dvae"])
def test_latent_sequence_draws_z_and_the_sequence_jointly_without_a_guide(name):
    # p(z_t | z_{<t}, s_{<t}) reads s: without a guide, z and s are drawn together, ancestrally; the densities
    # cached at the draw are the teacher-forced ones, and those of a re-run conditioned on the drawn values
    prior = make(name)
    factor = torch.tensor([1.0, 4.0, 0.25, 9.0, 2.0])

    def outer():
        with pyro.plate("batch", 3, dim=-1):
            return prior.latent_sequence("s", torch.zeros(3, 6, 5), var_scale=factor)

    tr = poutine.trace(outer).get_trace()
    tr.compute_log_prob()
    for site in ("z", "s"):
        d = tr.nodes[site]["fn"].base_dist
        loc, scale = d.params_fn(tr.nodes[site]["value"])
        assert torch.allclose(d._loc, loc, atol=1e-5) and torch.allclose(d._scale, scale, atol=1e-5)
    values = {k: tr.nodes[k]["value"] for k in (*prior.latent_sites, "s")}
    again = poutine.trace(poutine.condition(outer, data=values)).get_trace()
    again.compute_log_prob()
    for k in values:
        assert torch.allclose(tr.nodes[k]["log_prob"], again.nodes[k]["log_prob"], atol=1e-4)
    # a sequence given alone: z is still drawn, and its density is that at the given sequence
    s = values["s"] + 0.5
    one = poutine.trace(poutine.condition(outer, data={"s": s})).get_trace()
    one.compute_log_prob()
    both = poutine.trace(poutine.condition(outer, data={**{k: one.nodes[k]["value"] for k in prior.latent_sites},
                                                        "s": s})).get_trace()
    both.compute_log_prob()
    for k in values:
        assert torch.allclose(one.nodes[k]["log_prob"], both.nodes[k]["log_prob"], atol=1e-4)


@pytest.mark.parametrize("name", ["srnn", "vrnn"])
def test_joint_stepwise_recursion_equals_the_teacher_forced_default(name):
    from pyro_dvae.priors.base import DVAE

    prior = priors.build(name, x_dim=5, z_dim=3, residual=True, **SIZES)
    torch.manual_seed(2)
    eps, noise = torch.randn(2, 6, 3), torch.randn(2, 6, 5)

    def feed(t, mean, var):
        return mean + var.sqrt() * noise[..., t, :]

    fast, generic = prior.joint_stepwise(eps, feed), DVAE.joint_stepwise(prior, eps, feed)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast, generic))


@pytest.mark.parametrize("name", ["storn", "vrnn", "srnn"])
def test_residual_decoder_consistency(name):
    torch.manual_seed(0)
    prior = priors.build(name, x_dim=5, z_dim=3, residual=True, **SIZES)
    assert prior.config["residual"] is True
    x = data((2, 6, 5), "gaussian")
    z = torch.randn(2, 6, 3)
    mean_tf, _ = prior.decode(z, x)
    mean_sw, _ = prior.decode_stepwise(z, lambda t, m, v: x[..., t, :])
    assert torch.allclose(mean_tf, mean_sw, atol=1e-5)
    plain = priors.build(name, x_dim=5, z_dim=3, **SIZES)
    plain.load_state_dict(prior.state_dict())
    # the residual prior predicts x_{t-1} + f(...): the same network plus the shifted input
    assert torch.allclose(mean_tf[..., 1:, :], plain.decode(z, x)[0][..., 1:, :] + x[..., :-1, :], atol=1e-5)
    assert torch.isfinite(loss_at(prior, x, ss_prob=0.5))
    with pytest.raises(ValueError, match="residual"):
        priors.build("vae", x_dim=5, residual=True)


def test_deepar_likelihood_is_the_one_step_gaussian():
    prior = priors.build("deepar", x_dim=3, z_dim=0, dense_dim=8, rnn_dim=8, residual=True)
    prior.fit_normalisation(torch.randn(20, 6, 3))
    x = torch.randn(2, 6, 3)
    tr = poutine.trace(prior.model).get_trace(x)
    assert [n for n, s in tr.nodes.items() if s["type"] == "sample" and n != "batch"] == ["x"]  # no latents
    loc, logvar = prior.decode_params(None, x, None)
    assert torch.allclose(loc[:, 1:], x[:, :-1] + prior.out_scale * prior.emit(prior.dec(prior._h(x)))[0][:, 1:])
    manual = torch.distributions.Normal(loc, (0.5 * logvar).exp()).log_prob(x).sum((-1, -2))
    assert torch.allclose(tr.nodes["x"]["fn"].log_prob(x), manual)
    assert prior.encode(x).rsample().shape == (2, 6, 0)
    with pytest.raises(ValueError, match="z_dim must be 0"):
        priors.build("deepar", x_dim=3, z_dim=2)


def test_fit_normalisation_and_old_checkpoints(tmp_path):
    prior = make("srnn")
    assert not prior.is_normalised
    x = torch.randn(30, 8, 5) * torch.tensor([1.0, 2, 3, 4, 5]) + 7
    prior.fit_normalisation(x)
    assert prior.is_normalised
    assert torch.allclose(prior.features(x).reshape(-1, 5).mean(0), torch.zeros(5), atol=1e-4)
    assert torch.allclose(prior.features(x).reshape(-1, 5).std(0), torch.ones(5), atol=1e-4)
    # a checkpoint written before the normalisation buffers existed loads with the identity
    old = make("srnn")
    path = tmp_path / "old.pt"
    ckpt = old.checkpoint()
    for key in ("x_loc", "x_scale", "out_scale"):
        del ckpt["state_dict"][key]
    torch.save(ckpt, path)
    back = priors.load(path)
    assert not back.is_normalised
    y = data((2, 6, 5), "gaussian")
    assert torch.equal(back.decode(torch.zeros(2, 6, 3), y)[0], old.decode(torch.zeros(2, 6, 3), y)[0])


def test_srnn_h_reuse_never_serves_stale_values():
    prior = make("srnn")
    x = torch.randn(2, 6, 5)
    with torch.no_grad():
        h1 = prior._h(x)
        assert prior._h(x) is h1  # reused for the same unmodified tensor and weights
        x.add_(1.0)  # in-place change of the input
        h2 = prior._h(x)
        assert not torch.allclose(h1, h2)
        prior.rnn_h.lstm.weight_hh_l0.mul_(0.5)  # in-place change of the weights (an optimiser step)
        h3 = prior._h(x)
        assert not torch.allclose(h2, h3)
        fx = prior.phi_x(prior.features(x))
        assert torch.equal(h3, prior.rnn_h(torch.cat([torch.zeros_like(fx[:, :1]), fx[:, :-1]], 1)))
    assert prior._h(x).requires_grad  # never reused with autograd on


@pytest.mark.parametrize("name", ["vae", "srnn", "rvae", "light-dvae"])
def test_standardised_spectral_output_starts_at_each_bins_level(name, tmp_path):
    """A spectral decoder's zero output is each bin's mean log-power plus Euler's gamma (so an untrained prior
    already predicts E[log |X|^2] of the training data); a checkpoint written before the option (no
    ``spectral_output`` in its config) rebuilds with the raw output it was trained with."""
    p = make(name, "spectral", x_dim=6)
    x = torch.rand(4, 7, 6) * torch.logspace(-6, 2, 6)
    p.fit_normalisation(x)
    with torch.no_grad():
        p.emit.logvar.weight.zero_(), p.emit.logvar.bias.zero_()
        z = torch.randn(4, 7, p.z_dim)
        logvar = p.emission_params(z, x, {"z": z, "v": torch.zeros(4, getattr(p, "v_dim", 1))})[1]
    want = torch.log(x + 1e-8).mean((0, 1)) + 0.5772156649015329
    assert torch.allclose(logvar, want.expand_as(logvar), atol=1e-5)
    assert p.config["spectral_output"] == "standardised"
    ckpt = p.checkpoint()
    del ckpt["config"]["spectral_output"]
    torch.save(ckpt, tmp_path / "old.pt")
    old = priors.load(tmp_path / "old.pt")
    assert old.spectral_output == "raw"
    with torch.no_grad():
        assert torch.equal(old.emission_params(z, x, {"z": z, "v": torch.zeros(4, getattr(p, "v_dim", 1))})[1],
                           torch.zeros_like(logvar))
    with pytest.raises(ValueError, match="spectral_output"):
        priors.build(name, x_dim=6, z_dim=3, emission="spectral", spectral_output="log", **SIZES)


@pytest.mark.parametrize("name", ["vae", "srnn", "light-dvae"])
def test_level_floor_observes_power_plus_floor(name, tmp_path):
    """``level_floor_db``: the floor is the mean training power that many dB down; the model observes ``x + f``
    under ``Exponential(mean v + f)`` and the networks read ``log(x + f)``; ``decode`` returns ``v`` itself; the
    option survives a checkpoint and an export."""
    torch.manual_seed(0)
    p = priors.build(name, x_dim=6, z_dim=3, emission="spectral", level_floor_db=20, **SIZES)
    x = torch.rand(4, 7, 6) * torch.logspace(-6, 2, 6)
    p.fit_normalisation(x)
    assert torch.isclose(p.power_floor, x.mean() / 100)
    assert torch.allclose(p.x_loc, torch.log(x + x.mean() / 100 + 1e-8).mean((0, 1)), atol=1e-5)
    tr = poutine.trace(p.model).get_trace(x)
    site = tr.nodes["x"]
    assert torch.allclose(site["value"], x + p.power_floor)
    fn = site["fn"]
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    mean = fn.mean
    z = tr.nodes["z"]["value"]
    v = p.emission_params(z, x, {k: tr.nodes[k]["value"] for k in p.latent_sites})[1].exp()
    assert torch.allclose(mean, v + p.power_floor, rtol=1e-5)
    if p.latent_sites == ("z",):  # decode() has no static latents to pass
        with torch.no_grad():
            assert torch.allclose(p.decode(z, x)[1], v, rtol=1e-5)
    p.save(tmp_path / "f.pt")
    q = priors.load(tmp_path / "f.pt")
    assert q.level_floor_db == 20.0 and torch.equal(q.power_floor, p.power_floor)
    from pyro_dvae import pretrained

    pretrained.export(str(tmp_path / "f.pt"), str(tmp_path / "f16.pt"))
    assert torch.equal(priors.load(tmp_path / "f16.pt").power_floor, p.power_floor)


def test_level_floor_frees_the_quiet_bins():
    """Below the floor a bin's loss no longer depends on how far below it the decoder's variance sits: the
    Itakura-Saito cost of a silent bin (power 1e-6 of the floor) at a variance 1e-3 or 1e-6 of the floor differs by
    less than 0.01 nats with the floor and by about log(1000) - 1 without it."""
    p = priors.build("vae", x_dim=1, z_dim=1, emission="spectral", level_floor_db=30, **SIZES)
    p.power_floor.fill_(1.0)
    free = priors.build("vae", x_dim=1, z_dim=1, emission="spectral", **SIZES)
    x = torch.tensor([[1e-6]])

    def cost(prior, v):
        return -prior.emission_dist(None, torch.log(torch.tensor([[v]]))).log_prob(x + prior.floor)

    assert abs(float(cost(p, 1e-3) - cost(p, 1e-6))) < 0.01
    assert float(cost(free, 1e-3) - cost(free, 1e-6)) > 5.0


@pytest.mark.parametrize("bad", [0, -3, float("inf"), True, "35"])
def test_level_floor_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="level_floor_db"):
        priors.build("vae", x_dim=6, z_dim=3, emission="spectral", level_floor_db=bad, **SIZES)
    with pytest.raises(ValueError, match="level_floor_db is for spectral"):
        priors.build("vae", x_dim=6, z_dim=3, emission="gaussian", level_floor_db=30, **SIZES)
