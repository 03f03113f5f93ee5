# SPDX-License-Identifier: Apache-2.0
"""Data: synthetic trajectories, audio front end."""

from .synthetic import BOX_DIM, synthetic_trajectories

__all__ = ["BOX_DIM", "synthetic_trajectories"]
