# SPDX-License-Identifier: Apache-2.0
"""The public prior contract (``docs/priors/writing_a_prior.md``): a minimal prior that implements only the
required hooks (:meth:`~pyro_dvae.priors.DVAE.guide_sites`, :meth:`~pyro_dvae.priors.DVAE.model_sites`,
:meth:`~pyro_dvae.priors.DVAE.decode_params`) runs in tracking, separation and enhancement, its ELBO is the hand
computation, its checkpoint round-trips through the registry, and a subclass written against the old underscore
hook names still works, with a DeprecationWarning."""

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch import nn

from pyro_dvae import priors
from pyro_dvae.data.noisy import mix_at_snr, synthetic_noise
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
from pyro_dvae.data.synthetic_audio import speech_like
from pyro_dvae.priors.base import DEPRECATED_HOOKS, DVAE, Emission, standard_normal_steps

NAME = "test-frame-mlp"


class FrameMLP(DVAE):
    """The minimal prior of the docs: frame-wise ``p(z_t) = N(0, I)``, ``p(x_t | z_t)`` and ``q(z_t | x_t)`` one
    hidden layer each (width ``dense_dim``)."""

    name = NAME

    def __init__(self, x_dim, z_dim=2, **kw):
        super().__init__(x_dim, z_dim, **kw)
        self.enc = nn.Sequential(nn.Linear(x_dim, self.dense_dim), nn.Tanh(), nn.Linear(self.dense_dim, 2 * z_dim))
        self.dec = nn.Sequential(nn.Linear(z_dim, self.dense_dim), nn.Tanh())
        self.emit = Emission(self.dense_dim, x_dim, self.emission)

    def guide_sites(self, x, lengths):
        loc, raw = self.enc(self.features(x)).chunk(2, -1)
        yield "z", dist.Normal(loc, F.softplus(raw) + 1e-4).to_event(1)

    def model_sites(self, x, lengths, ss_prob):
        z = yield "z", standard_normal_steps(x.new_zeros(*x.shape[:-1], self.z_dim))
        return self.decode_params(z, x, lengths)

    def decode_params(self, z, x, lengths):
        return self._out(self.dec(z))


@pytest.fixture
def registered():
    priors.register(NAME, FrameMLP)
    try:
        yield
    finally:
        priors.unregister(NAME)


def frame_prior(x_dim, emission, seed=0):
    torch.manual_seed(seed)
    return priors.build(NAME, x_dim=x_dim, z_dim=2, emission=emission, dense_dim=8).eval()


def test_registry_build_and_checkpoint_round_trip(registered, tmp_path):
    assert NAME in priors.available(multimodal=False) and priors.prior_class(NAME) is FrameMLP
    p = frame_prior(4, "gaussian")
    p.fit_normalisation(torch.randn(3, 7, 4) * 0.1 + 0.5)
    p.save(tmp_path / "p.pt")
    q = priors.load(tmp_path / "p.pt", expect=NAME)
    assert type(q) is FrameMLP and q.config == p.config
    assert all(torch.equal(a, b) for a, b in zip(p.state_dict().values(), q.state_dict().values()))
    with pytest.raises(ValueError, match="already registered"):
        priors.register(NAME, FrameMLP)
    with pytest.raises(ValueError, match="built-in"):
        priors.unregister("srnn")


def test_unregistered_after_use():
    assert NAME not in priors.available()


@pytest.mark.parametrize("emission", ["gaussian", "spectral"])
def test_elbo_is_the_hand_computation(registered, emission):
    """Trace_ELBO on the prior's model / guide is ``-(log p(z) + log p(x | z) - log q(z | x))`` at the guide's draw,
    written out from the networks and the normalisation buffers."""
    p = frame_prior(5, emission)
    x = torch.rand(2, 6, 5) + 0.2
    p.fit_normalisation(x)
    pyro.set_rng_seed(3)
    loss = Trace_ELBO().loss(p.model, p.guide, x)
    pyro.set_rng_seed(3)
    z = poutine.trace(p.guide).get_trace(x).nodes["z"]["value"]
    f = (torch.log(x + 1e-8) if emission == "spectral" else x) - p.x_loc
    q_loc, q_raw = p.enc(f / p.x_scale).chunk(2, -1)
    a, b = p.emit(p.dec(z))
    if emission == "gaussian":
        log_lik = dist.Normal(p.x_loc + p.out_scale * a, p.out_scale * torch.exp(0.5 * b)).log_prob(x)
    else:
        log_v = p.x_loc + 0.5772156649015329 + p.x_scale * b  # the standardised spectral output
        log_lik = dist.Exponential(torch.exp(-log_v)).log_prob(x)
    hand = dist.Normal(0.0, 1.0).log_prob(z).sum() + log_lik.sum() - \
        dist.Normal(q_loc, F.softplus(q_raw) + 1e-4).log_prob(z).sum()
    assert loss == pytest.approx(-float(hand.detach()), rel=1e-5)
    # the task models decode through emission_params: the same numbers as decode
    assert torch.equal(p.decode(z)[1], p.expected(*p.emission_params(z, None, {"z": z}))[1])
    assert p.z_prior_params(z, None) is None


