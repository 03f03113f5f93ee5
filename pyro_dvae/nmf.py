# SPDX-License-Identifier: Apache-2.0
"""Itakura-Saito NMF of power spectrograms: plain, with a fixed variance part, and temporal (Virtanen).

Layout: a power spectrogram ``V`` is ``(F, T)`` or ``(*batch, F, T)`` (frequency first, as in the NMF
literature; :func:`pyro_dvae.data.audio.stft` gives ``(T, F)``, so pass ``.abs().pow(2).mT``). The
dictionary ``W`` is ``(F, K)`` (shared by the batch) or ``(*batch, F, K)``, the activations ``H`` are
``(*batch, K, T)``. The model is ``X_ft ~ CN(0, V_fixed + (W H)_ft)``, whose negative log-likelihood is,
up to constants, the Itakura-Saito divergence ``D_IS(V | V_hat) = sum V / V_hat - log(V / V_hat) - 1``.

Updates are the majorise-minimise (MM) multiplicative updates of Fevotte & Idier (2011) for beta = 0,
i.e. the Fevotte-Bertin-Durrieu (2009) updates raised to the power 1/2::

    H <- H * [W^T (V V_hat^-2) / W^T V_hat^-1]^(1/2)        W <- W * [(V V_hat^-2) H^T / V_hat^-1 H^T]^(1/2)

with ``V_hat = V_fixed + W H``. They never increase the cost (the fixed part is one more, constant,
component of the sum that the MM bound is built on), which is what the speech-enhancement M-step needs:
there ``V_fixed = g_t v_s,ft`` is the speech variance and ``W H`` the noise (Leglaive et al. 2018, 2020),
and :func:`gain_step` updates the per-frame gain ``g``. ``power=1`` gives the original, faster but not
provably monotone, updates. After a joint W/H step the columns of ``W`` are scaled to sum to 1 and the rows
of ``H`` carry the scale (``W H`` unchanged). Zeros in ``V`` are floored at ``eps`` (the IS divergence is
undefined at 0).

References:
    - C. Fevotte, N. Bertin, J.-L. Durrieu, "Nonnegative matrix factorization with the Itakura-Saito
      divergence: with application to music analysis", Neural Computation 21(3), 2009.
    - C. Fevotte, J. Idier, "Algorithms for nonnegative matrix factorization with the beta-divergence",
      Neural Computation 23(9), 2011.
    - T. Virtanen, "Monaural sound source separation by nonnegative matrix factorization with temporal
      continuity and sparseness criteria", IEEE TASLP 15(3), 2007.
    - S. Leglaive, L. Girin, R. Horaud, "A variance modeling framework based on variational autoencoders for
      speech enhancement", MLSP 2018; S. Leglaive, X. Alameda-Pineda, L. Girin, R. Horaud, "A recurrent
      variational autoencoder for speech enhancement", ICASSP 2020.
"""

from typing import NamedTuple

import torch

EPS = 1e-12


def _power(V, name="V"):
    V = torch.as_tensor(V)
    if not V.is_floating_point():
        V = V.to(torch.get_default_dtype())
    if V.ndim < 2:
        raise ValueError(f"{name} must be (F, T) or (*batch, F, T), got shape {tuple(V.shape)}")
    if not torch.isfinite(V).all():
        raise ValueError(f"{name} contains NaN or inf")
    if (V < 0).any():
        raise ValueError(f"{name} must be nonnegative (a power spectrogram), found {float(V.min()):.3g}")
    return V


def _reduce_to(x, shape):
    """Sum ``x`` over the leading / broadcast dims so that it has ``shape`` (gradient of a broadcast)."""
    x = x.sum(tuple(range(x.ndim - len(shape)))) if x.ndim > len(shape) else x
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
    return x.sum(dims, keepdim=True) if dims else x


def _model(W, H, V_fixed, eps):
    Vh = W @ H if V_fixed is None else V_fixed + W @ H
    return Vh.clamp_min(eps)


def _ratio(num, den, power):
    return (num / den.clamp_min(torch.finfo(den.dtype).tiny)) ** power


