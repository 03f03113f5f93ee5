# SPDX-License-Identifier: Apache-2.0
import json
import math

import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch
from pyro.distributions import constraints
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO, config_enumerate

from pyro_dvae import inference

PRIOR_SCALE, NOISE_SCALE, NUM_OBS = 2.0, 0.5, 20


def conjugate_data():
    generator = torch.Generator().manual_seed(123)
    return 1.3 + NOISE_SCALE * torch.randn(NUM_OBS, generator=generator)


def conjugate_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, PRIOR_SCALE))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(mu, NOISE_SCALE), obs=x)


def exact_posterior(x):
    precision = PRIOR_SCALE**-2 + len(x) / NOISE_SCALE**2
    return float(x.sum() / NOISE_SCALE**2 / precision), precision**-0.5


def normal_guide(x):
    loc = pyro.param("loc", torch.tensor(0.0))
    scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("mu", dist.Normal(loc, scale))


@config_enumerate
def mixture_model(x):
    weights = pyro.sample("weights", dist.Dirichlet(torch.ones(2)))
    with pyro.plate("components", 2):
        locs = pyro.sample("locs", dist.Normal(0.0, 5.0))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Categorical(weights))
        pyro.sample("x", dist.Normal(locs[z], 1.0), obs=x)


def mixture_data():
    generator = torch.Generator().manual_seed(0)
    return torch.cat([torch.randn(10, generator=generator) - 3, torch.randn(10, generator=generator) + 3])


@pytest.mark.parametrize("guide", ["auto-normal", normal_guide], ids=["auto-normal", "callable"])
def test_conjugate_gaussian_posterior(guide):
    x = conjugate_data()
    mean, std = exact_posterior(x)
    result = inference.run(
        "svi",
        conjugate_model,
        guide,
        x,
        num_steps=500,
        optim=pyro.optim.ClippedAdam({"lr": 0.1, "lrd": 0.99}),
        loss=Trace_ELBO(num_particles=32, vectorize_particles=True, max_plate_nesting=1),
        num_posterior_samples=3000,
    )
    assert result.algorithm == "svi"
    assert len(result.losses) == len(result.iter_times) == 500
    assert all(math.isfinite(loss) for loss in result.losses)
    assert sum(result.losses[-50:]) < sum(result.losses[:50])
    assert set(result.posterior) == {"mu"}
    assert abs(float(result.posterior["mu"]["mean"]) - mean) < 0.05
    assert float(result.posterior["mu"]["std"]) == pytest.approx(std, rel=0.1)
    assert result.info["elbo"] == "Trace_ELBO" and result.info["enumerated_sites"] == []
    json.dumps(result.to_dict())


def test_defaults_and_loss_choices():
    x = conjugate_data()
    result = inference.run("svi", conjugate_model, "auto-delta", x, num_steps=3)
    assert result.info["elbo"] == "Trace_ELBO" and result.info["optim"] == "Adam"
    assert result.info["max_plate_nesting"] == 1
    result = inference.run(
        "svi", conjugate_model, normal_guide, x, num_steps=3, loss="meanfield", clip_norm=10.0
    )
    assert result.info["elbo"] == "TraceMeanField_ELBO" and result.info["optim"] == "ClippedAdam"
    elbo = TraceMeanField_ELBO()
    result = inference.run("svi", conjugate_model, normal_guide, x, num_steps=3, loss=elbo)
    assert result.info["elbo_object"] is elbo
    with pytest.raises(ValueError, match="unknown loss 'bogus'"):
        inference.run("svi", conjugate_model, normal_guide, x, num_steps=3, loss="bogus")
    with pytest.raises(TypeError, match="PyroOptim"):
        inference.run("svi", conjugate_model, normal_guide, x, num_steps=3, optim=torch.optim.Adam)


@pytest.mark.parametrize(
    "name",
    [
        "auto-normal",
        "auto-delta",
        "auto-diagonal-normal",
        "auto-multivariate-normal",
        "auto-lowrank-multivariate-normal",
    ],
)
def test_autoguide_names(name):
    result = inference.run(
        "svi", conjugate_model, name, conjugate_data(), num_steps=2, num_posterior_samples=3
    )
    assert type(result.guide).__name__ == inference.svi.AUTOGUIDES[name].__name__
    assert set(result.posterior) == {"mu"}  # auxiliary latents of the autoguide are left out
    assert result.posterior["mu"]["mean"].shape == ()


