# SPDX-License-Identifier: Apache-2.0
"""SRNN: stochastic recurrent neural network.

Deterministic ``h_t = LSTM(phi(x_{t-1}))``; prior ``p(z_t | h_t, z_{t-1})``; decoder
``p(x_t | h_t, z_t)``; encoder ``q(z_t | g_t, z_{t-1})`` with ``g`` a backward LSTM over
``[h_t, phi(x_t)]`` (the structure of the exact posterior). MixDVAE's default prior.

**References:**

[1] M. Fraccaro, S. K. Sønderby, U. Paquet, O. Winther (2016), "Sequential Neural Models with
    Stochastic Layers", NeurIPS.
[2] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for
    Multi-Source Trajectory Modeling and Separation", TMLR.
"""

import torch

from .base import DVAE, Emission
from .distributions import SequentialNormal
from .nn import GaussianHead, SeqLSTM, mlp, mlp_out_dim, shift_right


class SRNN(DVAE):
    """SRNN prior (autoregressive decoder)."""

    name = "srnn"
    autoregressive = True

    def __init__(self, x_dim, z_dim=16, **kw):
        super().__init__(x_dim, z_dim, **kw)
        self.phi_x = mlp(x_dim, [self.dense_dim])
        self.rnn_h = SeqLSTM(self.dense_dim, self.rnn_dim)
        self.rnn_g = SeqLSTM(self.rnn_dim + self.dense_dim, self.rnn_dim, reverse=True)
        self.enc = mlp(self.rnn_dim + z_dim, list(self.z_dense))
        self.q_head = GaussianHead(mlp_out_dim(self.rnn_dim + z_dim, self.z_dense), z_dim)
        self.prior = mlp(self.rnn_dim + z_dim, list(self.z_dense))
        self.p_head = GaussianHead(mlp_out_dim(self.rnn_dim + z_dim, self.z_dense), z_dim)
        self.dec = mlp(self.rnn_dim + z_dim, [self.dense_dim])
        self.emit = Emission(self.dense_dim, x_dim, self.emission)

    def _fx_h(self, x):
        """``(phi_x(x_t), h_t)``. Without autograd the last result is reused for the same unmodified tensor:
        a VEM iteration runs the encoder (E-Z) and the decoder (E-S) on the same source means, and ``h`` is
        their costliest part (keyed on the tensor object, its in-place version and those of the weights and
        buffers used)."""
        memo = self.__dict__.get("_h_memo")
        state = tuple((id(t), t._version) for m in (self.phi_x, self.rnn_h) for t in m.parameters())
        state += tuple((id(t), t._version) for t in (self.x_loc, self.x_scale, self.out_scale))
        if (memo is not None and not torch.is_grad_enabled() and memo[0] is x and memo[1] == x._version
                and memo[2] == state):
            return memo[3], memo[4]
        fx = self.phi_x(self._sequence_features(x))
        h = self.rnn_h(shift_right(fx))
        self.__dict__["_h_memo"] = None if torch.is_grad_enabled() else (x, x._version, state, fx, h)
        return fx, h

    def _h(self, x):
        return self._fx_h(x)[1]

    def _q(self, g, z_prev):
        return self.q_head(self.enc(torch.cat([g, z_prev], -1)))

    def guide_sites(self, x, lengths):
        fx, h = self._fx_h(x)
        g = self.rnn_g(torch.cat([h, fx], -1), lengths)

        def sample_fn(eps):
            z_prev, zs, locs, scales = torch.zeros_like(eps[..., 0, :]), [], [], []
            for t in range(eps.shape[-2]):
                loc, scale = self._q(g[..., t, :], z_prev)
                z_prev = loc + scale * eps[..., t, :]
                zs.append(z_prev), locs.append(loc), scales.append(scale)
            return torch.stack(zs, -2), torch.stack(locs, -2), torch.stack(scales, -2)

        like = x.new_zeros(*x.shape[:-1], self.z_dim)
        yield "z", SequentialNormal(lambda z: self._q(g, shift_right(z)), like, sample_fn)

    def model_sites(self, x, lengths, ss_prob):
        cache = {}

        def params_fn(z):
            x_in = self._scheduled_inputs(x, lambda x_: self.expected(*self.decode_params(z, x_, lengths))[0], ss_prob,
                                          lambda feed: self.stepwise_decode(z, feed))
            cache["h"] = h = self._h(x_in)
            cache["x_in"] = x_in
            return self.p_head(self.prior(torch.cat([h, shift_right(z)], -1)))

        like = x.new_zeros(*x.shape[:-1], self.z_dim)
        z = yield "z", SequentialNormal(params_fn, like)
        return self._out(self.dec(torch.cat([cache["h"], z], -1)), cache["x_in"])

    def z_prior_params(self, z, x, latents=None):
        return self.p_head(self.prior(torch.cat([self._h(x), shift_right(z)], -1)))

    def decode_params(self, z, x, lengths):
        return self._out(self.dec(torch.cat([self._h(x), z], -1)), x)

    def stepwise_decode(self, z, feed):
        return self._input_recurrent_stepwise(z, feed, lambda h, t: self.dec(torch.cat([h, z[..., t, :]], -1)))

    def joint_stepwise(self, eps, feed, latents=None):
        """:meth:`DVAE.joint_stepwise` in one pass: ``h_t`` from ``x_{t-1}``, then ``z_t | h_t, z_{t-1}``, then
        ``x_t | h_t, z_t``."""
        batch = eps.shape[:-2]
        state = self.rnn_h.init_state(batch, eps)
        fx_prev = eps.new_zeros(*batch, self.dense_dim)
        z, x_prev, x_prev2, steps = torch.zeros_like(eps[..., 0, :]), None, None, []
        for t in range(eps.shape[-2]):
            h, state = self.rnn_h.step(fx_prev, state)
            loc, scale = self.p_head(self.prior(torch.cat([h, z], -1)))
            z = loc + scale * eps[..., t, :]
            mean, var = self.expected(*self._out(self.dec(torch.cat([h, z], -1)), x_prev, step=True))
            x_prev2, x_prev = x_prev, feed(t, mean, var)
            fx_prev = self.phi_x(self._step_features(x_prev, x_prev2))
            steps.append((z, loc, scale, mean, var))
        return tuple(torch.stack(v, -2) for v in zip(*steps))
