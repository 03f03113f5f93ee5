# SPDX-License-Identifier: Apache-2.0
"""Frame-wise VAE: no temporal model, the baseline of the zoo.

**References:**

[1] D. P. Kingma, M. Welling (2014), "Auto-Encoding Variational Bayes", ICLR.
"""

import pyro.distributions as dist

from .base import DVAE, Emission, standard_normal_steps
from .nn import GaussianHead, mlp


class VAE(DVAE):
    """``p(z_t) = N(0, I)``, ``p(x_t | z_t)``, ``q(z_t | x_t)``, independently per frame.

    Encoder ``x -> dense_dim -> z`` and decoder ``z -> dense_dim -> x``, one tanh layer each (the frame VAE of the
    DVAE speech-enhancement reference, 513-128-16 there); ``z_dense`` is not used: a decoder through narrow
    latent-side layers learns the spectral envelope of speech but not its harmonics.
    """

    name = "vae"

    def __init__(self, x_dim, z_dim=16, **kw):
        super().__init__(x_dim, z_dim, **kw)
        self.enc = mlp(x_dim, [self.dense_dim])
        self.enc_head = GaussianHead(self.dense_dim, z_dim)
        self.dec = mlp(z_dim, [self.dense_dim])
        self.emit = Emission(self.dense_dim, x_dim, self.emission)

    def _q(self, x):
        loc, scale = self.enc_head(self.enc(self.features(x)))
        return loc, scale

    def guide_sites(self, x, lengths):
        loc, scale = self._q(x)
        yield "z", dist.Normal(loc, scale).to_event(1)

    def model_sites(self, x, lengths, ss_prob):
        z = yield "z", standard_normal_steps(x.new_zeros(*x.shape[:-1], self.z_dim))
        return self.decode_params(z, x, lengths)

    def decode_params(self, z, x, lengths):
        return self._out(self.dec(z))
