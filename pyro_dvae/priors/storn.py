# SPDX-License-Identifier: Apache-2.0
"""STORN: stochastic recurrent network.

Generative: ``z_t ~ N(0, I)`` i.i.d.; ``d_t = LSTM([MLP(z_t), MLP(x_{t-1})])``, ``p(x_t | d_t)``.
Inference: ``q(z_t | x_{1:t})`` from a forward LSTM over ``x``.

**References:**

[1] J. Bayer, C. Osendorfer (2014), "Learning Stochastic Recurrent Networks", arXiv:1411.7610.
"""

import pyro.distributions as dist
import torch

from .base import DVAE, Emission, standard_normal_steps
from .nn import GaussianHead, SeqLSTM, mlp, mlp_out_dim, shift_right


class STORN(DVAE):
    """STORN prior (autoregressive decoder)."""

    name = "storn"
    autoregressive = True

    def __init__(self, x_dim, z_dim=16, **kw):
        super().__init__(x_dim, z_dim, **kw)
        self.phi_x = mlp(x_dim, [self.dense_dim])
        self.rnn_g = SeqLSTM(self.dense_dim, self.rnn_dim)
        self.enc = mlp(self.rnn_dim, list(self.z_dense))
        self.q_head = GaussianHead(mlp_out_dim(self.rnn_dim, self.z_dense), z_dim)
        zf = [*reversed(self.z_dense)]
        self.phi_z = mlp(z_dim, zf)
        self.rnn_d = SeqLSTM(mlp_out_dim(z_dim, zf) + self.dense_dim, self.rnn_dim)
        self.dec = mlp(self.rnn_dim, [self.dense_dim])
        self.emit = Emission(self.dense_dim, x_dim, self.emission)

    def guide_sites(self, x, lengths):
        loc, scale = self.q_head(self.enc(self.rnn_g(self.phi_x(self.features(x)), lengths)))
        yield "z", dist.Normal(loc, scale).to_event(1)

    def model_sites(self, x, lengths, ss_prob):
        z = yield "z", standard_normal_steps(x.new_zeros(*x.shape[:-1], self.z_dim))
        x_in = self._scheduled_inputs(x, lambda x_: self.expected(*self.decode_params(z, x_, lengths))[0], ss_prob,
                                      lambda feed: self.stepwise_decode(z, feed))
        return self.decode_params(z, x_in, lengths)

    def decode_params(self, z, x, lengths):
        d = self.rnn_d(torch.cat([self.phi_z(z), shift_right(self.phi_x(self.features(x)))], -1))
        return self._out(self.dec(d), x)

    def stepwise_decode(self, z, feed):
        fz = self.phi_z(z)
        batch = z.shape[:-2]
        state = self.rnn_d.init_state(batch, z)
        x_prev = None  # no past at t = 0
        fx_prev = z.new_zeros(*batch, self.dense_dim)
        means, vars_ = [], []
        for t in range(z.shape[-2]):
            d, state = self.rnn_d.step(torch.cat([fz[..., t, :], fx_prev], -1), state)
            mean, var = self.expected(*self._out(self.dec(d), x_prev, step=True))
            x_prev = feed(t, mean, var)
            fx_prev = self.phi_x(self.features(x_prev))
            means.append(mean), vars_.append(var)
        return torch.stack(means, -2), torch.stack(vars_, -2)
