# SPDX-License-Identifier: Apache-2.0
"""Evaluation metrics."""

from .tracking import TRACKING_KEYS, tracking_metrics

__all__ = ["TRACKING_KEYS", "tracking_metrics"]
