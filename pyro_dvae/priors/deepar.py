# SPDX-License-Identifier: Apache-2.0
"""Deep AR: a deterministic LSTM autoregressive model, the MixDVAE paper's "Deep AR" baseline.

``h_t = LSTM(phi(x_{t-1}))``, ``p(x_t | x_{<t}) = N(mu(h_t), diag(sigma^2(h_t)))``: an SRNN without its
stochastic layer. It has no latent variables (``z_dim = 0``): :meth:`encode` returns an empty
``(*batch, T, 0)`` Gaussian, so the MixDVAE tracking blocks run it unchanged in place of a DVAE.

**References:**

[1] D. Salinas, V. Flunkert, J. Gasthaus, T. Januschowski (2020), "DeepAR: Probabilistic Forecasting
    with Autoregressive Recurrent Networks", International Journal of Forecasting.
[2] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for
    Multi-Source Trajectory Modeling and Separation", TMLR (Deep AR baseline).
"""

import pyro.distributions as dist
import torch

from .base import DVAE, Emission
from .nn import SeqLSTM, mlp, shift_right


class DeepAR(DVAE):
    """LSTM autoregressive sequence model with a Gaussian or spectral emission and no latents."""

    name = "deepar"
    autoregressive = True
    latent_sites = ()

    def __init__(self, x_dim, z_dim=0, **kw):
        if z_dim != 0:
            raise ValueError(f"deepar has no latent variables: z_dim must be 0, got {z_dim}")
        kw.pop("z_dense", None)
        super().__init__(x_dim, 1, **kw)
        self.z_dim, self.z_dense = 0, ()
        self.phi_x = mlp(x_dim, [self.dense_dim])
        self.rnn_h = SeqLSTM(self.dense_dim, self.rnn_dim)
        self.dec = mlp(self.rnn_dim, [self.dense_dim])
        self.emit = Emission(self.dense_dim, x_dim, self.emission)

    def _h(self, x):
        return self.rnn_h(shift_right(self.phi_x(self.features(x))))

    def guide_sites(self, x, lengths):
        return
        yield  # a generator without sites

    def model_sites(self, x, lengths, ss_prob):
        x_in = self._scheduled_inputs(x, lambda x_: self.expected(*self.decode_params(None, x_, lengths))[0], ss_prob)
        return self.decode_params(None, x_in, lengths)
        yield  # a generator without sites

    def encode(self, x, mask=None, with_statics=False):
        """An empty ``(*batch, T, 0)`` Gaussian (there is nothing to infer)."""
        x, _, _ = self.prepare_input(x, mask)
        empty = x.new_zeros(*x.shape[:-1], 0)
        q = dist.Normal(empty, torch.ones_like(empty)).to_event(1)
        return (q, {}) if with_statics else q

    def decode_params(self, z, x, lengths):
        return self._out(self.dec(self._h(x)), x)

    def stepwise_decode(self, z, feed):
        return self._input_recurrent_stepwise(z, feed, lambda h, t: self.dec(h))
