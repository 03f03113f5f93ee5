# SPDX-License-Identifier: Apache-2.0
"""Swapping guides on the task models: every registered autoguide runs by name on the tracking model through
``inference.run`` (the prior's ``z`` and ``s`` drawn jointly where no guide gives them), and through
``run_tracking(..., guide=...)``, scoring within a stated margin of the default guide on the crossing scene; the
configs refuse a guide with ``algo="vem"`` and a dense guide too large for memory, in one line. The separation and
enhancement entry points are checked in their own test files; the full grid of guides x priors x tasks is
``tests/models/test_guide_grid.py`` (``-m grid``)."""

import functools

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDiagonalNormal
from torch.distributions import constraints

from pyro_dvae import inference, pretrained
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
from pyro_dvae.inference.svi import AUTOGUIDES, check_guide_size, guide_estimate
from pyro_dvae.metrics import tracking_metrics
from pyro_dvae.models.enhancement import EnhanceConfig
from pyro_dvae.models.separation import SeparationConfig
from pyro_dvae.models.tracking import TrackingConfig, TrackingModel, greedy_tracks, run_tracking

#: run_tracking's MOTA with a swapped guide is at least the default guide's minus this, on the crossing scene
MOTA_MARGIN = 0.1


def windows(T=12, B=2, seed=1):
    gt = np.stack([crossing_scene(T, 3, seed=s) for s in range(B)])
    obs, mask, _ = simulate_detections(gt, noise=0.05, drop=0.1, seed=seed)
    return gt, torch.tensor(obs, dtype=torch.float32), torch.tensor(mask)


def source_guide(num_sources, z_dim):
    """A hand-written guide ``guide(obs, obs_mask)`` of the tracking model: ``s`` started at the greedy tracks,
    ``z`` at 0, mean-field Gaussians."""

    def guide(obs, obs_mask):
        init = greedy_tracks(obs, obs_mask, num_sources)
        B, N, T, _ = init.shape
        loc = pyro.param("user.s_loc", init)
        scale = pyro.param("user.s_scale", torch.full_like(init, 1e-3), constraint=constraints.positive)
        z_loc = pyro.param("user.z_loc", torch.zeros(B, N, T, z_dim))
        z_scale = pyro.param("user.z_scale", torch.full((B, N, T, z_dim), 0.1), constraint=constraints.positive)
        with pyro.plate("batch", B, dim=-2), pyro.plate("sources", N, dim=-1):
            pyro.sample("s", dist.Normal(loc, scale).to_event(2))
            pyro.sample("z", dist.Normal(z_loc, z_scale).to_event(2))

    return guide


@pytest.mark.parametrize("algo", ["svi", "enum-svi"])
@pytest.mark.parametrize("name", list(AUTOGUIDES))
def test_every_autoguide_runs_by_name_on_the_tracking_model(name, algo):
    # the pretrained SRNN's p(z_t | z_<t, s_<t) reads s: the autoguide's initialisation runs the model without a
    # guide, which draws z and s jointly, ancestrally
    _, obs, mask = windows()
    model = TrackingModel(pretrained.load(), num_sources=3)
    res = inference.run(algo, model.model, name, obs, mask, num_steps=4)
    assert type(res.guide).__name__ == AUTOGUIDES[name].__name__
    assert res.info["enumerated_sites"] == ["w"] and res.info["elbo"] == "TraceEnum_ELBO"
    assert len(res.losses) == 4 and np.isfinite(res.losses).all()
    s = guide_estimate(res.guide, "s", obs, mask)
    assert s.shape == (2, 3, 12, 4) and torch.isfinite(s).all()


def test_a_guide_factory_runs_through_the_registry():
    _, obs, mask = windows()
    model = TrackingModel(pretrained.load(), num_sources=3)
    res = inference.run("svi", model.model, functools.partial(AutoDiagonalNormal, init_scale=0.01), obs, mask,
                        num_steps=3)
    assert isinstance(res.guide, AutoDiagonalNormal) and res.info["enumerated_sites"] == ["w"]
    assert float(res.guide.scale.detach().max()) < 0.02  # the factory's own option reached the guide