def is_divergence(V, V_hat, eps=EPS, reduction="sum"):
    """Itakura-Saito divergence ``sum V / V_hat - log(V / V_hat) - 1`` (both floored at ``eps``).

    ``reduction``: ``"sum"`` (a scalar), ``"mean"`` or ``"none"`` (elementwise, broadcast shape).
    """
    r = torch.as_tensor(V).clamp_min(eps) / torch.as_tensor(V_hat).clamp_min(eps)
    d = r - torch.log(r) - 1
    if reduction == "none":
        return d
    if reduction in ("sum", "mean"):
        return getattr(d, reduction)()
    raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")


def is_nmf_cost(V, W, H, V_fixed=None, eps=EPS):
    """The cost the updates decrease: ``D_IS(V | V_fixed + W H)`` summed over every element."""
    return is_divergence(V, _model(W, H, V_fixed, eps), eps)


def normalise_columns(W, H):
    """Scale the columns of ``W`` to sum to 1 over frequency and the rows of ``H`` by the same factors."""
    s = W.sum(-2).clamp_min(torch.finfo(W.dtype).tiny)
    return W / s.unsqueeze(-2), H * s.unsqueeze(-1)


def is_nmf_step(V, V_fixed, W, H, update_W=True, update_H=True, power=0.5, eps=EPS, normalise=True, mask=None):
    """One multiplicative IS update of ``H`` then ``W`` for the model variance ``V_fixed + W H``.

    ``mask`` (0 / 1, broadcasting against ``V``, e.g. ``(F, 1)`` for frequency bins): only the elements where it
    is 1 count in the cost (the weighted IS cost; the updates stay majorise-minimise). Rows of ``W`` outside the
    mask are left where they are.

    ``V_fixed`` (``None`` for plain NMF) broadcasts against ``V`` and may carry extra leading sample dims
    (e.g. ``(R, *batch, F, T)`` for R posterior samples of the speech variance, as in the VEM M-step of
    Leglaive et al. 2020): the numerators and denominators are then summed over the samples, which
    minimises the sample average of the IS cost. ``W`` / ``H`` are returned new (inputs untouched).
    No input validation here (it is the inner loop): :func:`is_nmf` checks its inputs once.
    """
    V = V.clamp_min(eps)
    m = 1.0 if mask is None else mask.to(V.dtype)
    if update_H:
        Vh = _model(W, H, V_fixed, eps)
        num = _reduce_to(W.mT @ (m * V / Vh**2), H.shape)
        den = _reduce_to(W.mT @ (m / Vh), H.shape)
        H = H * _ratio(num, den, power)
    if update_W:
        Vh = _model(W, H, V_fixed, eps)
        num = _reduce_to((m * V / Vh**2) @ H.mT, W.shape)
        den = _reduce_to((m / Vh) @ H.mT, W.shape)
        W = torch.where(den > 0, W * _ratio(num, den, power), W) if mask is not None else W * _ratio(num, den, power)
        if normalise and update_H:
            W, H = normalise_columns(W, H)
    return W, H


def gain_step(V, V_s, g, V_other, power=0.5, eps=EPS, mask=None, floor=None):
    """Multiplicative IS update of a per-frame gain ``g (*batch, T)`` in ``V_hat = g_t V_s + V_other``.

    ``g <- g [sum_f V V_s V_hat^-2 / sum_f V_s V_hat^-1]^(1/2)`` (Leglaive et al. 2018, 2020), monotone like
    :func:`is_nmf_step`; ``V_s`` may carry extra leading sample dims (summed over). ``mask``: as in
    :func:`is_nmf_step` (bins outside it do not count).

    ``floor`` (broadcastable against ``g``): the update is kept at or above it, ``max(g_new, floor)``. The
    majorising function of each gain is ``a / g + b g`` (``a, b > 0``), convex, so the floored update is its
    minimiser over ``g >= floor`` and stays monotone from a start at or above the floor. Without a floor a gain
    that reaches zero never comes back (a multiplicative update's fixed point).
    """
    V = V.clamp_min(eps)
    Vh = (g.unsqueeze(-2) * V_s + V_other).clamp_min(eps)
    m = 1.0 if mask is None else mask.to(V.dtype)
    num = _reduce_to((m * V * V_s / Vh**2).sum(-2), g.shape)
    den = _reduce_to((m * V_s / Vh).sum(-2), g.shape)
    g = g * _ratio(num, den, power)
    return g if floor is None else torch.maximum(g, torch.as_tensor(floor, dtype=g.dtype, device=g.device))


