# SPDX-License-Identifier: Apache-2.0
"""Parameters that a user registers the Pyro / torch way train; the prior passed in is never changed unless asked;
calibration of a prior's dynamics; noise models known by name (issue 30)."""

import functools
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal, init_to_feasible
from pyro.nn import PyroModule, PyroParam
from torch import nn
from torch.distributions import constraints

from pyro_dvae import noise as noise_models
from pyro_dvae import pretrained, priors
from pyro_dvae.data.noisy import mix_at_snr, synthetic_noise
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
from pyro_dvae.data.synthetic_audio import speech_like
from pyro_dvae.handlers import frozen
from pyro_dvae.likelihoods import BoxLikelihood, GaussianBoxes, box_size
from pyro_dvae.models.enhancement import EnhanceConfig, enhance, load_speech_prior
from pyro_dvae.models.separation import run_separation
from pyro_dvae.models.tracking import LikelihoodMStep, TrackingModel, greedy_tracks, run_tracking
from pyro_dvae.smoothing import UncalibratedPriorWarning, calibrate_var_scale

TRUE_RATIO = 0.05
TOLERANCE = 0.2  # relative error of the learned noise ratio


class LaplaceBoxes(PyroModule[BoxLikelihood]):
    """Laplace box noise whose scale-to-size ratio is a PyroParam (positive)."""

    def __init__(self, ratio=0.15):
        super().__init__()
        self.ratio = PyroParam(torch.tensor(float(ratio)), constraints.positive)

    def dist(self, loc, obs):
        return dist.Laplace(loc, self.ratio * box_size(obs)).to_event(1)


class LearnedGaussianBoxes(GaussianBoxes):
    """:class:`GaussianBoxes` (closed-form E-steps) whose ratio is an ``nn.Parameter`` on the log scale."""

    def __init__(self, ratio=0.15):
        BoxLikelihood.__init__(self)
        self.log_ratio = nn.Parameter(torch.full((4,), math.log(ratio)))

    @property
    def ratio(self):
        return self.log_ratio.exp()


def _scene(num_windows, laplace, T=30):
    gt = np.stack([crossing_scene(T=T, seed=s) for s in range(num_windows)])
    if laplace:  # Laplace noise of scale TRUE_RATIO x box size, added before the detections are drawn
        w, h = gt[..., 2] - gt[..., 0], gt[..., 3] - gt[..., 1]
        noise = np.random.default_rng(0).laplace(size=gt.shape) * TRUE_RATIO * np.stack([w, h, w, h], -1)
        obs, mask, _ = simulate_detections(gt + noise, noise=0.0, drop=0.1, seed=1)
    else:  # Gaussian noise of std TRUE_RATIO x box size
        obs, mask, _ = simulate_detections(gt, noise=TRUE_RATIO, drop=0.1, seed=1)
    return torch.tensor(obs, dtype=torch.float32), torch.tensor(mask)


@pytest.mark.parametrize("algo", ["svi", "enum-svi"])
def test_a_pyro_param_of_the_likelihood_learns_the_generating_noise(algo):
    obs, mask = _scene(3, laplace=True)
    likelihood = LaplaceBoxes(0.15)
    run_tracking(obs, mask, 3, prior=pretrained.load(), algo=algo, num_iters=300, lr=0.005, likelihood=likelihood)
    learned = float(likelihood.ratio.detach())
    assert abs(learned / TRUE_RATIO - 1) < TOLERANCE, learned  # from 0.15: three times the truth
    assert "likelihood$$$ratio_unconstrained" in pyro.get_param_store()


def test_an_nn_parameter_of_the_likelihood_is_learnt_by_the_vem_m_step():
    obs, mask = _scene(4, laplace=False)
    likelihood = LearnedGaussianBoxes(0.15)
    _, result = run_tracking(obs, mask, 3, prior=pretrained.load(), algo="vem", num_iters=100, likelihood=likelihood)
    learned = likelihood.ratio.detach()
    assert ((learned / TRUE_RATIO - 1).abs() < TOLERANCE).all(), learned
    assert "likelihood" in result.info["schedule"] and result.info["num_skipped"]["likelihood"] == 0


def test_likelihoods_without_parameters_keep_their_m_steps():
    prior = pretrained.load()
    assert [type(b).__name__ for b in TrackingModel(prior, 2).m_steps] == ["ObservationNoiseMStep",
                                                                           "DynamicsNoiseMStep",
                                                                           "AccelerationNoiseMStep"]
    steps = TrackingModel(prior, 2, likelihood=LearnedGaussianBoxes()).m_steps
    assert [type(b) for b in steps][:1] == [LikelihoodMStep] and len(steps) == 3
    frozen_ratio = LearnedGaussianBoxes().requires_grad_(False)  # a frozen parameter is not learnt
    assert not TrackingModel(prior, 2, likelihood=frozen_ratio).learnable_parameters()


