# SPDX-License-Identifier: Apache-2.0
"""Writing a new prior: a small GRU prior, trained, then used in tracking and in separation.

The prior: ``z_t ~ N(0, I)`` per step; a GRU reads ``z_{1:t}`` and the emission layer gives ``p(x_t | z_{1:t})``;
the guide ``q(z_t | x_{1:T})`` is a bidirectional GRU over the (normalised) observations. It implements the three
hooks every prior must have (``guide_sites``, ``model_sites``, ``decode_params``, see
``docs/priors/writing_a_prior.md``); everything else (the Pyro model and guide, training, checkpoints, the VEM
blocks of the task models) comes from :class:`~pyro_dvae.priors.DVAE`.

Run: ``python docs/tutorials/writing_a_prior.py``. It trains the prior for a few epochs on synthetic box
trajectories, tracks three crossing pedestrians with it (against the constant-velocity VKF baseline of the same
model), and separates a two-source mixture with two untrained spectral copies (the task model accepts any
prior of the contract; a trained one is what separates well).
"""

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyro_dvae import priors
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections, synthetic_trajectories
from pyro_dvae.metrics import tracking_metrics
from pyro_dvae.models.separation import run_separation
from pyro_dvae.models.tracking import run_tracking
from pyro_dvae.priors import DVAE
from pyro_dvae.priors.base import Emission, standard_normal_steps
from pyro_dvae.training import TrainConfig, train_prior


class GRUPrior(DVAE):
    """A small GRU prior: frame-wise ``N(0, I)`` latents, a GRU decoder over ``z_{1:t}``, a bidirectional GRU
    encoder."""

    name = "tutorial-gru"

    def __init__(self, x_dim, z_dim=4, **kw):
        super().__init__(x_dim, z_dim, **kw)
        h = self.rnn_dim
        self.enc = nn.GRU(x_dim, h, batch_first=True, bidirectional=True)
        self.q = nn.Linear(2 * h, 2 * z_dim)
        self.dec = nn.GRU(z_dim, h, batch_first=True)
        self.emit = Emission(h, x_dim, self.emission)

    @staticmethod
    def _gru(gru, x):  # a GRU over (*batch, T, D), any number of batch dims
        out, _ = gru(x.reshape(-1, *x.shape[-2:]))
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def guide_sites(self, x, lengths):
        loc, raw = self.q(self._gru(self.enc, self.features(x))).chunk(2, -1)
        yield "z", dist.Normal(loc, F.softplus(raw) + 1e-4).to_event(1)

    def model_sites(self, x, lengths, ss_prob):
        z = yield "z", standard_normal_steps(x.new_zeros(*x.shape[:-1], self.z_dim))
        return self.decode_params(z, x, lengths)

    def decode_params(self, z, x, lengths):
        return self._out(self._gru(self.dec, z))


def main(epochs=8):
    torch.manual_seed(0)
    priors.register(GRUPrior.name, GRUPrior)
    try:
        # 1. train it like any prior of the zoo, on synthetic box trajectories
        train = torch.as_tensor(synthetic_trajectories(512, 30, seed=0))
        val = torch.as_tensor(synthetic_trajectories(128, 30, seed=1))
        prior = priors.build(GRUPrior.name, x_dim=4, z_dim=4, rnn_dim=32)
        res = train_prior(prior, train, val, TrainConfig(epochs=epochs, batch_size=64, lr=3e-3), progress=False)
        print(f"trained: best validation loss {res.best_val:.2f} at epoch {res.best_epoch}")

        # 2. track with it: three pedestrians whose paths cross, 10 % of the detections dropped
        gt = crossing_scene(T=30)[None]
        obs, mask, _ = simulate_detections(gt, noise=0.05, drop=0.1, seed=1)
        obs, mask = torch.tensor(obs, dtype=torch.float32), torch.tensor(mask)
        mota = {}
        for method in ("mixdvae", "vkf"):
            est, _ = run_tracking(obs, mask, 3, prior=prior, method=method, num_iters=10)
            mota[method] = tracking_metrics(list(gt), list(est.numpy()))["mota"]
            print(f"tracking with {method:8s} MOTA {mota[method]:.3f}")

        # 3. separate with two (untrained) spectral copies: the contract is all the separation model needs
        spectral = [priors.build(GRUPrior.name, x_dim=513, z_dim=4, emission="spectral", rnn_dim=16)
                    for _ in range(2)]
        t = torch.arange(16000) / 16000
        mix = (0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.2 * torch.sin(2 * torch.pi * 1760 * t)).numpy()
        out = run_separation(mix, spectral, names=["low", "high"], num_iters=2)
        print(f"separated {len(out.waveforms)} sources of {out.waveforms[0].shape[-1]} samples")
        return {"best_val": res.best_val, "mota": mota, "num_sources": len(out.waveforms)}
    finally:
        priors.unregister(GRUPrior.name)


if __name__ == "__main__":
    main()