def _init(V, rank, W, H, seed):
    gen = torch.Generator().manual_seed(seed)
    batch, (F, T) = V.shape[:-2], V.shape[-2:]
    if rank is None:
        rank = W.shape[-1] if W is not None else (H.shape[-2] if H is not None else None)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    if W is None:
        W = (torch.rand(F, rank, generator=gen, dtype=V.dtype) + 0.1).expand(*batch, F, rank).clone()
    else:
        W = _power(W, "W").to(V.dtype)
        if W.shape[-2:] != (F, rank):
            raise ValueError(f"W must be (..., {F}, {rank}), got shape {tuple(W.shape)}")
    if H is None:
        H = (torch.rand(rank, T, generator=gen, dtype=V.dtype) + 0.1).expand(*batch, rank, T)
        H = H * (V.mean((-2, -1), keepdim=True) / (W @ H).mean((-2, -1), keepdim=True)).clamp_min(EPS)
    else:
        H = _power(H, "H").to(V.dtype)
        if H.shape[-2:] != (rank, T):
            raise ValueError(f"H must be (..., {rank}, {T}), got shape {tuple(H.shape)}")
    return W, H


def _iters(iters):
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be a nonnegative integer, got {iters!r}")
    return iters


def is_nmf(V, rank=None, iters=100, W=None, H=None, update_W=None, update_H=True, seed=0, eps=EPS, power=0.5,
           V_fixed=None):
    """IS-NMF ``V ~ V_fixed + W H`` by ``iters`` multiplicative updates; returns ``(W, H)``.

    ``W`` / ``H`` given are initial values; a given ``W`` stays fixed unless ``update_W=True`` (``None``:
    learn ``W`` only when none is given). Random initialisation (seeded): uniform entries scaled so that
    ``mean(W H) = mean(V)``, the same draw for every item of a batch (so an item gives the same result alone
    or in a batch); a batched ``V`` gets one dictionary per item unless a shared ``(F, K)`` ``W`` is given.
    See the module docstring for the updates.
    """
    V = _power(V)
    update_W = W is None if update_W is None else update_W
    W, H = _init(V, rank, W, H, seed)
    V_fixed = None if V_fixed is None else _power(V_fixed, "V_fixed").to(V.dtype)
    for _ in range(_iters(iters)):
        W, H = is_nmf_step(V, V_fixed, W, H, update_W, update_H, power, eps)
    return W, H


# --- temporal NMF (Virtanen 2007) with the IS data term -------------------------------------------------


def _penalties(H, eps):
    """Per-row temporal continuity ``c_t`` and sparseness ``c_s`` of Virtanen (2007), shape ``(*batch, K)``."""
    T = H.shape[-1]
    S = (H**2).sum(-1).clamp_min(eps)
    D = (H[..., 1:] - H[..., :-1]).pow(2).sum(-1)
    return T * D / S, (T / S).sqrt() * H.sum(-1)


def temporal_cost(V, W, H, alpha=1.0, beta=0.0, eps=EPS, reduction="sum"):
    """``D_IS(V | W H) + alpha sum_k c_t,k(H) + beta sum_k c_s,k(H)`` (see :func:`temporal_nmf`).

    ``reduction="none"`` keeps the batch dims (one cost per item).
    """
    data = is_divergence(V, _model(W, H, None, eps), eps, reduction="none").sum((-2, -1))
    c_t, c_s = _penalties(H, eps)
    cost = data + alpha * c_t.sum(-1) + beta * c_s.sum(-1)
    return cost if reduction == "none" else cost.sum()


def _penalty_gradients(H, alpha, beta, eps):
    """Positive and negative parts of the gradient of ``alpha c_t + beta c_s`` with respect to ``H``."""
    T = H.shape[-1]
    S = (H**2).sum(-1, keepdim=True).clamp_min(eps)
    D = (H[..., 1:] - H[..., :-1]).pow(2).sum(-1, keepdim=True)
    pad = torch.nn.functional.pad
    neighbours = pad(H[..., :-1], (1, 0)) + pad(H[..., 1:], (0, 1))  # h_{t-1} + h_{t+1}, zero outside
    count = torch.full_like(H[..., :1, :], 2.0)
    count[..., 0], count[..., -1] = 1.0, 1.0
    if T == 1:
        count.zero_()
    pos = alpha * 2 * T * count * H / S + beta * (T / S).sqrt()
    neg = alpha * 2 * T * (neighbours / S + H * D / S**2) + beta * T**0.5 * H * H.sum(-1, keepdim=True) / S**1.5
    return pos, neg


