# SPDX-License-Identifier: Apache-2.0
"""CUDA checks: priors, training and the registry run on the GPU when one is present."""

import pytest
import torch

from pyro_dvae import priors
from pyro_dvae.training import TrainConfig, elbo_loss, train_prior

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


@pytest.mark.parametrize("name", priors.available(multimodal=False))
def test_prior_step_on_cuda(name):
    z_dim = 3 if priors.prior_class(name).latent_sites else 0
    prior = priors.build(name, x_dim=7, z_dim=z_dim, dense_dim=16, rnn_dim=16, z_dense=[16]).cuda()
    x = torch.randn(2, 3, 9, 7, device="cuda")
    mask = torch.ones(2, 3, 9, dtype=torch.bool, device="cuda")
    mask[0, 0, 5:] = False
    loss = elbo_loss(prior, x, mask, ss_prob=0.5)
    loss.backward()
    assert loss.device.type == "cuda" and torch.isfinite(loss)
    assert all(p.grad.device.type == "cuda" for p in prior.parameters() if p.grad is not None)
    q = prior.encode(x, mask)
    z = q.rsample()
    mean, var = prior.decode_stepwise(z, lambda t, m, v: m, x=x)
    assert mean.device.type == "cuda" and var.shape == x.shape


def test_training_on_cuda(tmp_path):
    from pyro_dvae.data import synthetic_trajectories

    train = torch.as_tensor(synthetic_trajectories(64, 20, seed=0))
    val = torch.as_tensor(synthetic_trajectories(32, 20, seed=1))
    prior = priors.build("srnn", x_dim=4, z_dim=4, dense_dim=16, rnn_dim=16, z_dense=[16])
    res = train_prior(prior, train, val, TrainConfig(epochs=2, batch_size=32, warmup_epochs=1, ss_start=1,
                                                     ss_end=2), out=tmp_path / "p.pt", device="cuda")
    assert next(prior.parameters()).device.type == "cuda"
    assert res.best_val < float("inf")
    assert priors.load(tmp_path / "p.pt").z_dim == 4


@pytest.mark.parametrize("method", ["mixdvae", "vkf", "deepar", "mixdvae-velocity"])
def test_tracking_on_cuda_matches_cpu(method):
    from pyro_dvae import pretrained
    from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
    from pyro_dvae.models.tracking import run_tracking

    gt = torch.stack([torch.as_tensor(crossing_scene(T=30, num_tracks=3, seed=s)) for s in range(4)])
    obs, mask, _ = simulate_detections(gt.numpy(), noise=0.05, drop=0.2, seed=0)
    obs, mask = torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(mask)
    prior = None if method == "vkf" else pretrained.load("deepar_mot" if method == "deepar" else "srnn_mot")
    # track-mot's E-S step, with a camera path to read the tracks against
    extra = dict(mode="velocity", latents="prior", camera=torch.full((4, 30, 4), 1e-3)) if "velocity" in method else {}
    out = {}
    for device in ("cpu", "cuda"):
        p = prior.to(device) if prior is not None else None
        kw = {k: v.to(device) if torch.is_tensor(v) else v for k, v in extra.items()}
        est, _ = run_tracking(obs.to(device), mask.to(device), 3, method=method.split("-")[0], prior=p, num_iters=5,
                              sample_z=False, **kw)
        assert est.device.type == device
        out[device] = est.cpu()
    assert torch.allclose(out["cpu"], out["cuda"], atol=1e-4), (out["cpu"] - out["cuda"]).abs().max()


def test_separation_on_cuda_matches_cpu():
    from pyro_dvae.models.separation import run_separation

    torch.manual_seed(0)
    made = [priors.build("srnn", x_dim=513, z_dim=4, emission="spectral", dense_dim=32, rnn_dim=16, z_dense=[16])
            for _ in range(2)]
    mix = torch.randn(2, 30 * 256).numpy()
    out = {}
    for device in ("cpu", "cuda"):
        res = run_separation(mix, [p.to(device) for p in made], names=["a", "b"], num_iters=3, seed=0)
        assert res.stft.device.type == "cpu" and res.waveforms.shape == (2, 2, mix.shape[-1])
        out[device] = res.waveforms
    assert abs(out["cpu"] - out["cuda"]).max() < 1e-3 * abs(out["cpu"]).max()


@pytest.mark.parametrize("noise", ["nmf", "lv"])
def test_enhancement_on_cuda(noise):
    from pyro_dvae.models.enhancement import enhance

    torch.manual_seed(0)
    prior = priors.build("rvae", x_dim=513, z_dim=4, emission="spectral", dense_dim=32, rnn_dim=16, z_dense=[16])
    noisy = torch.randn(40 * 256).numpy()
    out = {}
    for device in ("cpu", "cuda"):
        res = enhance(noisy, prior.to(device), noise, "una", num_iters=3, seed=0)
        assert res.waveform.shape == noisy.shape and torch.isfinite(torch.as_tensor(res.waveform)).all()
        out[device] = res.waveform
    assert abs(out["cpu"] - out["cuda"]).max() < 1e-2 * abs(out["cpu"]).max()


def test_noise_training_on_cuda(tmp_path):
    from pyro_dvae.models.enhancement.training import train_noise

    torch.manual_seed(0)
    prior = priors.build("rvae", x_dim=513, z_dim=4, emission="spectral", dense_dim=32, rnn_dim=16, z_dense=[16])
    power = torch.rand(6, 20, 513) + 0.1
    res = train_noise(prior.cuda(), "lv", power[:4], power[4:], epochs=2, batch_size=2, out=tmp_path / "n.pt",
                      device="cuda")
    assert res.best_val < float("inf") and (tmp_path / "n.pt").exists()
