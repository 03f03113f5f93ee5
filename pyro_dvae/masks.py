# SPDX-License-Identifier: Apache-2.0
"""Time-frequency masks: oracle masks from the reference sources, the Wiener masks of supervised NMF (a mask
``(B, N, T, F)`` multiplies the mixture STFT ``(B, T, F)`` to give the source estimates ``mask * mix[:, None]``),
and the posterior-mean gains of one source in additive noise, Gaussian (:func:`wiener_gain`) or with a
heavy-tailed source (:func:`scale_mixture_gain`).

**References:**

[1] D. Wang (2005), "On Ideal Binary Mask as the Computational Goal of Auditory Scene Analysis", in Speech
    Separation by Humans and Machines, Springer.
[2] P. Smaragdis, B. Raj, M. Shashanka (2007), "Supervised and Semi-Supervised Separation of Sounds from
    Single-Channel Mixtures", ICA.
[3] T. Virtanen (2007), "Monaural Sound Source Separation by Nonnegative Matrix Factorization with Temporal
    Continuity and Sparseness Criteria", IEEE TASLP 15(3).
[4] R. Martin (2005), "Speech Enhancement Based on Minimum Mean-Square Error Estimation and Supergaussian
    Priors", IEEE TSAP 13(5).
[5] S. Leglaive, U. Simsekli, A. Liutkus, L. Girin, R. Horaud (2019), "Speech Enhancement with Variational
    Autoencoders and Alpha-stable Distributions", ICASSP.
"""

import math

import torch

from .likelihoods.spectral import abs2
from .nmf import nmf_separate

__all__ = ["nmf_masks", "oracle_masks", "scale_mixture_gain", "wiener_gain"]


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


def wiener_gain(v_s, v_n):
    """The Wiener gain ``E[s | x] / x = v_s / (v_s + v_n)`` of ``s ~ CN(0, v_s)`` in ``x = s + n``,
    ``n ~ CN(0, v_n)``, averaged over the leading (posterior sample) dim: ``(R, ...) -> (...)``."""
    return (v_s / (v_s + v_n).clamp_min(torch.finfo(v_s.dtype).tiny)).mean(0)


#: bins per block of :func:`scale_mixture_gain` (its ``(nodes, block)`` temporaries stay in a core's cache:
#: about 2x faster than whole-utterance tensors on one CPU thread)
_BLOCK = 4096


def scale_mixture_gain(v_s, v_n, power, shape=None, num_nodes=41, log_range=(-10.0, 5.0)):
    """The posterior-mean gain ``E[s | x] / x`` of a heavy-tailed source in Gaussian noise, averaged over the
    leading (posterior sample) dim like :func:`wiener_gain`: ``(R, ...) -> (...)``.

    Model, per bin: ``x = s + n``, ``n ~ CN(0, v_n)``, ``s | u ~ CN(0, u v_s)`` with a variance scale
    ``u ~ Gamma(shape, rate=shape)`` (mean 1) of its own: a Gaussian scale mixture, whose ``s`` has heavier tails
    than a Gaussian of variance ``v_s`` (smaller ``shape``, heavier; ``shape -> inf`` is the Wiener gain) [4, 5].
    Given ``x``, ``E[s | x] = E[u v_s / (u v_s + v_n) | x] x``: bins whose observed ``power = |x|^2`` exceeds what
    ``v_s + v_n`` predicts get a larger gain, bins below it a smaller one. ``u`` is integrated out by quadrature:
    ``num_nodes`` nodes evenly spaced in ``log u`` over ``log_range``, plus one node at ``u = 0`` that carries the
    prior mass below the range (there ``s`` is negligible against ``n``); weights ``p(u) p(x | u) du``
    normalised per bin. Within 1e-2 of adaptive quadrature for ``shape >= 0.25`` (tested).

    :param v_s: source variances ``(R, ...)``; :param v_n: noise variances broadcastable against ``v_s``;
    :param power: ``|x|^2`` broadcastable against ``v_s[0]``; :param shape: the Gamma shape ``> 0``; ``inf`` (the
        Gaussian limit) or ``None``: :func:`wiener_gain`.
    """
    if shape is None or float(shape) == math.inf:
        return wiener_gain(v_s, v_n)
    if not float(shape) > 0.0:
        raise ValueError(f"shape must be > 0 (or None for the Wiener gain), got {shape}")
    if int(num_nodes) < 2 or not log_range[0] < log_range[1]:
        raise ValueError(f"need num_nodes >= 2 and log_range[0] < log_range[1], got {num_nodes}, {log_range}")
    tiny, a = torch.finfo(v_s.dtype).tiny, float(shape)
    lu = torch.linspace(*log_range, int(num_nodes), dtype=v_s.dtype, device=v_s.device)
    step = float(lu[1] - lu[0])
    below = torch.special.gammainc(torch.tensor(a, dtype=torch.float64), torch.tensor(a * math.exp(log_range[0]),
                                                                                          dtype=torch.float64))
    # log prior weights: the Gamma(a, a) density times the Jacobian u of the log grid (up to a constant), and
    # the mass below the grid in the same units (the density's constant a^a / Gamma(a) and the spacing divided out)
    log_prior = a * lu - a * lu.exp()
    log_below = float(below.log()) - a * math.log(a) + math.lgamma(a) - math.log(step)
    u, log_prior = lu.exp().view(-1, 1), log_prior.view(-1, 1)
    full = torch.broadcast_shapes(v_s.shape, (1, *power.shape), v_n.shape if torch.is_tensor(v_n) else ())
    n_all = v_n.expand(full) if torch.is_tensor(v_n) else torch.full(full, float(v_n), dtype=v_s.dtype,
                                                                     device=v_s.device)
    s_all, shape_out = v_s.expand(full), full[1:]
    x = power.expand(shape_out).reshape(-1)
    out = torch.zeros(x.shape, dtype=v_s.dtype, device=v_s.device)
    for s, n in zip(s_all, n_all):  # one posterior draw at a time, in blocks of bins that stay in cache
        s, n = s.reshape(-1), n.reshape(-1).clamp_min(tiny)
        for i in range(0, x.numel(), _BLOCK):
            sb, nb, xb = s[i:i + _BLOCK], n[i:i + _BLOCK], x[i:i + _BLOCK]
            us = u * sb  # (K, block): the speech variance at each node
            v = (us + nb).clamp_min(tiny)
            log_w = log_prior - v.log() - xb / v
            log_w0 = log_below - nb.log() - xb / nb  # the node at u = 0
            top = torch.maximum(log_w.amax(0), log_w0)
            w = (log_w - top).exp()
            out[i:i + _BLOCK] += (w * us / v).sum(0) / (w.sum(0) + (log_w0 - top).exp())
    return (out / v_s.shape[0]).view(shape_out)