@pytest.fixture(scope="module")
def crossing():
    """The crossing scene of docs/tutorials/writing_a_likelihood.py: one window of 30 frames, 3 sources."""
    gt = crossing_scene(T=30)[None]
    obs, mask, _ = simulate_detections(gt, noise=0.05, drop=0.1, seed=1)
    return gt, torch.tensor(obs, dtype=torch.float32), torch.tensor(mask)


def test_run_tracking_swaps_guides_within_the_margin_of_the_default(crossing):
    # measured (docs/guides/guides.md): default 0.956, auto-normal 0.956, the others 1.000
    gt, obs, mask = crossing
    prior = pretrained.load()
    guides = {"default": None, "auto-normal": "auto-normal", "auto-delta": "auto-delta",
              "auto-lowrank-multivariate-normal": "auto-lowrank-multivariate-normal",
              "callable": source_guide(3, prior.z_dim)}
    mota = {}
    for label, guide in guides.items():
        est, res = run_tracking(obs, mask, 3, prior=prior, algo="svi", guide=guide)  # 20 steps (the default)
        assert est.shape == (1, 30, 3, 4) and np.isfinite(res.losses).all() and len(res.losses) == 20
        mota[label] = tracking_metrics(list(gt), list(est.numpy()))["mota"]
    assert mota["default"] > 0.9, mota
    assert all(m >= mota["default"] - MOTA_MARGIN for m in mota.values()), mota
    assert mota["auto-normal"] == mota["default"]  # the default guide is AutoNormal: the same fit


def test_named_auto_normal_is_the_default_guide_exactly(crossing):
    _, obs, mask = crossing
    default, _ = run_tracking(obs, mask, 3, prior=pretrained.load(), algo="svi", num_iters=5)
    named, _ = run_tracking(obs, mask, 3, prior=pretrained.load(), algo="svi", num_iters=5, guide="auto-normal")
    assert torch.equal(default, named)


def test_configs_refuse_a_guide_with_vem_in_one_line():
    for make, structured in ((lambda **kw: TrackingConfig(**kw), "TrackingGuide"),
                             (lambda **kw: SeparationConfig(**kw), "SeparationGuide")):
        with pytest.raises(ValueError, match=f"variational EM .*{structured}.* use algo='svi'") as info:
            make(algo="vem", guide="auto-normal")
        assert "\n" not in str(info.value)
        with pytest.raises(ValueError, match="unknown guide 'auto-magic'"):
            make(algo="svi", guide="auto-magic")
        with pytest.raises(TypeError, match="guide must be"):
            make(algo="svi", guide=42)
        assert make(algo="svi", guide=AutoDiagonalNormal).guide is AutoDiagonalNormal
    with pytest.raises(ValueError, match="noise='nmf'.*EnhancementGuide.*deep noise model"):
        EnhanceConfig(noise="nmf", guide="auto-normal")
    with pytest.raises(ValueError, match="mode 'und' fits nothing"):
        EnhanceConfig(noise="nolv", mode="und", noise_checkpoint="x.pt", guide="auto-normal")
    assert EnhanceConfig(noise="nolv", guide="auto-delta").guide == "auto-delta"
    with pytest.raises(ValueError, match="algo='vem'"):
        run_tracking(torch.rand(1, 4, 3, 4).sort(-1).values, torch.ones(1, 4, 3, dtype=torch.bool), 3,
                     prior=pretrained.load(), guide="auto-delta")


def test_dense_guides_too_large_for_memory_are_refused_with_the_sizes():
    check_guide_size("auto-multivariate-normal", 4000)  # 16 million parameters: fine
    with pytest.raises(ValueError, match=r"20,600 latent dimensions.*20,600 x 20,600 scale_tril.*"
                                         r"'auto-lowrank-multivariate-normal'") as info:
        check_guide_size("auto-multivariate-normal", 20_600)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"x 447 covariance factor"):
        check_guide_size("auto-lowrank-multivariate-normal", 200_000)
    check_guide_size("auto-normal", 10**9)  # as large as the latents themselves: not checked


def test_guide_estimate_reads_a_callable_guide_and_an_autoguide(crossing):
    _, obs, mask = crossing
    guide = source_guide(3, 4)
    est = guide_estimate(guide, "s", obs, mask)
    assert torch.equal(est, pyro.param("user.s_loc").detach())  # a Normal's mean is its location
    with pytest.raises(KeyError, match="no site 'q'"):
        guide_estimate(guide, "q", obs, mask)
