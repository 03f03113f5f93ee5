# SPDX-License-Identifier: Apache-2.0
"""RVAE: recurrent VAE, causal and non-causal.

Generative: ``z_t ~ N(0, I)``; the decoder is a forward LSTM over ``z_{1:t}`` (causal) or a
bidirectional LSTM over ``z_{1:T}`` (non-causal). Inference: ``q(z_t | z_{1:t-1}, x)`` combines an
LSTM over past latents with a backward LSTM over ``x_{t:T}`` (causal) or a bidirectional one
(non-causal).

**References:**

[1] S. Leglaive, X. Alameda-Pineda, L. Girin, R. Horaud (2020), "A Recurrent Variational Autoencoder
    for Speech Enhancement", ICASSP.
"""

import torch

from .base import DVAE, Emission, standard_normal_steps
from .distributions import SequentialNormal
from .nn import BiSeqLSTM, GaussianHead, SeqLSTM, mlp, mlp_out_dim, shift_right


class RVAE(DVAE):
    """Causal RVAE prior (``rvae``); ``causal=False`` gives ``rvae-noncausal``."""

    name = "rvae"

    def __init__(self, x_dim, z_dim=16, causal=True, **kw):
        super().__init__(x_dim, z_dim, **kw)
        self.causal = bool(causal)
        self.phi_x = mlp(x_dim, [self.dense_dim])
        if self.causal:
            self.rnn_gx = SeqLSTM(self.dense_dim, self.rnn_dim, reverse=True)
            self.rnn_dec = SeqLSTM(z_dim, self.rnn_dim)
        else:
            self.rnn_gx = BiSeqLSTM(self.dense_dim, self.rnn_dim)
            self.rnn_dec = BiSeqLSTM(z_dim, self.rnn_dim)
        self.rnn_gz = SeqLSTM(z_dim, self.rnn_dim)
        q_in = self.rnn_gx.hidden_dim + self.rnn_dim
        self.enc = mlp(q_in, list(self.z_dense))
        self.q_head = GaussianHead(mlp_out_dim(q_in, self.z_dense), z_dim)
        self.dec = mlp(self.rnn_dec.hidden_dim, [self.dense_dim])
        self.emit = Emission(self.dense_dim, x_dim, self.emission)

    def _extra_config(self):
        return {"causal": self.causal}

    def _q(self, gx, gz):
        return self.q_head(self.enc(torch.cat([gx, gz], -1)))

    def _guide_sites(self, x, lengths):
        gx = self.rnn_gx(self.phi_x(self.features(x)), lengths)

        def sample_fn(eps):
            state = self.rnn_gz.init_state(eps.shape[:-2], eps)
            z_prev, zs, locs, scales = torch.zeros_like(eps[..., 0, :]), [], [], []
            for t in range(eps.shape[-2]):
                gz, state = self.rnn_gz.step(z_prev, state)
                loc, scale = self._q(gx[..., t, :], gz)
                z_prev = loc + scale * eps[..., t, :]
                zs.append(z_prev), locs.append(loc), scales.append(scale)
            return torch.stack(zs, -2), torch.stack(locs, -2), torch.stack(scales, -2)

        like = x.new_zeros(*x.shape[:-1], self.z_dim)
        yield "z", SequentialNormal(lambda z: self._q(gx, self.rnn_gz(shift_right(z))), like, sample_fn)

    def _model_sites(self, x, lengths, ss_prob):
        z = yield "z", standard_normal_steps(x.new_zeros(*x.shape[:-1], self.z_dim))
        return self._decode(z, x, lengths)

    def _decode(self, z, x, lengths):
        return self._out(self.dec(self.rnn_dec(z, lengths)))
