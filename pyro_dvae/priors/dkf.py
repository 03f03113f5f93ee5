# SPDX-License-Identifier: Apache-2.0
"""Deep Kalman Filter (DKF / deep Markov model).

Generative: ``p(z_t | z_{t-1})`` is a gated transition, ``p(x_t | z_t)``.
Inference: a backward LSTM over ``x_{t:T}`` combined with ``z_{t-1}`` ("combiner"), which matches the
structure of the exact posterior ``p(z_t | z_{t-1}, x_{t:T})``.

**References:**

[1] R. G. Krishnan, U. Shalit, D. Sontag (2017), "Structured Inference Networks for Nonlinear State
    Space Models", AAAI.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .base import DVAE, Emission
from .distributions import SequentialNormal
from .nn import GaussianHead, SeqLSTM, mlp, mlp_out_dim, shift_right


class GatedTransition(nn.Module):
    """``loc = (1 - g) * Linear(z) + g * proposal(z)``, ``scale = softplus(Linear(relu(proposal)))``."""

    def __init__(self, z_dim, hidden):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim), nn.Sigmoid())
        self.proposal = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim))
        self.linear = nn.Linear(z_dim, z_dim)
        self.scale = nn.Linear(z_dim, z_dim)
        with torch.no_grad():  # start close to the identity transition
            self.linear.weight.copy_(torch.eye(z_dim))
            self.linear.bias.zero_()

    def forward(self, z_prev):
        g, prop = self.gate(z_prev), self.proposal(z_prev)
        loc = (1 - g) * self.linear(z_prev) + g * prop
        return loc, F.softplus(self.scale(F.relu(prop))) + 1e-4


class DKF(DVAE):
    """Deep Kalman Filter prior."""

    name = "dkf"

    def __init__(self, x_dim, z_dim=16, **kw):
        super().__init__(x_dim, z_dim, **kw)
        self.phi_x = mlp(x_dim, [self.dense_dim])
        self.rnn_g = SeqLSTM(self.dense_dim, self.rnn_dim, reverse=True)
        self.z_to_g = nn.Linear(z_dim, self.rnn_dim)
        self.comb = mlp(self.rnn_dim, list(self.z_dense))
        self.q_head = GaussianHead(mlp_out_dim(self.rnn_dim, self.z_dense), z_dim)
        self.trans = GatedTransition(z_dim, self.z_dense[0] if self.z_dense else 2 * z_dim)
        dec_h = [*reversed(self.z_dense), self.dense_dim]
        self.dec = mlp(z_dim, dec_h)
        self.emit = Emission(mlp_out_dim(z_dim, dec_h), x_dim, self.emission)

    def _q_params(self, g, z_prev):
        return self.q_head(self.comb(0.5 * (torch.tanh(self.z_to_g(z_prev)) + g)))

    def guide_sites(self, x, lengths):
        g = self.rnn_g(self.phi_x(self.features(x)), lengths)

        def sample_fn(eps):
            z_prev, zs, locs, scales = eps.new_zeros(eps.shape[:-2] + eps.shape[-1:]), [], [], []
            for t in range(eps.shape[-2]):
                loc, scale = self._q_params(g[..., t, :], z_prev)
                z_prev = loc + scale * eps[..., t, :]
                zs.append(z_prev), locs.append(loc), scales.append(scale)
            return torch.stack(zs, -2), torch.stack(locs, -2), torch.stack(scales, -2)

        like = g.new_zeros(*g.shape[:-1], self.z_dim)
        yield "z", SequentialNormal(lambda z: self._q_params(g, shift_right(z)), like, sample_fn)

    def model_sites(self, x, lengths, ss_prob):
        like = x.new_zeros(*x.shape[:-1], self.z_dim)
        z = yield "z", SequentialNormal(lambda z: self.trans(shift_right(z)), like)
        return self.decode_params(z, x, lengths)

    def z_prior_params(self, z, x, latents=None):
        return self.trans(shift_right(z))

    def decode_params(self, z, x, lengths):
        return self._out(self.dec(z))
