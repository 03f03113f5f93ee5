# SPDX-License-Identifier: Apache-2.0
"""
Variational EM on a conjugate toy: a bivariate Gaussian latent ``z = (z1, z2)``
with a known correlated prior, observations ``x_n ~ N(z, sigma2 I)`` with
unknown ``sigma2``, a mean-field guide ``q(z1) q(z2)`` with CAVI updates, and a
closed-form M-step for ``sigma2`` (Bishop 2006, section 10.1.2).
"""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.distributions import constraints
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

from pyro_dvae import inference

Block, ClosedFormBlock = inference.Block, inference.ClosedFormBlock
GradientBlock, StructuredGuide = inference.GradientBlock, inference.StructuredGuide

DTYPE = torch.float64
MU0 = torch.tensor([0.5, -1.0], dtype=DTYPE)
SIGMA0 = torch.tensor([[1.0, 0.8], [0.8, 2.0]], dtype=DTYPE)
LAMBDA0 = torch.linalg.inv(SIGMA0)
SLACK = 1e-9


def data():
    generator = torch.Generator().manual_seed(1)
    return torch.tensor([1.0, 0.0], dtype=DTYPE) + 0.7 * torch.randn(10, 2, generator=generator, dtype=DTYPE)


def update_sigma2(model, guide, x):
    m, v = moments(guide)
    model.sigma2 = ((x - m) ** 2 + v).mean()


class ToyModel:
    def __init__(self, sigma2=1.0, m_step=True):
        self.sigma2 = torch.tensor(sigma2, dtype=DTYPE)
        self.m_steps = [ClosedFormBlock("sigma2", update_sigma2, kind="m")] if m_step else []

    def __call__(self, x):
        z1 = pyro.sample("z1", dist.Normal(MU0[0], SIGMA0[0, 0].sqrt()))
        slope = SIGMA0[1, 0] / SIGMA0[0, 0]
        cond_scale = (SIGMA0[1, 1] - slope * SIGMA0[1, 0]).sqrt()
        z2 = pyro.sample("z2", dist.Normal(MU0[1] + slope * (z1 - MU0[0]), cond_scale))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(torch.stack([z1, z2], -1), self.sigma2.sqrt()).to_event(1), obs=x)


def natural_posterior(model, x):
    """Precision and precision-times-mean of the exact posterior of z."""
    precision = LAMBDA0 + x.shape[0] / model.sigma2 * torch.eye(2, dtype=DTYPE)
    return precision, LAMBDA0 @ MU0 + x.sum(0) / model.sigma2


class NormalFactor(ClosedFormBlock):
    """q(z_d) = N(loc, var) with the CAVI update given the other factor."""

    def __init__(self, d):
        super().__init__(f"q_z{d + 1}")
        self.d, self.site = d, f"z{d + 1}"
        self.register_buffer("loc", torch.zeros((), dtype=DTYPE))
        self.register_buffer("var", torch.ones((), dtype=DTYPE))

    def update(self, model, guide, x):
        precision, shift = natural_posterior(model, x)
        d, other = self.d, guide[f"q_z{2 - self.d}"]
        self.loc = (shift[d] - precision[d, 1 - d] * other.loc) / precision[d, d]
        self.var = 1.0 / precision[d, d]

    def guide(self, x, *, values):
        return {self.site: pyro.sample(self.site, dist.Normal(self.loc, self.var.sqrt()))}


class NormalGradientFactor(GradientBlock):
    """q(z_d) = N(loc, scale^2) with Pyro parameters fitted by gradient steps."""

    def __init__(self, d, **kwargs):
        super().__init__(f"q_z{d + 1}", params=lambda: [self.param("loc"), self.param("scale")], **kwargs)
        self.site = f"z{d + 1}"

    def param(self, which):
        if which == "loc":
            return pyro.param(f"{self.site}_loc", lambda: torch.zeros((), dtype=DTYPE))
        return pyro.param(
            f"{self.site}_scale", lambda: torch.ones((), dtype=DTYPE), constraint=constraints.positive
        )

    @property
    def loc(self):
        return self.param("loc").detach()

    @property
    def var(self):
        return self.param("scale").detach() ** 2

    def guide(self, x, *, values):
        return {self.site: pyro.sample(self.site, dist.Normal(self.param("loc"), self.param("scale")))}


