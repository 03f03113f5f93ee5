# SPDX-License-Identifier: Apache-2.0
"""The discrete assignment ``w``: which source (or clutter) produced each observation.

``w ~ Categorical(pi)`` over ``N`` sources, plus an optional clutter class (index ``N``) for
observations no source produced. Given Gaussian expectations of the observation log-likelihood under
``q(s)``, the optimal ``q(w)`` is closed form (the MixDVAE E-W step):
``q(w = n) ∝ pi_n exp(E_q(s)[log p(o | s_n)])``.
"""

import torch


def assignment_probs(num_sources, clutter_prob=0.0, like=None):
    """``pi``: uniform over sources, ``clutter_prob`` on the clutter class when it is > 0."""
    if num_sources < 1:
        raise ValueError(f"num_sources must be >= 1, got {num_sources}")
    if not 0.0 <= clutter_prob < 1.0:
        raise ValueError(f"clutter_prob must lie in [0, 1), got {clutter_prob}")
    kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
    probs = torch.full((num_sources,), (1.0 - clutter_prob) / num_sources, **kw)
    if clutter_prob > 0:
        probs = torch.cat([probs, torch.full((1,), clutter_prob, **kw)])
    return probs


def responsibilities(expected_log_lik, log_probs):
    """Closed-form ``q(w)``: ``softmax(log pi + E[log p(o | w)])`` over the last dim.

    (Computed with the class dim moved first: PyTorch's CPU softmax over a short innermost dim is about
    ten times slower than over a leading one.)"""
    logits = (expected_log_lik + log_probs).movedim(-1, 0).contiguous()
    return torch.softmax(logits, dim=0).movedim(0, -1)


def entropy(eta):
    """Entropy of categorical responsibilities ``eta`` (last dim), safe at zero."""
    return -(eta * torch.log(eta.clamp_min(1e-30))).sum(-1)