def test_unknown_guide_name():
    with pytest.raises(ValueError, match="auto-normal, auto-delta"):
        inference.run("svi", conjugate_model, "auto-magic", conjugate_data(), num_steps=2)
    with pytest.raises(TypeError, match="callable"):
        inference.run("svi", conjugate_model, 42, conjugate_data(), num_steps=2)


def test_enumerated_mixture_auto_and_enum_svi():
    x = mixture_data()
    result = inference.run(
        "svi", mixture_model, "auto-normal", x, num_steps=100, lr=0.1, num_posterior_samples=50
    )
    assert result.info["elbo"] == "TraceEnum_ELBO"
    assert result.info["enumerated_sites"] == ["z"]
    assert result.info["max_plate_nesting"] == 1
    assert set(result.posterior) == {"weights", "locs"}
    assert sum(result.losses[-10:]) < sum(result.losses[:10])
    locs = result.posterior["locs"]["mean"].sort().values
    assert locs[0] < -1.0 and locs[1] > 1.0

    pyro.clear_param_store()
    result = inference.run("enum-svi", mixture_model, "auto-delta", x, num_steps=5)
    assert result.algorithm == "enum-svi"
    assert result.info["elbo"] == "TraceEnum_ELBO" and result.info["enumerated_sites"] == ["z"]


def test_enum_without_enumerated_sites_errors():
    with pytest.raises(ValueError, match="enumerat.*this model has none"):
        inference.run("enum-svi", conjugate_model, "auto-normal", conjugate_data(), num_steps=2)


def test_meanfield_with_enumerated_sites_errors():
    with pytest.raises(ValueError, match="meanfield.*enumerated sites \\['z'\\]"):
        inference.run("svi", mixture_model, "auto-normal", mixture_data(), num_steps=2, loss="meanfield")


def nan_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.factor("broken", mu * torch.tensor(float("nan")))


def test_nan_loss_raises_and_keeps_parameters():
    with pyro.validation_enabled(False), pytest.warns(UserWarning, match="NaN"):
        with pytest.raises(FloatingPointError, match="step 0"):
            inference.run("svi", nan_model, normal_guide, torch.zeros(1), num_steps=10)
    assert pyro.param("loc").item() == 0.0 and pyro.param("scale").item() == pytest.approx(1.0)


def test_infinite_loss_raises():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(pyro.param("loc", torch.tensor(0.0)), 1.0))

    state = {"step": 0}

    def bad_model(x):  # becomes infinite after a few steps
        state["step"] += 1
        return model(x if state["step"] < 5 else torch.tensor(float("inf")))

    with pytest.raises(FloatingPointError, match="step 3"):  # step 0 is preceded by an inspection run
        inference.run("svi", bad_model, guide, torch.tensor(1.0), num_steps=10)


def test_same_seed_same_losses():
    x = mixture_data()

    def fit():
        pyro.clear_param_store()
        pyro.set_rng_seed(7)
        return inference.run("svi", mixture_model, "auto-normal", x, num_steps=20, lr=0.05).losses

    first, second = fit(), fit()
    assert first == second
    pyro.clear_param_store()
    pyro.set_rng_seed(8)
    assert inference.run("svi", mixture_model, "auto-normal", x, num_steps=20, lr=0.05).losses != first


def test_callback_stops_and_progress():
    seen = []

    def callback(step, result):
        seen.append((step, len(result.losses)))
        return step == 4

    result = inference.run(
        "svi",
        conjugate_model,
        "auto-normal",
        conjugate_data(),
        num_steps=50,
        callback=callback,
        progress=True,
    )
    assert seen == [(i, i + 1) for i in range(5)]
    assert len(result.losses) == 5 and result.info["num_steps"] == 5


def test_model_kwargs():
    def model(*, x):
        conjugate_model(x)

    result = inference.run("svi", model, "auto-normal", num_steps=3, model_kwargs={"x": conjugate_data()})
    assert len(result.losses) == 3


def point_guide(x):
    pyro.sample("mu", dist.Delta(pyro.param("point", torch.tensor(0.5))))


def mixed_guide(x):
    pyro.sample("mu", dist.Delta(pyro.param("point", torch.tensor(0.5))))
    pyro.sample("tau", dist.Normal(pyro.param("tau_loc", torch.tensor(0.0)), 1.0))