def moments(guide):
    blocks = guide["q_z1"], guide["q_z2"]
    return torch.stack([b.loc for b in blocks]), torch.stack([b.var for b in blocks])


def exact_elbo(model, guide, x):
    m, v = moments(guide)
    n, d = x.shape
    expected_loglik = (
        -0.5 * n * d * torch.log(2 * math.pi * model.sigma2) - 0.5 * ((x - m) ** 2 + v).sum() / model.sigma2
    )
    dm = m - MU0
    expected_logprior = -0.5 * (
        d * math.log(2 * math.pi) + torch.logdet(SIGMA0) + dm @ LAMBDA0 @ dm + (LAMBDA0.diagonal() * v).sum()
    )
    entropy = 0.5 * torch.log(2 * math.pi * math.e * v).sum()
    return expected_loglik + expected_logprior + entropy


def make_guide(gradient=False, **kwargs):
    second = NormalGradientFactor(1, **kwargs) if gradient else NormalFactor(1)
    return StructuredGuide([NormalFactor(0), second], exact_elbo=exact_elbo)


def assert_nondecreasing(elbos):
    for before, after in zip(elbos, elbos[1:]):
        assert after >= before - SLACK * abs(before)


def test_cavi_converges_to_exact_posterior_mean():
    x, model, guide = data(), ToyModel(sigma2=0.6, m_step=False), make_guide()
    result = inference.run("vem", model, guide, x, num_iters=60)
    assert result.algorithm == "vem" and result.info["elbo"] == "exact"
    assert result.info["schedule"] == ["q_z1", "q_z2"] and result.info["num_iters"] == 60
    assert len(result.losses) == len(result.iter_times) == 60
    assert_nondecreasing(result.elbo)
    assert result.elbo[-1] > result.elbo[0]
    precision, shift = natural_posterior(model, x)
    m, v = moments(guide)
    assert torch.allclose(m, torch.linalg.solve(precision, shift), atol=1e-10)
    assert torch.allclose(v, 1.0 / precision.diagonal())
    assert result.info["num_skipped"] == {}


def test_vem_with_m_step_is_monotone():
    x, model, guide = data(), ToyModel(sigma2=3.0), make_guide()
    initial = guide.elbo(model, x).item()
    result = inference.run("vem", model, guide, x, num_iters=40)
    assert result.info["schedule"] == ["q_z1", "q_z2", "sigma2"]
    assert_nondecreasing([initial] + result.elbo)
    assert result.elbo[-1] > initial + 1.0
    assert result.elbo[-1] > result.elbo[0]
    # sigma2 is at its own fixed point given the final q
    m, v = moments(guide)
    assert model.sigma2.item() == pytest.approx(((x - m) ** 2 + v).mean().item(), rel=1e-6)


def test_each_block_update_including_m_step_does_not_lower_elbo():
    x, model, guide = data(), ToyModel(sigma2=3.0), make_guide()
    m_step = model.m_steps[0]
    for _ in range(5):
        for block in guide.blocks + [m_step]:
            before = guide.elbo(model, x).item()
            block.update(model, guide, x)
            after = guide.elbo(model, x).item()
            assert after >= before - SLACK * abs(before), block.name
    before = guide.elbo(model, x).item()
    model.sigma2 = model.sigma2 * 1.5  # away from the M-step optimum
    assert guide.elbo(model, x).item() < before
    lowered = guide.elbo(model, x).item()
    m_step.update(model, guide, x)
    assert guide.elbo(model, x).item() > lowered


def test_m_steps_already_scheduled_are_not_repeated():
    x, model = data(), ToyModel(sigma2=2.0)
    guide = StructuredGuide([NormalFactor(0), NormalFactor(1), model.m_steps[0]], exact_elbo=exact_elbo)
    result = inference.run("vem", model, guide, x, num_iters=3)
    assert result.info["schedule"] == ["q_z1", "q_z2", "sigma2"]
    result = inference.run("vem", model, guide, x, num_iters=2, blocks=[guide["q_z1"]])
    assert result.info["schedule"] == ["q_z1", "sigma2"]