def test_vem_refuses_a_likelihood_without_closed_form_steps():
    obs, mask = _scene(1, laplace=True)
    with pytest.raises(ValueError, match="LaplaceBoxes has no closed-form E-steps"):
        run_tracking(obs, mask, 3, prior=pretrained.load(), algo="vem", likelihood=LaplaceBoxes())


# ------------------------------------------------------------------------------------- the prior is not changed
def _registering_guide(prior, init_s):
    """A custom guide that uses (and registers) the prior's encoder: ``q(s) q(z | s)``."""

    def guide(obs, obs_mask):
        pyro.module("prior", prior)
        loc = pyro.param("s_loc", init_s.clone())
        with pyro.plate("batch", init_s.shape[0], dim=-2), pyro.plate("sources", init_s.shape[1], dim=-1):
            s = pyro.sample("s", dist.Normal(loc, 1e-3).to_event(2))
            pyro.sample("z", prior.encode(s).to_event(1))

    return guide


@pytest.mark.parametrize("fine_tune", [False, True])
def test_the_prior_passed_in_changes_only_when_fine_tuning_is_asked_for(fine_tune):
    obs, mask = _scene(1, laplace=False)
    prior = pretrained.load()
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    flags = {k: p.requires_grad for k, p in prior.named_parameters()}
    guide = _registering_guide(prior, greedy_tracks(obs, mask, 3))
    run_tracking(obs, mask, 3, prior=prior, algo="svi", num_iters=5, lr=0.01, guide=guide, fine_tune_prior=fine_tune)
    changed = [k for k, v in prior.state_dict().items() if not torch.equal(v, before[k])]
    assert bool(changed) == fine_tune, changed
    assert {k: p.requires_grad for k, p in prior.named_parameters()} == flags
    registered = [k for k in pyro.get_param_store() if k.startswith("prior$$$")]
    assert bool(registered) == fine_tune


def test_frozen_restores_weights_changed_inside():
    prior = pretrained.load()
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    with frozen(prior, prior, None):
        assert not any(p.requires_grad for p in prior.parameters())
        with torch.no_grad():
            next(prior.parameters()).add_(1.0)  # e.g. a pyro.param(...) on one of them, then a step
        prior.x_loc.add_(1.0)
    assert all(torch.equal(v, before[k]) for k, v in prior.state_dict().items())
    assert all(p.requires_grad for p in prior.parameters())
    with frozen(prior, enabled=False):
        assert all(p.requires_grad for p in prior.parameters())


# ------------------------------------------------------------------------------------- calibration by default
def test_latent_sequence_warns_once_without_var_scale():
    prior = pretrained.load()
    like = torch.zeros(2, 5, 4)

    def model():
        with pyro.plate("n", 2):
            prior.latent_sequence("s", like)

    with pytest.warns(UncalibratedPriorWarning, match="calibrate_var_scale"):
        pyro.poutine.trace(model).get_trace()
    with _no_warning():
        pyro.poutine.trace(model).get_trace()  # once per prior

    def calibrated():
        with pyro.plate("n", 2):
            pretrained.load().latent_sequence("s", like, var_scale=1.0)

    with _no_warning():
        pyro.poutine.trace(calibrated).get_trace()


class _no_warning:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self.records = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        assert not [r for r in self.records if issubclass(r.category, UncalibratedPriorWarning)]


def test_calibrate_var_scale_matches_the_tracker_calibration():
    prior = pretrained.load()
    gt = torch.tensor(np.stack([crossing_scene(T=30, seed=s) for s in range(2)]), dtype=torch.float32)
    s = gt.permute(0, 2, 1, 3)  # (B, N, T, 4)
    z = prior.encode(s).sample()
    model = TrackingModel(prior, 3)
    assert torch.equal(model.calibrate_dynamics(s, z), calibrate_var_scale(prior, s, z))
    scale = calibrate_var_scale(prior, s)  # the encoder's noiseless path
    assert scale.shape == (4,) and (scale > 5).all()  # the shipped prior is over-confident on this fast scene
    with pytest.raises(ValueError, match="tracks must be shaped"):
        calibrate_var_scale(prior, s[..., :2])


