# SPDX-License-Identifier: Apache-2.0
"""DSAE: disentangled sequential autoencoder.

A static latent ``v ~ N(0, I)`` per sequence and dynamic latents ``z_t`` with an LSTM prior
``p(z_t | z_{<t})``; decoder ``p(x_t | z_t, v)``. Inference: ``q(v | x)`` from a bidirectional LSTM
summary, ``q(z_t | x, v)`` from a bidirectional LSTM over ``[phi(x_t), v]`` followed by a forward RNN.

**References:**

[1] Y. Li, S. Mandt (2018), "Disentangled Sequential Autoencoder", ICML.
"""

import pyro.distributions as dist
import torch

from .base import DVAE, Emission
from .distributions import SequentialNormal
from .nn import BiSeqLSTM, GaussianHead, SeqLSTM, mlp, mlp_out_dim, shift_right


class DSAE(DVAE):
    """DSAE prior with static latent site ``v`` and dynamic site ``z``."""

    name = "dsae"
    latent_sites = ("v", "z")
    decoder_reads_x = True  # decode() summarises x into v

    def __init__(self, x_dim, z_dim=16, v_dim=16, **kw):
        super().__init__(x_dim, z_dim, **kw)
        self.v_dim = int(v_dim)
        self.phi_x = mlp(x_dim, [self.dense_dim])
        self.rnn_v = BiSeqLSTM(self.dense_dim, self.rnn_dim)
        self.v_head = GaussianHead(self.rnn_v.hidden_dim, self.v_dim)
        self.rnn_zb = BiSeqLSTM(self.dense_dim + self.v_dim, self.rnn_dim)
        self.rnn_zf = SeqLSTM(self.rnn_zb.hidden_dim, self.rnn_dim)
        self.enc = mlp(self.rnn_dim, list(self.z_dense))
        self.q_head = GaussianHead(mlp_out_dim(self.rnn_dim, self.z_dense), z_dim)
        self.rnn_p = SeqLSTM(z_dim, self.rnn_dim)
        self.p_head = GaussianHead(self.rnn_dim, z_dim)
        self.dec = mlp(z_dim + self.v_dim, [*reversed(self.z_dense), self.dense_dim])
        self.emit = Emission(mlp_out_dim(z_dim + self.v_dim, [self.dense_dim]), x_dim, self.emission)

    def extra_config(self):
        return {"v_dim": self.v_dim}

    def _q_v(self, fx, lengths):
        loc, scale = self.v_head(self.rnn_v.summary(fx, lengths))
        return dist.Normal(loc, scale).to_event(1)

    def guide_sites(self, x, lengths):
        fx = self.phi_x(self.features(x))
        v = yield "v", self._q_v(fx, lengths)
        vb = v.unsqueeze(-2).expand(*fx.shape[:-1], self.v_dim)
        loc, scale = self.q_head(self.enc(self.rnn_zf(self.rnn_zb(torch.cat([fx, vb], -1), lengths))))
        yield "z", dist.Normal(loc, scale).to_event(1)

    def model_sites(self, x, lengths, ss_prob):
        zeros = x.new_zeros(*x.shape[:-2], self.v_dim)
        v = yield "v", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)
        like = x.new_zeros(*x.shape[:-1], self.z_dim)
        z = yield "z", SequentialNormal(lambda z: self.p_head(self.rnn_p(shift_right(z))), like)
        return self._emit(z, v)

    def _emit(self, z, v):
        return self._out(self.dec(torch.cat([z, v.unsqueeze(-2).expand(*z.shape[:-1], self.v_dim)], -1)))

    def z_prior_params(self, z, x, latents=None):
        return self.p_head(self.rnn_p(shift_right(z)))

    def emission_params(self, z, x, latents):
        return self._emit(z, latents["v"])

    def decode_params(self, z, x, lengths):
        v = self._q_v(self.phi_x(self.features(x)), lengths).mean
        return self._emit(z, v)
