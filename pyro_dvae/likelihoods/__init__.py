# SPDX-License-Identifier: Apache-2.0
"""Observation likelihoods ``p(o | w, s)``: replaceable components of the task models."""

from .boxes import BoxLikelihood, BroadClutter, GaussianBoxes, box_size
from .spectral import ComplexGaussianBins, abs2, complex_normal_entropy, complex_normal_log_prob

__all__ = ["BoxLikelihood", "BroadClutter", "ComplexGaussianBins", "abs2", "GaussianBoxes", "box_size",
           "complex_normal_entropy", "complex_normal_log_prob"]