def mixed_model(x):
    pyro.sample("tau", dist.Normal(0.0, 1.0))
    conjugate_model(x)


def test_readme_posterior_pattern_for_auto_delta_and_auto_normal():
    x = conjugate_data()
    res = inference.run("svi", conjugate_model, "auto-normal", x, num_steps=300, lr=0.05, num_posterior_samples=100)
    assert res.posterior["mu"]["mean"].shape == () and float(res.posterior["mu"]["std"]) > 0
    res = inference.run("svi", conjugate_model, "auto-delta", x, num_steps=300, lr=0.05)
    mean, std = res.posterior["mu"]["mean"], res.posterior["mu"]["std"]
    assert set(res.posterior) == {"mu"} and set(res.posterior["mu"]) == {"mean", "std"}
    assert mean.shape == std.shape == ()
    assert torch.equal(mean, res.guide.median(x)["mu"])  # the fitted point itself
    assert float(std) == 0.0
    assert abs(float(mean) - exact_posterior(x)[0]) < 0.05  # MAP = posterior mean here
    posterior = json.loads(json.dumps(res.to_dict(), allow_nan=False))["posterior"]
    assert posterior == {"mu": {"mean": float(mean), "std": 0.0}}


@pytest.mark.parametrize("num_posterior_samples", [None, 1, 7])
def test_point_mass_summaries_are_exact(num_posterior_samples):
    x = mixture_data()
    result = inference.run(
        "svi", mixture_model, "auto-delta", x, num_steps=5, num_posterior_samples=num_posterior_samples
    )
    assert set(result.posterior) == {"weights", "locs"}  # the enumerated z is left out
    median = result.guide.median(x)
    for name in ("weights", "locs"):
        assert torch.equal(result.posterior[name]["mean"], median[name])
        assert torch.equal(result.posterior[name]["std"], torch.zeros_like(median[name]))


def test_callable_point_mass_guide_and_mixed_guide():
    x = conjugate_data()
    result = inference.run("svi", conjugate_model, point_guide, x, num_steps=3)
    assert torch.equal(result.posterior["mu"]["mean"], pyro.param("point").detach())
    assert float(result.posterior["mu"]["std"]) == 0.0
    pyro.clear_param_store()
    result = inference.run("svi", mixed_model, mixed_guide, x, num_steps=3)
    assert result.posterior == {}  # tau needs samples
    with pytest.raises(KeyError, match="not a point mass.*num_posterior_samples"):
        result.posterior["mu"]
    result = inference.run("svi", mixed_model, mixed_guide, x, num_steps=3, num_posterior_samples=400)
    assert torch.equal(result.posterior["mu"]["mean"], pyro.param("point").detach())  # equal samples: exact
    assert float(result.posterior["mu"]["std"]) == 0.0
    assert float(result.posterior["tau"]["std"]) == pytest.approx(1.0, rel=0.15)


def test_sampled_guide_without_num_posterior_samples():
    x = conjugate_data()
    result = inference.run("svi", conjugate_model, "auto-normal", x, num_steps=3)
    assert result.posterior == {}
    with pytest.raises(KeyError, match="AutoNormal.*pass num_posterior_samples"):
        result.posterior["mu"]
    json.dumps(result.to_dict(), allow_nan=False)
    result = inference.run("svi", conjugate_model, "auto-delta", x, num_steps=3, num_posterior_samples=0)
    with pytest.raises(KeyError, match="num_posterior_samples=0 turns posterior summaries off"):
        result.posterior["mu"]
    result = inference.run("svi", conjugate_model, "auto-delta", x, num_steps=3)
    with pytest.raises(KeyError, match=r"no posterior summary for site 'x' \(summarised sites: \['mu'\]\)"):
        result.posterior["x"]


@pytest.mark.parametrize("guide", ["auto-normal", "auto-delta"])
def test_default_summaries_leave_the_random_generators_alone(guide):
    def fit_then_draw(num_posterior_samples):
        pyro.clear_param_store()
        pyro.set_rng_seed(3)
        inference.run(
            "svi", conjugate_model, guide, conjugate_data(), num_steps=3, num_posterior_samples=num_posterior_samples
        )
        return torch.rand(3)

    assert torch.equal(fit_then_draw(None), fit_then_draw(0))
