# SPDX-License-Identifier: Apache-2.0
import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_dvae import inference

InferenceResult, UnknownAlgorithmError = inference.InferenceResult, inference.UnknownAlgorithmError


def model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


@pytest.fixture
def custom():
    name = "test-constant"

    @inference.register(name)
    def constant(model, guide, *args, num_steps=3, value=1.5):
        return InferenceResult(name, guide, losses=[value] * num_steps, iter_times=[0.5] * num_steps)

    yield name
    if name in inference.available():
        inference.unregister(name)


def test_builtins_available():
    names = inference.available()
    assert {"svi", "enum-svi", "vem"} <= set(names)
    assert names == sorted(names)


def test_unknown_algorithm_lists_names():
    with pytest.raises(UnknownAlgorithmError, match=r"'foo'; available: .*enum-svi, svi, vem") as err:
        inference.get("foo")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match="available"):
        inference.run("foo", model, "auto-normal", torch.zeros(3))


def test_unknown_option_is_type_error():
    with pytest.raises(TypeError, match="'num_stepz'") as err:
        inference.run("svi", model, "auto-normal", torch.zeros(3), num_stepz=10)
    assert "num_steps" in str(err.value)  # accepted options are listed
    with pytest.raises(TypeError, match="'loss'"):
        inference.run("enum-svi", model, "auto-normal", torch.zeros(3), loss="trace")
    with pytest.raises(TypeError, match="'num_steps'"):
        inference.run("vem", model, "auto-normal", torch.zeros(3), num_steps=3)


@pytest.mark.parametrize(
    "algorithm, option, value",
    [
        ("svi", "num_steps", 0),
        ("svi", "num_steps", -5),
        ("svi", "num_steps", 2.5),
        ("svi", "lr", -1),
        ("svi", "lr", 0.0),
        ("svi", "num_particles", 0),
        ("svi", "clip_norm", -1.0),
        ("svi", "num_posterior_samples", -1),
        ("vem", "num_iters", 0),
        ("vem", "tol", -1e-3),
        ("vem", "num_elbo_particles", True),
    ],
)
def test_out_of_range_option_is_value_error(algorithm, option, value):
    with pytest.raises(ValueError, match=f"option {option}="):
        inference.run(algorithm, model, "auto-normal", torch.zeros(3), **{option: value})


def test_none_allowed_where_default_is_none():
    result = inference.run("svi", model, "auto-normal", torch.zeros(3), num_steps=2, clip_norm=None)
    assert len(result.losses) == 2


def test_double_registration_raises(custom):
    with pytest.raises(ValueError, match="already registered"):
        inference.register(custom)(lambda model, guide, *args: None)
    with pytest.raises(ValueError, match="already registered"):
        inference.register("svi")(lambda model, guide, *args: None)


def test_custom_algorithm_run_and_unregister(custom):
    assert custom in inference.available()
    assert inference.accepted_options(custom) == {"num_steps": 3, "value": 1.5}
    result = inference.run(custom, model, "my-guide", torch.zeros(2), num_steps=4)
    assert result.algorithm == custom and result.guide == "my-guide"
    assert result.losses == [1.5] * 4
    assert result.elbo == [-1.5] * 4
    assert result.final_loss == 1.5
    assert result.seconds_per_iter == pytest.approx(0.5)
    with pytest.raises(ValueError, match="num_steps"):
        inference.run(custom, model, None, num_steps=0)
    inference.unregister(custom)
    assert custom not in inference.available()
    with pytest.raises(UnknownAlgorithmError):
        inference.unregister(custom)


def test_run_checks_return_type(custom):
    inference.unregister(custom)
    inference.register(custom)(lambda model, guide, *args: "not a result")
    with pytest.raises(TypeError, match="InferenceResult"):
        inference.run(custom, model, None)


def test_result_to_dict_is_json():
    result = InferenceResult(
        "svi",
        guide=object(),
        losses=[2.0, 1.0],
        iter_times=[0.1, 0.3],
        posterior={"mu": {"mean": torch.tensor([1.0, 2.0]), "std": torch.tensor(0.5)}},
        info={"elbo": "Trace_ELBO", "elbo_object": pyro.infer.Trace_ELBO(), "sites": ("a", "b")},
    )
    d = json.loads(json.dumps(result.to_dict()))
    assert d["losses"] == [2.0, 1.0] and d["elbo"] == [-2.0, -1.0]
    assert d["final_loss"] == 1.0
    assert d["seconds_per_iter"] == pytest.approx(0.2)
    assert d["posterior"]["mu"] == {"mean": [1.0, 2.0], "std": 0.5}
    assert d["info"]["elbo_object"] == "Trace_ELBO" and d["info"]["sites"] == ["a", "b"]


def test_empty_result():
    result = InferenceResult("svi")
    assert math.isnan(result.final_loss) and math.isnan(result.seconds_per_iter)
    assert result.elbo == []


def test_options_declared_by_a_config_dataclass():
    from pyro_dvae.inference import SVIConfig

    accepted = inference.accepted_options("svi")
    assert accepted["num_steps"] == 1000 and accepted["lr"] == 1e-2 and "loss" in accepted
    enum = inference.accepted_options("enum-svi")
    assert "loss" not in enum and "num_steps" in enum
    with pytest.raises(ValueError, match="option lr="):
        SVIConfig(lr=-1.0)
    a = inference.run("svi", model, "auto-delta", torch.zeros(3), config=SVIConfig(num_steps=2, lr=0.05))
    b = inference.run("svi", model, "auto-delta", torch.zeros(3), num_steps=2, lr=0.05)
    assert len(a.losses) == len(b.losses) == 2
    with pytest.raises(TypeError, match="'loss'"):
        inference.get("enum-svi")(model, "auto-normal", torch.zeros(3), loss="trace")
