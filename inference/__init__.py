# SPDX-License-Identifier: Apache-2.0
"""
Inference algorithms behind one registry.

Built-in algorithms, registered on import:

- ``"svi"`` — :func:`~pyro_dvae.inference.svi.svi`, stochastic variational inference (its options:
  :class:`~pyro_dvae.inference.svi.SVIConfig`);
- ``"enum-svi"`` — :func:`~pyro_dvae.inference.svi.enum_svi`, SVI with exact
  enumeration of discrete sites;
- ``"vem"`` — :func:`~pyro_dvae.inference.vem.vem`, variational EM by
  coordinate ascent over the :mod:`~pyro_dvae.inference.blocks` of a
  structured guide.

Example::

    from pyro_dvae import inference

    result = inference.run("svi", model, "auto-normal", data, num_steps=500, lr=0.05)
    result.final_loss, result.seconds_per_iter
"""

from . import svi, vem
from .blocks import Block, ClosedFormBlock, GradientBlock, StructuredGuide
from .registry import (
    InferenceResult,
    PosteriorSummaries,
    UnknownAlgorithmError,
    accepted_options,
    available,
    get,
    register,
    run,
    unregister,
)
from .svi import SVIConfig

__all__ = [
    "Block",
    "ClosedFormBlock",
    "GradientBlock",
    "InferenceResult",
    "PosteriorSummaries",
    "SVIConfig",
    "StructuredGuide",
    "UnknownAlgorithmError",
    "accepted_options",
    "available",
    "get",
    "register",
    "run",
    "svi",
    "unregister",
    "vem",
]
