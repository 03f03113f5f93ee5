# SPDX-License-Identifier: Apache-2.0
"""pyro_dvae: dynamical VAEs as Pyro priors and variational-EM multi-source inference.

Sub-packages:

- :mod:`pyro_dvae.priors` — the DVAE zoo (VAE, DKF, STORN, VRNN, SRNN, RVAE, DSAE) as ``PyroModule``
  model/guide pairs.
- :mod:`pyro_dvae.training` — SVI pre-training of a prior.
- :mod:`pyro_dvae.data` — synthetic trajectories, audio front end, MOTChallenge IO.
- :mod:`pyro_dvae.inference` — the shared inference registry (``svi``, ``enum-svi``, ``vem``).
- :mod:`pyro_dvae.models` — composed task models.
"""

__version__ = "0.1.0"
