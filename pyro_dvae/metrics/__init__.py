# SPDX-License-Identifier: Apache-2.0
"""Evaluation metrics."""

from .audio import estoi, pesq_score, rmse, score_sources, separation_scores, si_sdr, speech_scores
from .tracking import TRACKING_KEYS, tracking_metrics

__all__ = ["TRACKING_KEYS", "tracking_metrics", "estoi", "pesq_score", "rmse", "score_sources", "separation_scores",
           "si_sdr", "speech_scores"]
