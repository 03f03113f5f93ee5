# SPDX-License-Identifier: Apache-2.0
"""Analysis-resynthesis (pyro_dvae.resynthesis): the STFT / phase / inverse-STFT path is exact for a decoder that
returns the input power; past gen / gt and segmenting behave as documented."""
import numpy as np
import pytest
import torch

from pyro_dvae import priors
from pyro_dvae.data.synthetic_audio import speech_like as speech_signal
from pyro_dvae.resynthesis import _segments, resynthesis_scores, resynthesize


class EchoPrior:
    """A stand-in spectral prior whose 'latent' is the power itself and whose decoder returns it."""

    emission, x_dim, autoregressive = "spectral", 513, False

    def __init__(self):
        self.x_loc = torch.zeros(513)

    def encode(self, power):
        return torch.distributions.Normal(power, torch.ones_like(power))

    def decode(self, z, x=None):
        return z, z


def test_a_decoder_returning_the_input_power_resynthesises_the_input():
    x = speech_signal(1.0, seed=0)
    est, ref = resynthesize(EchoPrior(), 0.3 * x)
    assert est.shape == ref.shape == x.shape
    np.testing.assert_allclose(ref, x / np.abs(x).max())
    s = resynthesis_scores(est, ref)
    assert s["si_sdr"] > 40 and s["rmse"] < 1e-3, s


def test_scores_rmse_uses_the_least_squares_gain():
    ref = np.sin(np.linspace(0, 60, 16000))
    s = resynthesis_scores(3.0 * ref, ref)
    assert s["rmse"] < 1e-9 and s["si_sdr"] > 100


def test_segments_cover_every_frame_in_order():
    P = torch.arange(23 * 2, dtype=torch.float32).reshape(23, 2)
    segs = _segments(P, 10)
    assert [tuple(s.shape) for s in segs] == [(2, 10, 2), (1, 3, 2)]
    torch.testing.assert_close(torch.cat([s.reshape(-1, 2) for s in segs]), P)
    assert _segments(P, 0)[0].shape == (1, 23, 2) and _segments(P, 50)[0].shape == (1, 23, 2)


@pytest.mark.parametrize("name", ["vae", "srnn", "light-dvae"])
def test_past_gen_differs_from_gt_only_for_autoregressive_decoders(name):
    torch.manual_seed(0)
    p = priors.build(name, x_dim=513, z_dim=4, emission="spectral", dense_dim=16, rnn_dim=8, z_dense=[8]).eval()
    x = speech_signal(0.5, seed=1)
    gen, ref = resynthesize(p, x, "gen", segment=10)
    gt, _ = resynthesize(p, x, "gt", segment=10)
    assert np.isfinite(gen).all() and gen.shape == x.shape
    assert np.allclose(gen, gt) == (not p.autoregressive)
    with pytest.raises(ValueError, match="past"):
        resynthesize(p, x, "teacher")
    with pytest.raises(ValueError, match="segment"):
        resynthesize(p, x, "gt", segment=-1)


def test_bad_inputs():
    p = priors.build("vae", x_dim=4, z_dim=2)
    with pytest.raises(ValueError, match="spectral"):
        resynthesize(p, np.ones(2048))
    with pytest.raises(ValueError, match="silent"):
        resynthesize(EchoPrior(), np.zeros(4096))
