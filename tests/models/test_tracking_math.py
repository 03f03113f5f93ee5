# SPDX-License-Identifier: Apache-2.0
"""The closed-form tracking E-steps against Pyro's exact enumeration and brute-force Gaussians."""

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from pyro_dvae import priors
from pyro_dvae.inference.vem import schedule
from pyro_dvae.likelihoods import GaussianBoxes
from pyro_dvae.models.tracking import TrackingGuide, TrackingModel
from pyro_dvae.smoothing import chain_posterior, cv_kalman_smoother, cv_velocity_smoother, dvae_smoother


def tiny_scene(B=2, T=4, K=3, N=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(B, T, K, 2, generator=g) * 0.6 + 0.2
    size = torch.rand(B, T, K, 2, generator=g) * 0.05 + 0.05
    obs = torch.cat([centre - size / 2, centre + size / 2], -1)
    mask = torch.rand(B, T, K, generator=g) > 0.2
    return obs, mask


def tiny_prior(name="vae"):
    torch.manual_seed(0)
    return priors.build(name, x_dim=4, z_dim=2, dense_dim=8, rnn_dim=8, z_dense=[8])


@pytest.mark.parametrize("clutter_prob", [0.0, 0.2])
def test_ew_equals_exact_enumeration(clutter_prob):
    obs, mask = tiny_scene()
    model = TrackingModel(tiny_prior(), 2, likelihood=GaussianBoxes(2.0), clutter_prob=clutter_prob)
    guide = TrackingGuide(model).initialise(obs, mask)
    s = guide["s"].mean.clone()
    torch.manual_seed(1)
    z = torch.randn(2, 2, 4, 2)
    guide["s"].var = torch.zeros_like(s)  # q(s) a point mass at s: E-W is then the exact posterior of w
    guide["w"].update(model, guide, obs, mask)
    conditioned = poutine.condition(model.model, data={"s": s, "z": z})
    marg = TraceEnum_ELBO(max_plate_nesting=3).compute_marginals(conditioned, lambda *a, **k: None, obs, mask)
    exact = marg["w"].probs if hasattr(marg["w"], "probs") else marg["w"].logits.exp()
    eta = guide["w"].eta
    assert torch.allclose(eta, exact.reshape(eta.shape), atol=1e-5)
    assert ((eta > 0.05) & (eta < 0.95)).any()  # soft responsibilities, not a trivial 0/1 case


def test_es_equals_brute_force_gaussian_posterior():
    # non-autoregressive prior: p(s_t | z_t) = N(mu_t, v_t); q(s_tn) ∝ N(mu, v) prod_k N(o_tk; s, Phi)^eta
    obs, mask = tiny_scene()
    prior = tiny_prior("vae")
    model = TrackingModel(prior, 2)
    guide = TrackingGuide(model).initialise(obs, mask)
    torch.manual_seed(3)
    guide["z"].z, guide["z"].latents = torch.randn(2, 2, 4, 2), {}
    guide["s"].update(model, guide, obs, mask)
    mu, v = prior.decode(guide["z"].z)
    eta = guide["w"].eta.numpy() * mask.numpy()[..., None]
    phi = model.likelihood.variance(obs).numpy()
    o, mu, v = obs.numpy(), mu.detach().numpy(), v.detach().numpy()
    for b in range(2):
        for n in range(2):
            for t in range(4):
                prec = 1 / v[b, n, t] + sum(eta[b, t, k, n] / phi[b, t, k] for k in range(3))
                mean = (mu[b, n, t] / v[b, n, t] + sum(eta[b, t, k, n] * o[b, t, k] / phi[b, t, k]
                                                       for k in range(3))) / prec
                np.testing.assert_allclose(guide["s"].mean[b, n, t].numpy(), mean, rtol=1e-4, atol=1e-6)
                np.testing.assert_allclose(guide["s"].var[b, n, t].numpy(), 1 / prec, rtol=1e-4)


def _cv_joint(J, h, Jv, hv, q, init, v0, vel):
    """Brute force: the joint Gaussian over x = (p_1, u_1, ..., p_T, u_T) of a constant-velocity chain observed in
    position (J, h) and velocity (Jv, hv); its covariance and mean."""
    T = len(J)
    A = np.array([[1.0, 1.0], [0.0, 1.0]])
    Qi = np.linalg.inv(q * np.array([[1 / 3, 0.5], [0.5, 1.0]]))
    L = np.zeros((2 * T, 2 * T))
    eta = np.zeros(2 * T)
    L[:2, :2] += np.diag([1 / v0, 1 / vel])
    eta[0] += init / v0
    for t in range(1, T):
        i, j = slice(2 * t, 2 * t + 2), slice(2 * t - 2, 2 * t)
        L[i, i] += Qi
        L[j, j] += A.T @ Qi @ A
        L[i, j] -= Qi @ A
        L[j, i] -= A.T @ Qi
    for t in range(T):
        L[2 * t, 2 * t] += J[t]
        L[2 * t + 1, 2 * t + 1] += Jv[t]
        eta[2 * t] += h[t]
        eta[2 * t + 1] += hv[t]
    cov = np.linalg.inv(L)
    return cov, cov @ eta


def test_cv_kalman_smoother_equals_joint_gaussian():
    torch.manual_seed(0)
    T, q, v0, vel = 6, 1e-3, 0.5, 0.1
    J = torch.rand(1, T, 1, dtype=torch.float64) * 50
    J[0, 2] = 0.0  # a frame without detections
    h = J * torch.randn(1, T, 1, dtype=torch.float64)
    init = torch.tensor([[0.3]], dtype=torch.float64)
    mean, var = cv_kalman_smoother(J, h, q, init, torch.tensor(v0, dtype=torch.float64), vel)
    zero = np.zeros(T)
    cov, joint_mean = _cv_joint(J[0, :, 0].numpy(), h[0, :, 0].numpy(), zero, zero, q, 0.3, v0, vel)
    np.testing.assert_allclose(mean[0, :, 0].numpy(), joint_mean[::2], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(var[0, :, 0].numpy(), np.diag(cov)[::2], rtol=1e-8)


@pytest.mark.parametrize("T", [1, 2, 7])
def test_cv_velocity_smoother_equals_joint_gaussian(T):
    torch.manual_seed(1)
    D, q, v0, vel = 3, torch.tensor([1e-3, 5e-3, 2e-2], dtype=torch.float64), 0.5, 0.1
    J = torch.rand(2, T, D, dtype=torch.float64) * 50
    Jv = torch.rand(2, T, D, dtype=torch.float64) * 20
    J[:, T // 2] = 0.0  # a frame without a detection
    Jv[:, 0] = 0.0
    h, hv = J * torch.randn(2, T, D, dtype=torch.float64), Jv * torch.randn(2, T, D, dtype=torch.float64)
    init = torch.rand(2, D, dtype=torch.float64)
    out = cv_velocity_smoother(J, h, Jv, hv, q, init, torch.tensor(v0, dtype=torch.float64), vel)
    A = np.array([[1.0, 1.0], [0.0, 1.0]])
    Q0i = np.linalg.inv(np.array([[1 / 3, 0.5], [0.5, 1.0]]))
    for b in range(2):
        for d in range(D):
            cov, mean = _cv_joint(J[b, :, d].numpy(), h[b, :, d].numpy(), Jv[b, :, d].numpy(),
                                  hv[b, :, d].numpy(), q[d].item(), init[b, d].item(), v0, vel)
            np.testing.assert_allclose(out.mean[b, :, d].numpy(), mean[::2], rtol=1e-7, atol=1e-10)
            np.testing.assert_allclose(out.vel_mean[b, :, d].numpy(), mean[1::2], rtol=1e-7, atol=1e-10)
            np.testing.assert_allclose(out.var[b, :, d].numpy(), np.diag(cov)[::2], rtol=1e-7)
            np.testing.assert_allclose(out.vel_var[b, :, d].numpy(), np.diag(cov)[1::2], rtol=1e-7)
            assert out.cross[b, 0, d] == 0 and out.accel[b, 0, d] == 0
            for t in range(1, T):
                now, before = slice(2 * t, 2 * t + 2), slice(2 * t - 2, 2 * t)
                np.testing.assert_allclose(out.cross[b, t, d].item(), cov[2 * t, 2 * t - 2], rtol=1e-7, atol=1e-14)
                # E[w w^T] of the step's process noise w = x_t - A x_{t-1}
                M = np.zeros((2, 2 * T))
                M[:, now], M[:, before] = np.eye(2), -A
                E = M @ cov @ M.T + np.outer(M @ mean, M @ mean)
                np.testing.assert_allclose(out.accel[b, t, d].item(), 0.5 * np.trace(Q0i @ E), rtol=1e-7)
    # without velocity observations it is the constant-velocity smoother
    zero = torch.zeros_like(J)
    plain = cv_velocity_smoother(J, h, zero, zero, q, init, torch.tensor(v0, dtype=torch.float64), vel)
    ref = cv_kalman_smoother(J, h, q, init, torch.tensor(v0, dtype=torch.float64), vel)
    torch.testing.assert_close(plain.mean, ref[0])
    torch.testing.assert_close(plain.var, ref[1])


def test_acceleration_noise_m_step_is_the_maximiser():
    # the M-step's q maximises sum_t E_q[log N(w_t; 0, q Q0)] under the smoother's posterior
    from pyro_dvae.models.tracking import AccelerationNoiseMStep

    obs, mask = tiny_scene(B=3, T=8, K=1, N=1, seed=6)
    model = TrackingModel(tiny_prior("srnn"), 1)
    guide = TrackingGuide(model, mode="velocity", latents="prior").initialise(obs, mask)
    step = next(b for b in model.m_steps if isinstance(b, AccelerationNoiseMStep))
    with torch.no_grad():
        for block in schedule(model, guide):
            if block is not step:
                block.update(model, guide, obs, mask)
        stat = guide["s"].accel[..., 1:, :]
        before = model.accel_var.clone()
        step.update(model, guide, obs, mask)
    q = model.accel_var
    assert not torch.allclose(q, before)

    def expected_log_density(q):  # up to constants: -1/2 sum_t [2 log q + tr(Q0^{-1} E_t) / q]
        return -(stat.reshape(-1, 4).shape[0] * torch.log(q) + stat.reshape(-1, 4).sum(0) / q)

    best = expected_log_density(q)
    for factor in (1.1, 1 / 1.1):
        assert torch.all(expected_log_density(q * factor) < best)
    # other E-S modes leave it alone
    guide2 = TrackingGuide(model, mode="parallel").initialise(obs, mask)
    with torch.no_grad():
        for block in schedule(model, guide2):
            if block is not step:
                block.update(model, guide2, obs, mask)
        step.update(model, guide2, obs, mask)
    assert torch.equal(model.accel_var, q)


def test_velocity_mode_without_trust_in_the_prior_is_constant_velocity():
    # an infinitely uncertain velocity observation leaves the constant-velocity smoother with the model's
    # acceleration noise; a confident one pulls the velocity to the prior's one-step displacement
    obs, mask = tiny_scene(B=2, T=6, K=1, N=1, seed=7)
    model = TrackingModel(tiny_prior("srnn"), 1)
    model.accel_var = torch.full((4,), 3e-5)
    ref = TrackingGuide(model, dynamics="cv", accel_var=3e-5).initialise(obs, mask)
    g = TrackingGuide(model, mode="velocity", latents="prior", velocity_scale=1e12).initialise(obs, mask)
    with torch.no_grad():
        for guide, names in ((ref, "ws"), (g, "wzs")):
            for name in names:
                guide[name].update(model, guide, obs, mask)
    torch.testing.assert_close(g["s"].mean, ref["s"].mean, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(g["s"].var, ref["s"].var, rtol=1e-4, atol=1e-9)
    assert g["s"].sq_err is not None and g.elbo(model, obs, mask) is not None


def test_velocity_mode_is_checked():
    from pyro_dvae.models.tracking import SourceBlock, TrackingConfig

    with pytest.raises(ValueError, match="velocity_scale"):
        SourceBlock(mode="velocity", velocity_scale=0.0)
    with pytest.raises(ValueError, match="mode"):
        SourceBlock(mode="drift")
    with pytest.raises(ValueError, match="velocity_scale"):
        TrackingConfig(mode="velocity", velocity_scale=-1.0)
    assert TrackingConfig(mode="velocity").velocity_scale == 5.0


def test_dvae_smoother_non_autoregressive_has_no_smoothing_pass():
    prior = tiny_prior("dkf")
    z = torch.randn(2, 5, 2)
    J, h = torch.rand(2, 5, 4) * 10, torch.randn(2, 5, 4)
    m1, v1, *_ = dvae_smoother(prior, z, J, h)
    m2, v2, *_ = dvae_smoother(prior, z, J, h, smooth=False)
    assert torch.equal(m1, m2) and torch.equal(v1, v2)


@pytest.mark.parametrize("clutter_prob", [0.0, 0.1])
def test_elbo_never_decreases_over_exact_steps_with_z_fixed(clutter_prob):
    obs, mask = tiny_scene(B=3, T=8, K=4, N=2, seed=4)
    model = TrackingModel(tiny_prior("vae"), 2, clutter_prob=clutter_prob)
    guide = TrackingGuide(model).initialise(obs, mask)
    with torch.no_grad():
        guide["z"].update(model, guide, obs, mask)  # then held fixed
        steps = [b for b in schedule(model, guide) if b.name != "z"]
        guide["s"].update(model, guide, obs, mask)
        last = guide.elbo(model, obs, mask)
        for _ in range(6):
            for block in steps:
                block.update(model, guide, obs, mask)
                now = guide.elbo(model, obs, mask)
                assert now >= last - 1e-6 * abs(last), (block.name, last, now)
                if block.name == "phi":  # the M-step alone does not lower the ELBO
                    assert now >= last - 1e-6 * abs(last)
                last = now


@pytest.mark.parametrize("name", ["light-dvae", "hit-dvae"])
def test_vem_tracks_with_the_transformer_dvaes(name):
    """The Transformer DVAEs plug into tracking through the prior contract: a VEM run gives a finite,
    exact ELBO and finite source estimates."""
    from pyro_dvae import inference

    obs, mask = tiny_scene(B=2, T=6, K=3, N=2, seed=5)
    model = TrackingModel(tiny_prior(name), 2)
    guide = TrackingGuide(model).initialise(obs, mask)
    res = inference.run("vem", model, guide, obs, mask, num_iters=2)
    assert np.isfinite(res.losses).all() and torch.isfinite(guide["s"].mean).all()


def test_model_runs_with_enum_svi_and_an_autoguide():
    obs, mask = tiny_scene(B=1, T=3, K=2, N=2)
    model = TrackingModel(tiny_prior("vae"), 2)
    from pyro_dvae import inference

    res = inference.run("enum-svi", model.model, "auto-normal", obs, mask, num_steps=3, lr=0.01)
    assert len(res.losses) == 3 and all(np.isfinite(res.losses))
    assert res.info["enumerated_sites"] == ["w"]
    pyro.clear_param_store()


@pytest.mark.parametrize("autograd", [True, False], ids=["autograd", "no_grad"])
@pytest.mark.parametrize("T", [1, 2, 7, 60])
def test_chain_posterior_equals_joint_gaussian(T, autograd):
    torch.manual_seed(T)
    shape = (2, T, 3)
    J = torch.rand(shape, dtype=torch.float64) * 1e4
    J[:, T // 3: 2 * T // 3] = 0.0  # a gap
    h = J * (torch.rand(shape, dtype=torch.float64) * 0.5 + 0.2)
    drift = torch.randn(shape, dtype=torch.float64) * 1e-3
    v = torch.rand(shape, dtype=torch.float64) * 1e-5 + 1e-7
    mu0, v0 = torch.rand(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)
    with torch.set_grad_enabled(autograd):
        mean, var, cross = chain_posterior(J, h, mu0, v0, drift, v)
    assert not any(x.is_inference() for x in (mean, var, cross))  # ordinary tensors either way
    mean.add_(0.0)  # in-place use (an inference tensor would refuse it here)
    for b in range(2):
        for d in range(3):  # brute force: joint precision of s_0..s_{T-1}
            L, eta = np.zeros((T, T)), np.zeros(T)
            L[0, 0], eta[0] = 1 / v0[b, d].item(), mu0[b, d].item() / v0[b, d].item()
            for t in range(1, T):
                w, dr = 1 / v[b, t, d].item(), drift[b, t, d].item()
                L[t, t] += w
                L[t - 1, t - 1] += w
                L[t, t - 1] -= w
                L[t - 1, t] -= w
                eta[t] += w * dr
                eta[t - 1] -= w * dr
            L += np.diag(J[b, :, d].numpy())
            eta += h[b, :, d].numpy()
            cov = np.linalg.inv(L)
            np.testing.assert_allclose(mean[b, :, d].numpy(), cov @ eta, rtol=1e-7, atol=1e-10)
            np.testing.assert_allclose(var[b, :, d].numpy(), np.diag(cov), rtol=1e-6)
            np.testing.assert_allclose(cross[b, 1:, d].numpy(), np.diag(cov, -1), rtol=1e-6)
            assert cross[b, 0, d] == 0


def test_dynamics_noise_m_step_is_the_elbo_maximiser():
    obs, mask = tiny_scene(B=3, T=8, K=4, N=2, seed=4)
    prior = tiny_prior("srnn")
    model = TrackingModel(prior, 2)
    guide = TrackingGuide(model).initialise(obs, mask)
    alpha_step = next(b for b in model.m_steps if b.name == "alpha")
    with torch.no_grad():
        for block in schedule(model, guide):
            if block is not alpha_step:
                block.update(model, guide, obs, mask)
        before = guide.elbo(model, obs, mask)
        old = model.dynamics_scale.clone()
        alpha_step.update(model, guide, obs, mask)
        after = guide.elbo(model, obs, mask)
        assert after >= before - 1e-6 * abs(before)
        assert not torch.allclose(model.dynamics_scale, old)
        qs, best = guide["s"], model.dynamics_scale.clone()
        pv = qs.prior_var.clone()
        for factor in (1.2, 1 / 1.2):  # any other scale of the dynamics variance is worse
            qs.prior_var = torch.cat([pv[..., :1, :], pv[..., 1:, :] * factor], -2)
            assert guide.elbo(model, obs, mask) < after
        qs.prior_var = pv
        assert torch.equal(model.dynamics_scale, best)


def test_model_reads_the_calibrated_dynamics_scale():
    # calibrate_dynamics maximises the model's log p(s | z) over the dynamics-variance factor
    obs, mask = tiny_scene(B=2, T=6, K=3, N=2, seed=5)
    model = TrackingModel(tiny_prior("srnn"), 2)
    torch.manual_seed(2)
    s = 0.5 + 0.1 * torch.randn(2, 2, 6, 4).cumsum(-2)
    z = torch.randn(2, 2, 6, 2)

    def log_p_s():
        tr = poutine.trace(poutine.condition(model.model, data={"s": s, "z": z})).get_trace(obs, mask)
        tr.compute_log_prob()
        return tr.nodes["s"]["log_prob_sum"]

    before = log_p_s()
    alpha = model.calibrate_dynamics(s, z).clone()
    best = log_p_s()
    assert best > before and not torch.allclose(alpha, torch.ones(4))
    for factor in (1.2, 1 / 1.2):
        model.dynamics_scale = alpha * factor
        assert log_p_s() < best


def test_greedy_tracks_seeded_with_first_frame_boxes():
    from pyro_dvae.models.tracking import greedy_tracks

    obs, mask = tiny_scene(B=2, T=5, K=3, N=2, seed=2)
    seeds = obs[:, 0, [2, 0]]  # the sources are detections 2 and 0 of the first frame, in that order
    out = greedy_tracks(obs, torch.ones_like(mask), 2, seeds=seeds)
    assert torch.allclose(out[:, :, 0], seeds.to(out.dtype))
    with pytest.raises(ValueError, match="seeds must be shaped"):
        greedy_tracks(obs, mask, 2, seeds=seeds[:, :1])


@torch.no_grad()
def test_expected_log_lik_reuse_is_never_stale():
    # E-W reuses the ELBO's expected log-likelihoods only while nothing they depend on changed
    obs, mask = tiny_scene()
    model = TrackingModel(tiny_prior(), 2, clutter_prob=0.2)
    guide = TrackingGuide(model).initialise(obs, mask)
    qw, qs = guide["w"], guide["s"]

    def fresh():
        qw._ell = None
        return qw.expected_log_lik(model, obs, qs.mean, qs.var)

    first = qw.expected_log_lik(model, obs, qs.mean, qs.var)
    assert qw.expected_log_lik(model, obs, qs.mean, qs.var) is first  # reused
    for change in (lambda: model.likelihood.ratio.mul_(1.5), lambda: qs.mean.add_(0.01),
                   lambda: qs.var.mul_(2.0), lambda: setattr(model.clutter, "scale", 0.3)):
        before = qw.expected_log_lik(model, obs, qs.mean, qs.var).clone()
        change()
        after = qw.expected_log_lik(model, obs, qs.mean, qs.var)
        assert not torch.allclose(before, after)
        assert torch.equal(after, fresh())


@pytest.mark.parametrize("seeded", [False, True])
def test_greedy_tracks_single_source_fast_path_equals_the_loop(seeded):
    """One source and one detection slot (the whole-sequence tracker's refinement windows) take a path vectorised
    over windows; it gives exactly the boxes of the per-window loop (run here through a second, never-present
    detection slot), including jumps refused by the gate, late seeds and windows with no detection."""
    from pyro_dvae.models.tracking import greedy_tracks

    rng = np.random.default_rng(0)
    B, T = 200, 30
    c = np.cumsum(rng.normal(0, 0.01, (B, T, 2)), 1) + 0.5
    jump = rng.random((B, T)) < 0.05
    c[jump] += rng.normal(0, 0.2, (int(jump.sum()), 2))
    wh = np.abs(rng.normal(0.05, 0.01, (B, 1, 2))) * np.ones((1, T, 1))
    obs = torch.tensor(np.concatenate([c - wh / 2, c + wh / 2], -1)[:, :, None], dtype=torch.float32)
    mask = torch.as_tensor(rng.random((B, T, 1)) > 0.4)
    mask[:5], mask[5:10, :10] = False, False
    seeds = obs[:, 0].clone() if seeded else None
    fast = greedy_tracks(obs, mask, 1, seeds=seeds)
    slow = greedy_tracks(torch.cat([obs, torch.zeros_like(obs)], 2), torch.cat([mask, torch.zeros_like(mask)], 2), 1,
                         seeds=seeds)
    assert torch.equal(fast, slow)


@pytest.mark.parametrize("name", ["srnn", "vrnn"])
def test_prior_latents_read_only_the_past(name):
    """``latents="prior"``: E-Z sets ``z`` to the prior's conditional means along the current track
    (``joint_stepwise`` with zero noise, fed the means), so the E-S prior mean of step ``k`` (and every ``z_t``,
    ``t <= k``) is unchanged when ``s_k`` moves, while the encoder's posterior path changes at ``k``."""
    obs, mask = tiny_scene(T=6)
    prior = tiny_prior(name)
    model = TrackingModel(prior, 2)
    guide = TrackingGuide(model, latents="prior", sample_z=False).initialise(obs, mask)
    mean = guide["s"].mean.clone()
    guide["z"].update(model, guide, obs, mask)
    z = guide["z"].z.clone()
    expect = prior.joint_stepwise(torch.zeros(*mean.shape[:-1], prior.z_dim), lambda t, m, v: mean[..., t, :])[0]
    assert torch.allclose(z, expect)
    k = 3
    guide["s"].mean = mean.clone()
    guide["s"].mean[..., k, :] += 0.2
    guide["z"].update(model, guide, obs, mask)
    assert torch.allclose(guide["z"].z[..., : k + 1, :], z[..., : k + 1, :])
    assert not torch.allclose(guide["z"].z[..., k + 1:, :], z[..., k + 1:, :])  # later steps read s_k
    with torch.no_grad():
        mu0 = prior.emission_params(z, mean, {})[0]
        mu1 = prior.emission_params(guide["z"].z, guide["s"].mean, {})[0]
    assert torch.allclose(mu0[..., : k + 1, :], mu1[..., : k + 1, :], atol=1e-6)  # the forecast of s_k ignores s_k
    post = TrackingGuide(model, sample_z=False).initialise(obs, mask)
    post["s"].mean = mean.clone()
    post["z"].update(model, post, obs, mask)
    z_post = post["z"].z.clone()
    post["s"].mean[..., k, :] += 0.2
    post["z"].update(model, post, obs, mask)
    assert not torch.allclose(post["z"].z[..., k, :], z_post[..., k, :])  # the encoder reads s_k itself


def test_prior_latents_are_checked():
    from pyro_dvae.models.tracking import TrackingConfig

    with pytest.raises(ValueError, match="latents"):
        TrackingConfig(latents="encoder")
    with pytest.raises(ValueError, match="latents='prior' is an E-Z step of algo='vem'"):
        TrackingConfig(latents="prior", algo="svi")
    model = TrackingModel(tiny_prior("dsae"), 2)
    with pytest.raises(ValueError, match="without static latents"):
        TrackingGuide(model, latents="prior")
    with pytest.raises(ValueError, match="latents must be one of"):
        TrackingGuide(TrackingModel(tiny_prior("srnn"), 2), latents="encoder")