class PriorRegisteringGuide(AutoNormal):
    """An ``AutoNormal`` that also registers ``prior`` (``pyro.module("prior", prior)``), as a guide that used
    ``prior.encode`` would: a factory for the tasks' ``guide`` setting (``functools.partial(cls, prior=...)``)."""

    def __init__(self, model, init_loc_fn=init_to_feasible, init_scale=0.1, prior=None):
        super().__init__(model, init_loc_fn=init_loc_fn, init_scale=init_scale)
        self._prior = [prior]  # not a submodule of the guide

    def forward(self, *args, **kwargs):
        pyro.module("prior", self._prior[0])
        return super().forward(*args, **kwargs)


def _changed(prior, before):
    return [k for k, v in prior.state_dict().items() if not torch.equal(v, before[k])]


@pytest.mark.parametrize("fine_tune", [False, True])
def test_separation_keeps_the_priors_unless_fine_tuning(fine_tune):
    torch.manual_seed(0)
    ps = [priors.build(n, x_dim=9, z_dim=2, emission="spectral", dense_dim=8, rnn_dim=8, z_dense=[8])
          for n in ("vae", "srnn")]
    before = [{k: v.clone() for k, v in p.state_dict().items()} for p in ps]
    g = torch.Generator().manual_seed(0)
    mix = torch.complex(torch.randn(1, 4, 9, generator=g), torch.randn(1, 4, 9, generator=g))
    guide = functools.partial(PriorRegisteringGuide, prior=ps[0])
    run_separation(mix, ps, algo="svi", num_iters=3, lr=0.05, guide=guide, fine_tune_prior=fine_tune)
    assert bool(_changed(ps[0], before[0])) == fine_tune and not _changed(ps[1], before[1])


@pytest.mark.parametrize("fine_tune", [False, True])
def test_enhancement_keeps_the_prior_unless_fine_tuning(fine_tune):
    prior = load_speech_prior(pretrained.path("speech_light"))
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    speech = speech_like(0.5, seed=0)
    noisy, _ = mix_at_snr(speech, synthetic_noise("pink", 1.0, seed=1), 5.0)

    def guide(power):  # the prior's own encoder as the guide: it registers the prior's weights
        pyro.module("prior", prior)
        with pyro.plate("batch", power.shape[0], dim=-1):
            x, _, lengths = prior.prepare_input(power, None)
            prior.run_sites(prior.guide_sites(x, lengths), None, x.shape[:-1])

    enhance(noisy, prior, noise="nolv", num_iters=2, lr=1e-2, guide=guide, fine_tune_prior=fine_tune)
    assert bool(_changed(prior, before)) == fine_tune


# ------------------------------------------------------------------------------------- noise models by name
class _ConstantNoise(noise_models.NoiseModel):
    name = "constant-test"
    deep = True

    def __init__(self, num_bins, level=0.0):
        super().__init__(num_bins)
        self.level = nn.Parameter(torch.tensor(float(level)))

    def variance(self, power, z=None):
        return self.level.exp().expand_as(power)


def test_a_registered_noise_model_is_known_by_name():
    noise_models.register("constant-test", _ConstantNoise)
    try:
        assert "constant-test" in noise_models.available()
        model = noise_models.build("constant-test", 5, level=1.0)
        assert isinstance(model, _ConstantNoise) and float(model.level.detach()) == 1.0
        assert EnhanceConfig(noise="constant-test").noise == "constant-test"
        with pytest.raises(ValueError, match="already registered"):
            noise_models.register("constant-test", _ConstantNoise)
    finally:
        noise_models.unregister("constant-test")
    assert "constant-test" not in noise_models.available()
    with pytest.raises(ValueError, match="noise must be one of"):
        EnhanceConfig(noise="constant-test")
    with pytest.raises(ValueError, match="built-in"):
        noise_models.unregister("nmf")
    with pytest.raises(TypeError, match="NoiseModel subclass"):
        noise_models.register("x", nn.Linear)
    with pytest.raises(ValueError, match="set it to the registry name"):
        noise_models.register("other", _ConstantNoise)


def test_vem_names_a_likelihood_parameter_it_would_ignore():
    class ShiftedGaussianBoxes(LearnedGaussianBoxes):  # a shift that only dist() reads: vem cannot fit it
        def __init__(self):
            super().__init__()
            self.shift = nn.Parameter(torch.zeros(4))

        def dist(self, loc, obs):
            return super().dist(loc + self.shift, obs)

    obs, mask = _scene(1, laplace=False)
    with pytest.raises(ValueError, match=r"^vem would not fit likelihood.shift: .*use algo='svi'"):
        run_tracking(obs, mask, 3, prior=pretrained.load(), algo="vem", num_iters=2, likelihood=ShiftedGaussianBoxes())