def test_tracking_with_the_minimal_prior(registered):
    from pyro_dvae.models.tracking import run_tracking

    gt = np.stack([crossing_scene(8, 2, seed=s) for s in range(2)])
    obs, mask, _ = simulate_detections(gt, noise=0.05, drop=0.1, seed=0)
    obs, mask = torch.tensor(obs, dtype=torch.float32), torch.tensor(mask)
    prior = frame_prior(4, "gaussian")
    prior.fit_normalisation(torch.tensor(gt, dtype=torch.float32).permute(0, 2, 1, 3).reshape(-1, 8, 4))
    est, res = run_tracking(obs, mask, num_sources=2, prior=prior, algo="vem", num_iters=2)
    assert est.shape == (2, 8, 2, 4) and torch.isfinite(est).all()
    assert len(res.losses) == 2 and np.isfinite(res.losses).all()


def test_separation_with_the_minimal_prior(registered):
    from pyro_dvae.models.separation import run_separation

    rng = np.random.default_rng(0)
    t = np.arange(6000) / 16000
    mix = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.shape)
    p1, p2 = frame_prior(513, "spectral", seed=1), frame_prior(513, "spectral", seed=2)
    out = run_separation(mix, [p1, p2], names=["low", "high"], num_iters=2)
    assert out.names == ["low", "high"] and out.waveforms.shape == (2, len(mix))
    assert out.stft.shape[0] == 2 and out.stft.shape[-1] == 513
    assert np.isfinite(out.waveforms).all() and torch.isfinite(torch.view_as_real(out.stft)).all()


def test_enhancement_with_the_minimal_prior(registered):
    from pyro_dvae.models.enhancement import enhance

    clean = 0.5 * speech_like(0.5, seed=1)
    noisy = mix_at_snr(clean, synthetic_noise("tones", 1.0, seed=2), 5.0)[0]
    out = enhance(noisy, frame_prior(513, "spectral"), "nmf", "una", num_iters=2)
    assert out.waveform.shape == noisy.shape and np.isfinite(out.waveform).all()
    assert out.mask.shape[-1] == 513 and ((out.mask >= 0) & (out.mask <= 1)).all()


# --------------------------------------------------------------------------------------------- old hook names
def define_old_style():
    class OldFrame(DVAE):
        name = "old-frame"

        def __init__(self, x_dim, z_dim=2, **kw):
            super().__init__(x_dim, z_dim, **kw)
            self.enc = nn.Linear(x_dim, 2 * z_dim)
            self.dec = nn.Linear(z_dim, self.dense_dim)
            self.emit = Emission(self.dense_dim, x_dim, self.emission)

        def _guide_sites(self, x, lengths):
            loc, raw = self.enc(self.features(x)).chunk(2, -1)
            yield "z", dist.Normal(loc, F.softplus(raw) + 1e-4).to_event(1)

        def _model_sites(self, x, lengths, ss_prob):
            z = yield "z", standard_normal_steps(x.new_zeros(*x.shape[:-1], self.z_dim))
            return self._decode(z, x, lengths)

        def _decode(self, z, x, lengths):
            return self._out(self.dec(z))

        def _extra_config(self):
            return {}

    return OldFrame


def test_old_hook_names_still_work_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning) as record:
        OldFrame = define_old_style()
    warned = {str(w.message).split(" is deprecated")[0].rsplit(".", 1)[-1] for w in record}
    assert warned == {"_guide_sites", "_model_sites", "_decode", "_extra_config"}
    assert "rename it guide_sites" in "".join(str(w.message) for w in record)
    for old, new in DEPRECATED_HOOKS.items():
        if old in OldFrame.__dict__:
            assert OldFrame.__dict__[new] is OldFrame.__dict__[old]
    torch.manual_seed(0)
    p = OldFrame(4)
    x = torch.randn(2, 5, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the public API runs the aliased hooks without further warnings
        loss = Trace_ELBO().loss(p.model, p.guide, x)
        mean, var = p.decode(p.encode(x).mean)
    assert np.isfinite(loss) and mean.shape == var.shape == x.shape
    with pytest.warns(DeprecationWarning, match="_z_prior is deprecated"):  # old names called on any prior
        assert p._z_prior(torch.zeros(2, 5, 2), None) is None


def test_old_name_calls_and_super_reach_the_public_hooks():
    torch.manual_seed(0)
    srnn = priors.build("srnn", x_dim=4, z_dim=2, dense_dim=8, rnn_dim=8, z_dense=[8])
    x, z = torch.randn(2, 5, 4), torch.randn(2, 5, 2)
    with pytest.warns(DeprecationWarning, match="_emission is deprecated"):
        old = srnn._emission(z, x, {"z": z})
    new = srnn.emission_params(z, x, {"z": z})
    assert all(torch.equal(a, b) for a, b in zip(old, new))
    with pytest.warns(DeprecationWarning):

        class Scaled(type(srnn)):  # an old-style override of a zoo family, calling super() by the old name
            def _decode(self, z, x, lengths):
                loc, logvar = super()._decode(z, x, lengths)
                return 2 * loc, logvar

    scaled = Scaled(4, 2, dense_dim=8, rnn_dim=8, z_dense=[8])
    scaled.load_state_dict(srnn.state_dict())
    with pytest.warns(DeprecationWarning):
        assert torch.equal(scaled.decode_params(z, x, None)[0], 2 * srnn.decode_params(z, x, None)[0])
