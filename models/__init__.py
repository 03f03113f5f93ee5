# SPDX-License-Identifier: Apache-2.0
"""Composed task models (installed as :mod:`pyro_dvae.models`).

Each task model combines the building blocks of :mod:`pyro_dvae` (DVAE priors, the assignment
variable, a likelihood) into one Pyro model, plus the structured guide whose blocks the ``vem``
algorithm of :mod:`pyro_dvae.inference` iterates.
"""
