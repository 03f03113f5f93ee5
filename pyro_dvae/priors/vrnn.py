# SPDX-License-Identifier: Apache-2.0
"""VRNN: variational recurrent neural network.

One LSTM carries ``h_t = LSTM([phi(x_{t-1}), phi(z_{t-1})])``; the prior ``p(z_t | h_t)``, the
encoder ``q(z_t | x_t, h_t)`` and the decoder ``p(x_t | z_t, h_t)`` all read it.

**References:**

[1] J. Chung, K. Kastner, L. Dinh, K. Goel, A. Courville, Y. Bengio (2015), "A Recurrent Latent
    Variable Model for Sequential Data", NeurIPS.
"""

import torch

from .base import DVAE, Emission
from .distributions import SequentialNormal
from .nn import GaussianHead, SeqLSTM, mlp, mlp_out_dim, shift_right


class VRNN(DVAE):
    """VRNN prior (autoregressive in ``x`` and ``z``)."""

    name = "vrnn"
    autoregressive = True

    def __init__(self, x_dim, z_dim=16, **kw):
        super().__init__(x_dim, z_dim, **kw)
        zf = [*reversed(self.z_dense)]
        self.phi_x = mlp(x_dim, [self.dense_dim])
        self.phi_z = mlp(z_dim, zf)
        fz = mlp_out_dim(z_dim, zf)
        self.rnn_h = SeqLSTM(self.dense_dim + fz, self.rnn_dim)
        self.prior = mlp(self.rnn_dim, list(self.z_dense))
        self.p_head = GaussianHead(mlp_out_dim(self.rnn_dim, self.z_dense), z_dim)
        self.enc = mlp(self.dense_dim + self.rnn_dim, list(self.z_dense))
        self.q_head = GaussianHead(mlp_out_dim(self.dense_dim + self.rnn_dim, self.z_dense), z_dim)
        self.dec = mlp(fz + self.rnn_dim, [self.dense_dim])
        self.emit = Emission(self.dense_dim, x_dim, self.emission)

    def _h(self, fx, z):
        return self.rnn_h(torch.cat([shift_right(fx), shift_right(self.phi_z(z))], -1))

    def _q(self, fx, h):
        return self.q_head(self.enc(torch.cat([fx, h], -1)))

    def guide_sites(self, x, lengths):
        fx = self.phi_x(self.features(x))

        def sample_fn(eps):
            batch = eps.shape[:-2]
            state = self.rnn_h.init_state(batch, eps)
            fz_prev = torch.zeros_like(self.phi_z(eps[..., 0, :]))
            fx_prev = torch.zeros_like(fx[..., 0, :])
            zs, locs, scales = [], [], []
            for t in range(eps.shape[-2]):
                h, state = self.rnn_h.step(torch.cat([fx_prev, fz_prev], -1), state)
                loc, scale = self._q(fx[..., t, :], h)
                z = loc + scale * eps[..., t, :]
                fz_prev, fx_prev = self.phi_z(z), fx[..., t, :]
                zs.append(z), locs.append(loc), scales.append(scale)
            return torch.stack(zs, -2), torch.stack(locs, -2), torch.stack(scales, -2)

        like = x.new_zeros(*x.shape[:-1], self.z_dim)
        yield "z", SequentialNormal(lambda z: self._q(fx, self._h(fx, z)), like, sample_fn)

    def model_sites(self, x, lengths, ss_prob):
        cache = {}

        def params_fn(z):
            x_in = self._scheduled_inputs(x, lambda x_: self.expected(*self.decode_params(z, x_, lengths))[0], ss_prob)
            h = self._h(self.phi_x(self.features(x_in)), z)
            cache["h"], cache["x_in"] = h, x_in
            return self.p_head(self.prior(h))

        like = x.new_zeros(*x.shape[:-1], self.z_dim)
        z = yield "z", SequentialNormal(params_fn, like)
        return self._out(self.dec(torch.cat([self.phi_z(z), cache["h"]], -1)), cache["x_in"])

    def z_prior_params(self, z, x, latents=None):
        return self.p_head(self.prior(self._h(self.phi_x(self.features(x)), z)))

    def decode_params(self, z, x, lengths):
        h = self._h(self.phi_x(self.features(x)), z)
        return self._out(self.dec(torch.cat([self.phi_z(z), h], -1)), x)

    def stepwise_decode(self, z, feed):
        fz = self.phi_z(z)
        batch = z.shape[:-2]
        state = self.rnn_h.init_state(batch, z)
        fx_prev = z.new_zeros(*batch, self.dense_dim)
        fz_prev = torch.zeros_like(fz[..., 0, :])
        x_prev = None  # no past at t = 0
        means, vars_ = [], []
        for t in range(z.shape[-2]):
            h, state = self.rnn_h.step(torch.cat([fx_prev, fz_prev], -1), state)
            mean, var = self.expected(*self._out(self.dec(torch.cat([fz[..., t, :], h], -1)), x_prev, step=True))
            x_prev = feed(t, mean, var)
            fx_prev, fz_prev = self.phi_x(self.features(x_prev)), fz[..., t, :]
            means.append(mean), vars_.append(var)
        return torch.stack(means, -2), torch.stack(vars_, -2)

    def joint_stepwise(self, eps, feed, latents=None):
        """:meth:`DVAE.joint_stepwise` in one pass: ``h_t`` from ``(x_{t-1}, z_{t-1})``, then ``z_t | h_t``,
        then ``x_t | h_t, z_t``."""
        batch = eps.shape[:-2]
        state = self.rnn_h.init_state(batch, eps)
        fx_prev = eps.new_zeros(*batch, self.dense_dim)
        fz_prev = torch.zeros_like(self.phi_z(eps[..., 0, :]))
        x_prev, steps = None, []
        for t in range(eps.shape[-2]):
            h, state = self.rnn_h.step(torch.cat([fx_prev, fz_prev], -1), state)
            loc, scale = self.p_head(self.prior(h))
            z = loc + scale * eps[..., t, :]
            fz_prev = self.phi_z(z)
            mean, var = self.expected(*self._out(self.dec(torch.cat([fz_prev, h], -1)), x_prev, step=True))
            x_prev = feed(t, mean, var)
            fx_prev = self.phi_x(self.features(x_prev))
            steps.append((z, loc, scale, mean, var))
        return tuple(torch.stack(v, -2) for v in zip(*steps))
