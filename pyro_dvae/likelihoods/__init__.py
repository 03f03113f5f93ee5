# SPDX-License-Identifier: Apache-2.0
"""Observation likelihoods ``p(o | w, s)``: replaceable components of the task models."""

from .boxes import BoxLikelihood, BroadClutter, GaussianBoxes, box_size

__all__ = ["BoxLikelihood", "BroadClutter", "GaussianBoxes", "box_size"]
