# SPDX-License-Identifier: Apache-2.0
"""The full grid: every guide (the registered autoguides, a callable guide, a guide factory) x every prior of the
zoo a task accepts (tiny, untrained) x the three task entry points (``run_tracking``, ``run_separation``,
``enhance``), each combination running or raising its documented one-line error (docs/guides/guides.md). Marked
``grid``: not in the default run (``python -m pytest -q -m grid tests/``, a few minutes on one core)."""

import functools
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDiagonalNormal
from torch.distributions import constraints

from pyro_dvae import priors
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
from pyro_dvae.inference.svi import AUTOGUIDES
from pyro_dvae.models.enhancement import enhance
from pyro_dvae.models.separation import run_separation
from pyro_dvae.models.tracking import run_tracking

pytestmark = pytest.mark.grid

PRIORS = priors.available(multimodal=False)
GUIDES = [*AUTOGUIDES, "callable", "factory"]
SIZES = dict(dense_dim=8, rnn_dim=8, z_dense=[8])
F = 9  # frequency bins of the tiny spectral priors (n_fft = 16)


def tiny(name, emission, x_dim):
    torch.manual_seed(0)
    z_dim = 2 if priors.prior_class(name).latent_sites else 0
    return priors.build(name, x_dim=x_dim, z_dim=z_dim, emission=emission, **SIZES).eval()


def _normal(name, shape, scale=0.1, init=None):
    loc = pyro.param(f"grid.{name}_loc", torch.zeros(shape) if init is None else init)
    sd = pyro.param(f"grid.{name}_scale", torch.full(tuple(shape), scale), constraint=constraints.positive)
    return dist.Normal(loc, sd)


def tracking_guide(prior):
    """A callable guide of the tracking model: ``s`` (at the detections' mean box), ``z`` and the static ``v``."""
    def guide(obs, obs_mask):
        B, T = obs.shape[:2]
        start = (obs * obs_mask.unsqueeze(-1)).sum((1, 2)) / obs_mask.sum((1, 2)).clamp_min(1).unsqueeze(-1)
        with pyro.plate("batch", B, dim=-2), pyro.plate("sources", 3, dim=-1):
            pyro.sample("s", _normal("s", (B, 3, T, 4), 1e-2, start[:, None, None].expand(B, 3, T, 4)).to_event(2))
            pyro.sample("z", _normal("z", (B, 3, T, prior.z_dim)).to_event(2))
            if "v" in prior.latent_sites:
                pyro.sample("v", _normal("v", (B, 3, prior.v_dim)).to_event(1))
    return guide


def separation_guide(ps, names):
    """A callable guide of the separation model: ``s`` (real view) and each source's ``z_<name>`` / ``v_<name>``."""
    def guide(mix):
        B, T, _ = mix.shape
        with pyro.plate("batch", B, dim=-2):
            for p, n in zip(ps, names):
                if "v" in p.latent_sites:
                    pyro.sample(f"v_{n}", _normal(f"v_{n}", (B, 1, p.v_dim)).to_event(1))
                if "z" in p.latent_sites:
                    pyro.sample(f"z_{n}", _normal(f"z_{n}", (B, 1, T, p.z_dim)).to_event(2))
            with pyro.plate("sources", len(ps), dim=-1):
                half = torch.view_as_real(mix).unsqueeze(1).expand(B, len(ps), T, F, 2) / len(ps)
                pyro.sample("s", _normal("s", half.shape, 1e-2, half.clone()).to_event(3))
    return guide


def enhancement_guide(prior):
    """A callable guide of the enhancement model: ``z`` and the static ``v``."""
    def guide(power):
        B, T, _ = power.shape
        with pyro.plate("batch", B, dim=-1):
            if "v" in prior.latent_sites:
                pyro.sample("v", _normal("v", (B, prior.v_dim)).to_event(1))
            pyro.sample("z", _normal("z", (B, T, prior.z_dim)).to_event(2))
    return guide


def resolve(guide, make_callable):
    if guide == "callable":
        return make_callable()
    if guide == "factory":
        return functools.partial(AutoDiagonalNormal, init_scale=0.01)
    return guide


@pytest.mark.parametrize("guide", GUIDES)
@pytest.mark.parametrize("name", PRIORS)
def test_tracking(name, guide):
    prior = tiny(name, "gaussian", 4)
    gt = crossing_scene(8, 3, seed=0)[None]
    obs, mask, _ = simulate_detections(gt, noise=0.05, drop=0.1, seed=0)
    obs, mask = torch.tensor(obs, dtype=torch.float32), torch.tensor(mask)
    method = "deepar" if name == "deepar" else "mixdvae"
    est, res = run_tracking(obs, mask, 3, prior=prior, method=method, algo="svi", num_iters=2,
                            guide=resolve(guide, lambda: tracking_guide(prior)))
    assert est.shape == (1, 8, 3, 4) and torch.isfinite(est).all() and np.isfinite(res.losses).all()
    with pytest.raises(ValueError, match="variational EM") as info:
        run_tracking(obs, mask, 3, prior=prior, method=method, algo="vem", guide=resolve(guide, lambda: print))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("guide", GUIDES)
@pytest.mark.parametrize("name", PRIORS)
def test_separation(name, guide):
    ps, names = [tiny(name, "spectral", F), tiny("vae", "spectral", F)], ["a", "b"]
    g = torch.Generator().manual_seed(0)
    mix = torch.complex(torch.randn(1, 4, F, generator=g), torch.randn(1, 4, F, generator=g))
    out = run_separation(mix, ps, names=names, algo="svi", num_iters=2,
                         guide=resolve(guide, lambda: separation_guide(ps, names)))
    assert out.stft.shape == (1, 2, 4, F) and torch.isfinite(torch.view_as_real(out.stft)).all()
    assert np.isfinite(out.result.losses).all()
    with pytest.raises(ValueError, match="variational EM") as info:
        run_separation(mix, ps, names=names, algo="vem", guide=resolve(guide, lambda: print))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("guide", GUIDES)
@pytest.mark.parametrize("name", [n for n in PRIORS if priors.prior_class(n).latent_sites])  # enhancement infers z
def test_enhancement(name, guide):
    prior = tiny(name, "spectral", F)
    rng = np.random.default_rng(0)
    noisy = np.sin(np.arange(160) * 0.7) + 0.3 * rng.standard_normal(160)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained prior may leave everything to the noise model (recovered)
        out = enhance(noisy, prior, "nolv", "una", num_iters=2, n_fft=16, hop=4, noise_options={"rnn_dim": 4},
                      num_samples=2, guide=resolve(guide, lambda: enhancement_guide(prior)))
    assert out.waveform.shape == noisy.shape and np.isfinite(out.waveform).all()
    assert out.result is not None and np.isfinite(out.result.losses).all()
    with pytest.raises(ValueError, match="variational EM") as info:
        enhance(noisy, prior, "nmf", "una", num_iters=1, n_fft=16, hop=4, guide=resolve(guide, lambda: print))
    assert "\n" not in str(info.value)
