# SPDX-License-Identifier: Apache-2.0
"""SRNN whose recurrence also reads the last step's change: a motion prior that can carry velocity.

The SRNN (:mod:`.srnn`) reads the past through ``h_t = LSTM(phi(x_{t-1}))`` with ``x`` standardised by its spread
over the data (for boxes, the spread of positions over the image). A pedestrian moves by about 1 % of that spread per
frame, so a small LSTM must subtract two nearly equal inputs to recover the velocity; trained on real tracks, a
16-unit SRNN does not learn it and forecasts like a random walk (``tests/benchmarks/motion_forecast.py``). This
variant feeds ``phi`` the change ``x_{t-1} - x_{t-2}`` too, standardised by the per-step change of the data
(``out_scale``, the residual decoder's scale), so the velocity is an input of order one:

``h_t = LSTM(phi([(x_{t-1} - x_loc) / x_scale, (x_{t-1} - x_{t-2}) / out_scale]))`` (the change is 0 at the first
step; for power spectra, the change of the log-power, whose ``out_scale`` is 1); everything else is the SRNN's:
prior ``p(z_t | h_t, z_{t-1})``, decoder ``p(x_t | h_t, z_t)`` and encoder
``q(z_t | g_t, z_{t-1})`` with ``g`` a backward LSTM over ``[h_t, phi_t]``. The change reads the same past as
``x_{t-1}`` does, so every hook keeps its causal contract and the task models take it unchanged.

**References:**

[1] M. Fraccaro, S. K. Sønderby, U. Paquet, O. Winther (2016), "Sequential Neural Models with
    Stochastic Layers", NeurIPS.
"""

import torch

from .nn import mlp, shift_right
from .srnn import SRNN


class VelocitySRNN(SRNN):
    """SRNN prior whose recurrence reads the position and the last change of the sequence (module docstring)."""

    name = "srnn-velocity"

    def __init__(self, x_dim, z_dim=16, **kw):
        super().__init__(x_dim, z_dim, **kw)
        self.phi_x = mlp(2 * x_dim, [self.dense_dim])

    def _sequence_features(self, x):
        f = self._raw_features(x)
        return torch.cat([(f - self.x_loc) / self.x_scale, (f - shift_right(f, f[..., 0, :])) / self.out_scale], -1)

    def _step_features(self, x, x_prev):
        f = self._raw_features(x)
        change = torch.zeros_like(f) if x_prev is None else f - self._raw_features(x_prev)
        return torch.cat([(f - self.x_loc) / self.x_scale, change / self.out_scale], -1)
