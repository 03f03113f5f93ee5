# SPDX-License-Identifier: Apache-2.0
"""Distributions over latent sequences with a recurrence, usable as single Pyro sites.

A DVAE latent sequence ``z_{1:T}`` factorises as ``prod_t N(z_t | loc_t(z_{<t}), scale_t(z_{<t}))``.
:class:`SequentialNormal` represents that joint as *one* Pyro site with batch shape ``(*batch, T)``
and event shape ``(z_dim,)``: ``log_prob`` returns the per-step conditional log-densities, computed in
parallel by teacher forcing on the given sequence; ``rsample`` draws the sequence step by step
(reparameterised). Registered KL divergences give the per-step analytic Gaussian KL estimator used by
the DVAE literature (analytic in ``z_t``, one-sample Monte Carlo over the prefix ``z_{<t}``), which
:class:`~pyro.infer.TraceMeanField_ELBO` picks up automatically.

**References:**

[1] L. Girin, S. Leglaive, X. Bie, J. Diard, T. Hueber, X. Alameda-Pineda (2021),
    "Dynamical Variational Autoencoders: A Comprehensive Review", Foundations and Trends in ML.
"""

import torch
from pyro.distributions import Normal, TorchDistribution, constraints
from torch.distributions import Independent, kl_divergence, register_kl


class SequentialNormal(TorchDistribution):
    """Autoregressive diagonal Gaussian over a sequence.

    :param callable params_fn: ``params_fn(z) -> (loc, scale)``, both ``(*batch, T, D)``, giving the
        parameters of ``z_t`` given ``z_{<t}`` (and whatever the closure conditions on) for a whole
        sequence at once (teacher forcing). ``loc_t`` must not depend on ``z_{>=t}``.
    :param callable sample_fn: optional ``sample_fn(eps) -> (z, loc, scale)`` drawing the sequence
        step by step from standard normal noise ``eps``. When omitted, sampling calls ``params_fn``
        once per step (``T`` parallel passes), which is exact but slow; fine for generation.
    :param torch.Tensor like: a ``(*batch, T, D)`` tensor giving shape, dtype and device.
    """

    arg_constraints = {}
    support = constraints.real
    has_rsample = True

    def __init__(self, params_fn, like, sample_fn=None, validate_args=None):
        self.params_fn, self.sample_fn = params_fn, sample_fn
        self._like = like
        self._value = self._loc = self._scale = None
        super().__init__(like.shape[:-1], like.shape[-1:], validate_args=False)

    @property
    def like(self):
        """The ``(*batch, T, D)`` tensor given at construction (shape, dtype and device of a draw); read-only."""
        return self._like

    def expand(self, batch_shape, _instance=None):
        # Plates re-expand every site to its own shape; keep the object (and its cached sample).
        if torch.Size(batch_shape) == self.batch_shape:
            return self
        return super().expand(batch_shape, _instance)

    def bind(self, value):
        """Compute and cache the parameters at ``value``; returns ``(loc, scale)``."""
        if value is not self._value:
            self._loc, self._scale = self.params_fn(value)
            self._value = value
        return self._loc, self._scale

    def unbind(self):
        """Forget the bound (or drawn) sequence and its cached parameters, so that the next :meth:`log_prob`
        evaluates ``params_fn`` again: for a ``params_fn`` whose closure reads something that changed after the
        draw (e.g. a sequence that a guide gave after ``sample_fn`` drew one with this sequence)."""
        self._value = self._loc = self._scale = None

    def rsample(self, sample_shape=torch.Size()):
        if len(sample_shape):
            raise NotImplementedError("SequentialNormal draws one sequence per call (sample_shape=())")
        eps = torch.randn_like(self._like)
        if self.sample_fn is not None:
            z, loc, scale = self.sample_fn(eps)
        else:
            z = torch.zeros_like(eps)
            for t in range(eps.shape[-2]):
                loc, scale = self.params_fn(z)
                z = z.clone()
                z[..., t, :] = loc[..., t, :] + scale[..., t, :] * eps[..., t, :]
            loc, scale = self.params_fn(z)
        self._value, self._loc, self._scale = z, loc, scale
        return z

    def noiseless(self):
        """The path drawn with zero noise (each ``z_t`` at its conditional mean given the path so far)."""
        if self.sample_fn is not None:
            return self.sample_fn(torch.zeros_like(self._like))[0]
        z = torch.zeros_like(self._like)
        for t in range(z.shape[-2]):
            z = z.clone()
            z[..., t, :] = self.params_fn(z)[0][..., t, :]
        return z

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value):
        loc, scale = self.bind(value)
        return Normal(loc, scale).log_prob(value).sum(-1)

    @property
    def step_normal(self):
        """Per-step conditional ``Normal(loc_t, scale_t)`` at the bound or last drawn sequence."""
        if self._value is None:
            raise ValueError("SequentialNormal has no bound sequence: call rsample() or bind(z) first")
        return Normal(self._loc, self._scale)


def _normal_kl(q_loc, q_scale, p_loc, p_scale):
    return kl_divergence(Normal(q_loc, q_scale), Normal(p_loc, p_scale)).sum(-1)


def _as_step_normal(d):
    """``Independent(Normal, 1)`` with batch ``(*batch, T)`` -> its base Normal, else None."""
    if isinstance(d, Independent) and isinstance(d.base_dist, torch.distributions.Normal):
        if d.reinterpreted_batch_ndims == 1:
            return d.base_dist
    return None


@register_kl(SequentialNormal, SequentialNormal)
def _kl_seq_seq(q, p):
    if q._value is None:
        raise NotImplementedError
    p_loc, p_scale = p.bind(q._value)
    return _normal_kl(q._loc, q._scale, p_loc, p_scale)


@register_kl(SequentialNormal, Independent)
def _kl_seq_indep(q, p):
    base = _as_step_normal(p)
    if q._value is None or base is None:
        raise NotImplementedError
    return _normal_kl(q._loc, q._scale, base.loc, base.scale)


@register_kl(Independent, SequentialNormal)
def _kl_indep_seq(q, p):
    # The model binds its prior to the replayed guide value, so p's cached parameters are those at
    # the guide's sample.
    base = _as_step_normal(q)
    if p._value is None or base is None:
        raise NotImplementedError
    return _normal_kl(base.loc, base.scale, p._loc, p._scale)