def temporal_nmf(V, rank=None, iters=100, W=None, H=None, update_W=None, alpha=1.0, beta=0.0, seed=0, eps=EPS,
                 power=0.5, max_backtracks=30):
    """NMF with Virtanen's (2007) temporal continuity and sparseness penalties and an IS data term.

    Cost (minimised)::

        C(W, H) = D_IS(V | W H) + alpha sum_k T sum_t (h_kt - h_k,t-1)^2 / sum_t h_kt^2
                                + beta  sum_k sqrt(T) sum_t h_kt / sqrt(sum_t h_kt^2)

    i.e. Virtanen's continuity ``c_t`` and sparseness ``c_s`` (each row normalised by its RMS
    ``sigma_k``, so both are invariant to the scale of a component), with the Itakura-Saito divergence of
    power spectrograms as the data term instead of the divergence on magnitude spectra Virtanen used: it
    matches the Gaussian (``CN(0, WH)``) variance model of the rest of the package and its Wiener masks.
    The data term sums ``F T`` bins and the penalties ``K T`` terms, so weights of order ``F / K`` (tens)
    are needed for the penalties to shape the solution.

    ``H`` step: Virtanen's multiplicative update ``H <- H * (grad^- / grad^+)^eta``, with the gradient of the
    whole cost split into its positive and negative parts (data: ``W^T V_hat^-1`` / ``W^T (V V_hat^-2)``).
    It is a descent direction but not provably monotone, so ``eta`` starts at ``power`` and is halved (per
    batch item, at most ``max_backtracks`` times, else the item keeps its ``H``) until the cost does not
    increase. ``W`` step (when learnt): the IS update of :func:`is_nmf_step` (the penalties do not depend on
    ``W``), then column normalisation, which changes neither term. Hence ``C`` never increases.
    Arguments as in :func:`is_nmf`; returns ``(W, H)``.
    """
    V = _power(V).clamp_min(eps)
    update_W = W is None if update_W is None else update_W
    W, H = _init(V, rank, W, H, seed)
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be >= 0, got {alpha}, {beta}")
    for _ in range(_iters(iters)):
        H = _temporal_H_step(V, W, H, alpha, beta, eps, power, max_backtracks)
        if update_W:
            W, H = normalise_columns(*is_nmf_step(V, None, W, H, True, False, power, eps))
    return W, H


def _temporal_H_step(V, W, H, alpha, beta, eps, power, max_backtracks):
    Vh = _model(W, H, None, eps)
    pos_p, neg_p = _penalty_gradients(H, alpha, beta, eps)
    pos = W.mT @ (1 / Vh) + pos_p
    neg = W.mT @ (V / Vh**2) + neg_p
    log_ratio = torch.log(_ratio(neg, pos, 1.0).clamp_min(torch.finfo(H.dtype).tiny))
    old = temporal_cost(V, W, H, alpha, beta, eps, reduction="none")
    eta = torch.full_like(old, power)
    done = torch.zeros_like(old, dtype=torch.bool)
    new_H = H
    for _ in range(max_backtracks):
        trial = H * torch.exp(eta[..., None, None] * log_ratio)
        ok = (temporal_cost(V, W, trial, alpha, beta, eps, reduction="none") <= old) & ~done
        new_H = torch.where(ok[..., None, None], trial, new_H)
        done = done | ok
        if bool(done.all()):
            break
        eta = torch.where(done, eta, eta / 2)
    return new_H


# --- separation with per-source dictionaries -------------------------------------------------------------


class Separation(NamedTuple):
    """Per-source variances ``(*batch, S, F, T)``, Wiener masks (same shape, summing to 1 over S) and
    activations (one ``(*batch, K_s, T)`` tensor per source)."""

    variances: torch.Tensor
    masks: torch.Tensor
    activations: tuple


