# SPDX-License-Identifier: Apache-2.0
"""Small pretrained priors shipped with the package (no download).

``srnn_mot.pt``: an SRNN box-trajectory prior (x_dim 4, z_dim 4, residual decoder) and
``deepar_mot.pt``: the Deep AR baseline (an LSTM autoregressive model), both trained by this project's
own command on synthetic trajectories; the exact commands are in ``TRAINING.md`` beside them.
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def path(name="srnn_mot"):
    """File path of a shipped prior."""
    p = os.path.join(HERE, f"{name}.pt")
    if not os.path.exists(p):
        shipped = sorted(f[:-3] for f in os.listdir(HERE) if f.endswith(".pt"))
        raise FileNotFoundError(f"no shipped prior {name!r}; shipped: {shipped}")
    return p


def load(name="srnn_mot"):
    from pyro_dvae import priors

    return priors.load(path(name))