def test_schedule_errors():
    x, model = data(), ToyModel()
    with pytest.raises(ValueError, match="StructuredGuide"):
        inference.run("vem", model, lambda x: None, x, num_iters=2)
    with pytest.raises(TypeError, match="Block"):
        inference.run("vem", model, make_guide(), x, num_iters=2, blocks=[lambda *a: None])


def test_structured_guide_samples_its_sites():
    model, guide = ToyModel(), make_guide()
    guide = StructuredGuide(guide.blocks + model.m_steps, exact_elbo=exact_elbo)
    trace = poutine.trace(guide).get_trace(data())
    sites = {name for name, site in trace.nodes.items() if site["type"] == "sample"}
    assert sites == {"z1", "z2"}
    assert set(trace.nodes["_RETURN"]["value"]) == {"z1", "z2"}
    assert [b.name for b in guide.blocks] == ["q_z1", "q_z2", "sigma2"]
    assert guide["q_z2"] is guide.blocks[1]
    with pytest.raises(KeyError, match="q_z3"):
        guide["q_z3"]
    assert StructuredGuide(guide.blocks).elbo(model, data()) is None
    assert guide.elbo(model, data()).dtype == DTYPE


def test_structured_guide_threads_values():
    def fail(*args, values):
        raise AssertionError("M-blocks must not be run in the guide")

    first = ClosedFormBlock("q_a", guide_fn=lambda *, values: {"a": pyro.sample("a", dist.Normal(0.0, 1.0))})
    second = ClosedFormBlock(
        "q_b", guide_fn=lambda *, values: {"b": pyro.sample("b", dist.Normal(values["a"], 1.0))}
    )
    guide = StructuredGuide([first, ClosedFormBlock("m", kind="m", guide_fn=fail), Block("empty"), second])
    trace = poutine.trace(guide).get_trace()
    assert trace.nodes["b"]["fn"].loc is trace.nodes["a"]["value"]
    assert not Block("empty").has_guide and first.has_guide and NormalFactor(0).has_guide
    with pytest.raises(ValueError, match="duplicate block names"):
        StructuredGuide([first, first])
    with pytest.raises(TypeError, match="Block"):
        StructuredGuide([first, "q_c"])


def test_block_protocol_errors():
    with pytest.raises(NotImplementedError, match="Block"):
        Block("b").update(None, None)
    with pytest.raises(NotImplementedError, match="ClosedFormBlock 'c'"):
        ClosedFormBlock("c").update(None, None)
    with pytest.raises(ValueError, match="kind"):
        Block("b", kind="x")
    assert list(Block("b").parameters()) == []


def test_gradient_block_increases_elbo():
    x, model = data(), ToyModel(sigma2=0.6, m_step=False)
    guide = make_guide(gradient=True, num_steps=10, lr=0.05)
    result = inference.run("vem", model, guide, x, num_iters=30)
    elbos = result.elbo
    assert result.info["elbo"] == "exact" and result.info["num_skipped"] == {"q_z2": 0}
    assert sum(b - a for a, b in zip(elbos, elbos[1:])) > 0
    assert sum(elbos[-5:]) / 5 > sum(elbos[:5]) / 5
    # close to the CAVI optimum
    optimum = inference.run("vem", model, make_guide(), x, num_iters=60).elbo[-1]
    assert elbos[-1] == pytest.approx(optimum, abs=0.25)
    assert len(list(guide["q_z2"].parameters())) == 2


def test_gradient_block_skips_nonfinite_steps():
    weight = torch.ones(3, requires_grad=True)
    other = torch.ones(3, requires_grad=True)

    def loss(model, guide, *args):
        return (weight * other).sum() * torch.tensor(float("nan"))

    block = GradientBlock("w", params=[weight], num_steps=4, lr=0.1, loss=loss)
    block.update(None, None)
    assert block.num_skipped == 4 and block.lr == pytest.approx(0.1 / 16)
    assert block.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 16)
    assert torch.equal(weight.detach(), torch.ones(3)) and weight.grad is None and other.grad is None