def nmf_separate(mix_power, dictionaries, iters=100, method="is", alpha=1.0, beta=0.0, seed=0, eps=EPS, power=0.5):
    """Supervised NMF separation: fit the activations of the stacked, fixed dictionaries ``[W_1 .. W_S]``
    (each ``(F, K_s)``) to the mixture power ``(F, T)`` / ``(*batch, F, T)``, then
    ``v_s = W_s H_s`` and the Wiener masks ``m_s = v_s / sum_s' v_s'``. Apply a mask to the mixture STFT
    (``m_s * X``) and invert it to get source ``s``. ``method``: ``"is"`` (:func:`is_nmf`) or ``"temporal"``
    (:func:`temporal_nmf` with ``alpha``, ``beta``).

    References:
        - P. Smaragdis, B. Raj, M. Shashanka, "Supervised and semi-supervised separation of sounds from
          single-channel mixtures", ICA 2007.
    """
    if method not in ("is", "temporal"):
        raise ValueError(f"method must be 'is' or 'temporal', got {method!r}")
    if not dictionaries:
        raise ValueError("need at least one dictionary")
    V = _power(mix_power, "mix_power")
    Ws = [_power(W, f"dictionaries[{i}]").to(V.dtype) for i, W in enumerate(dictionaries)]
    for i, W in enumerate(Ws):
        if W.ndim != 2 or W.shape[0] != V.shape[-2]:
            raise ValueError(f"dictionaries[{i}] must be ({V.shape[-2]}, K), got shape {tuple(W.shape)}")
    W = torch.cat(Ws, -1)
    if method == "is":
        _, H = is_nmf(V, W=W, iters=iters, seed=seed, eps=eps, power=power)
    else:
        _, H = temporal_nmf(V, W=W, iters=iters, alpha=alpha, beta=beta, seed=seed, eps=eps, power=power)
    Hs = torch.split(H, [w.shape[-1] for w in Ws], dim=-2)
    v = torch.stack([w @ h for w, h in zip(Ws, Hs)], dim=-3)
    masks = v / v.sum(-3, keepdim=True).clamp_min(eps)
    return Separation(v, masks, tuple(Hs))


class NMFSeparator:
    """Learns one IS-NMF dictionary per source from training power spectrograms, then separates mixtures.

    Usage::

        sep = NMFSeparator(rank=32)
        sep.fit("speech", [P1, P2])    # each (F, T_i); stacked along time
        sep.fit("music", [P3])
        out = sep.separate(mix_power)  # Separation; out.masks[i] belongs to sep.names[i]

    ``rank`` is an int or a ``{name: rank}`` dict; ``method``, ``alpha`` and ``beta`` apply to both the
    dictionary learning and the separation (see :func:`nmf_separate`).
    """

    def __init__(self, rank=32, iters=200, method="is", alpha=1.0, beta=0.0, seed=0, eps=EPS):
        if method not in ("is", "temporal"):
            raise ValueError(f"method must be 'is' or 'temporal', got {method!r}")
        self.rank, self.iters, self.method = rank, iters, method
        self.alpha, self.beta, self.seed, self.eps = alpha, beta, seed, eps
        self.dictionaries = {}

    @property
    def names(self):
        return list(self.dictionaries)

    def fit(self, source_name, power_list):
        """Learn (or replace) the dictionary ``W (F, K)`` of ``source_name``; returns ``self``."""
        if isinstance(power_list, torch.Tensor) and power_list.ndim == 2:
            power_list = [power_list]
        if len(power_list) == 0:
            raise ValueError(f"{source_name}: no training spectrograms")
        Ps = [_power(P, f"{source_name}[{i}]") for i, P in enumerate(power_list)]
        if any(P.ndim != 2 or P.shape[0] != Ps[0].shape[0] for P in Ps):
            raise ValueError(f"{source_name}: spectrograms must all be (F, T_i) with the same F")
        rank = self.rank[source_name] if isinstance(self.rank, dict) else self.rank
        V = torch.cat(Ps, -1)
        if self.method == "is":
            W, _ = is_nmf(V, rank, self.iters, seed=self.seed, eps=self.eps)
        else:
            W, _ = temporal_nmf(V, rank, self.iters, alpha=self.alpha, beta=self.beta, seed=self.seed, eps=self.eps)
        self.dictionaries[source_name] = W
        return self

    def separate(self, mix_power, iters=None):
        """:func:`nmf_separate` with the learnt dictionaries, in :attr:`names` order."""
        if not self.dictionaries:
            raise RuntimeError("fit at least one source before separate()")
        return nmf_separate(mix_power, list(self.dictionaries.values()), iters or self.iters, self.method,
                            self.alpha, self.beta, self.seed, self.eps)
