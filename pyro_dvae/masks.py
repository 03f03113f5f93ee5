# SPDX-License-Identifier: Apache-2.0
"""Time-frequency masks for the separation baselines: oracle masks from the reference sources and the
Wiener masks of supervised NMF. A mask ``(B, N, T, F)`` multiplies the mixture STFT ``(B, T, F)`` to give
the source estimates ``mask * mix[:, None]``.

**References:**

[1] D. Wang (2005), "On Ideal Binary Mask as the Computational Goal of Auditory Scene Analysis", in Speech
    Separation by Humans and Machines, Springer.
[2] P. Smaragdis, B. Raj, M. Shashanka (2007), "Supervised and Semi-Supervised Separation of Sounds from
    Single-Channel Mixtures", ICA.
[3] T. Virtanen (2007), "Monaural Sound Source Separation by Nonnegative Matrix Factorization with Temporal
    Continuity and Sparseness Criteria", IEEE TASLP 15(3).
"""

import torch

from .likelihoods.spectral import abs2
from .nmf import nmf_separate

__all__ = ["nmf_masks", "oracle_masks"]


def oracle_masks(refs, kind="ibm", eps=1e-12):
    """Oracle masks ``(B, N, T, F)`` from the reference source STFTs ``(B, N, T, F)``: the ideal binary mask
    (``"ibm"``: 1 for the loudest source of each bin) or the ideal Wiener mask (``"wiener"``: ``|S_n|^2 /
    sum_k |S_k|^2``)."""
    power = abs2(refs)
    if kind == "ibm":
        return torch.nn.functional.one_hot(power.argmax(1), refs.shape[1]).movedim(-1, 1).to(power.dtype)
    if kind == "wiener":
        return power / power.sum(1, keepdim=True).clamp_min(eps)
    raise ValueError(f"kind must be 'ibm' or 'wiener', got {kind!r}")


def nmf_masks(X, separator, names, method="is", iters=100, alpha=None, beta=None):
    """Wiener masks ``(B, N, T, F)`` of supervised NMF (:func:`~pyro_dvae.nmf.nmf_separate`) with the
    dictionaries of ``separator`` (an :class:`~pyro_dvae.nmf.NMFSeparator` fitted on the sources' training
    audio) named ``names``; ``alpha`` / ``beta`` default to the separator's."""
    missing = [n for n in names if n not in getattr(separator, "dictionaries", {})]
    if missing:
        raise ValueError(f"the NMF separator has no dictionary for {missing} (it has {separator.names})")
    V = abs2(X).mT
    out = nmf_separate(V, [separator.dictionaries[n].to(V.dtype) for n in names], iters, method,
                       separator.alpha if alpha is None else alpha, separator.beta if beta is None else beta,
                       separator.seed)
    return out.masks.mT