def test_gradient_block_updates_only_its_params():
    module = torch.nn.Linear(2, 1)
    other = torch.ones(2, requires_grad=True)
    before = [p.detach().clone() for p in module.parameters()]

    def loss(model, guide, inputs):
        return (module(inputs * other) ** 2).sum()

    block = GradientBlock("net", params=module, num_steps=3, lr=0.1, loss=loss, kind="m", clip_norm=1.0)
    block.update(None, None, torch.ones(4, 2))
    assert block.num_skipped == 0
    assert all(not torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert other.grad is None and all(p.grad is None for p in module.parameters())
    assert list(block.children()) == []  # the module is not registered inside the block


def test_tol_stops_early():
    x, model, guide = data(), ToyModel(sigma2=3.0), make_guide()
    result = inference.run("vem", model, guide, x, num_iters=500, tol=1e-10)
    assert result.info["converged"] and result.info["num_iters"] < 500
    assert len(result.losses) == result.info["num_iters"]
    e = result.elbo
    assert abs(e[-1] - e[-2]) < 1e-10 * abs(e[-2])


def test_callback_stops():
    seen = []

    def callback(iteration, result):
        seen.append(len(result.losses))
        return iteration == 2

    result = inference.run(
        "vem", ToyModel(), make_guide(), data(), num_iters=10, callback=callback, progress=True
    )
    assert seen == [1, 2, 3] and result.info["num_iters"] == 3 and not result.info["converged"]


def test_exact_elbo_matches_monte_carlo():
    x, model, guide = data(), ToyModel(sigma2=0.8), make_guide()
    inference.run("vem", model, guide, x, num_iters=1)  # a non-trivial q
    exact = guide.elbo(model, x).item()
    elbo = Trace_ELBO(num_particles=500, vectorize_particles=True, max_plate_nesting=1)
    estimates = torch.tensor([-elbo.loss(model, guide, x) for _ in range(20)], dtype=DTYPE)
    stderr = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean().item() - exact) < 4 * stderr.item() + 1e-6


def test_elbo_options():
    x, model = data(), ToyModel(sigma2=0.8)
    result = inference.run("vem", model, make_guide(), x, num_iters=3, elbo="mc", num_elbo_particles=2)
    assert result.info["elbo"] == "Trace_ELBO" and result.info["enumerated_sites"] == []
    guide = StructuredGuide(make_guide().blocks)  # no closed form: "auto" falls back to Monte Carlo
    assert inference.run("vem", model, guide, x, num_iters=2).info["elbo"] == "Trace_ELBO"
    with pytest.raises(ValueError, match="exact"):
        inference.run("vem", model, guide, x, num_iters=2, elbo="exact")
    result = inference.run(
        "vem", model, guide, x, num_iters=2, elbo=lambda model, guide, x: torch.tensor(-3.0)
    )
    assert result.losses == [3.0, 3.0] and result.info["elbo"] == "callable"
    with pytest.raises(FloatingPointError, match="iteration 0"):
        inference.run("vem", model, guide, x, num_iters=2, elbo=lambda model, guide, x: math.nan)
    with pytest.raises(ValueError, match="unknown elbo"):
        inference.run("vem", model, guide, x, num_iters=2, elbo="bogus")


def test_monte_carlo_elbo_enumerates_discrete_sites():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(mu * z, 1.0), obs=x)

    def q_mu(x, *, values):
        return {"mu": pyro.sample("mu", dist.Normal(pyro.param("mu_loc", torch.tensor(0.0)), 0.1))}

    block = GradientBlock(
        "q_mu", params=lambda: [pyro.param("mu_loc")], lr=0.05, guide_fn=q_mu, loss=TraceEnum_ELBO()
    )
    result = inference.run("vem", model, StructuredGuide([block]), torch.full((8,), 2.0), num_iters=3)
    assert result.info["elbo"] == "TraceEnum_ELBO" and result.info["enumerated_sites"] == ["z"]
    assert pyro.param("mu_loc").item() > 0.0
