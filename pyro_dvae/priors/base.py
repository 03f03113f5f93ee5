# SPDX-License-Identifier: Apache-2.0
"""The contract shared by every DVAE prior.

A prior is a :class:`~pyro.nn.PyroModule` over single-source sequences ``x`` shaped ``(*batch, T, D)``
with any number of leading batch dimensions, each of which becomes a :class:`pyro.plate`:

- :meth:`DVAE.model` / :meth:`DVAE.guide` — a Pyro model/guide pair for training. Latent sites are
  ``z`` (batch ``(*batch)``, event ``(T, z_dim)``; DSAE adds a static ``v``); the observation site is
  ``x``. Ragged sequences pass a prefix ``mask`` ``(*batch, T)``; padded steps are zero-filled before
  any network sees them and are masked out of every log-density (distribution masks), so they
  contribute nothing to the loss or its gradient.
- :meth:`DVAE.encode` — the amortised posterior ``q(z | x)`` as a distribution (``rsample`` it).
- :meth:`DVAE.decode` — the generative mean and variance of ``x_t`` given ``z`` and the past,
  teacher-forced on a given sequence; :meth:`DVAE.decode_stepwise` — the same fed step by step by an
  external estimate (what a VEM E-S step needs).

Subclasses implement three public generator/teacher-forcing hooks, :meth:`DVAE.guide_sites`,
:meth:`DVAE.model_sites` and :meth:`DVAE.decode_params` (plus :meth:`DVAE.stepwise_decode` when autoregressive),
may override :meth:`DVAE.z_prior_params`, :meth:`DVAE.emission_params` and :meth:`DVAE.extra_config`, and are
registered by name in :mod:`pyro_dvae.priors` (``docs/priors/writing_a_prior.md``). The task models (tracking,
separation, enhancement) use only these public methods. The underscore names of the hooks
(:data:`DEPRECATED_HOOKS`) still work for one release, with a :class:`DeprecationWarning`.

Emissions: ``"gaussian"`` (``x_t ~ N(loc, diag(var))``, for trajectories and boxes) or
``"spectral"`` (``x`` is a power spectrum ``|X|^2`` and ``|X_ft|^2 ~ Exponential(mean v_ft)``, which
is the complex Gaussian ``X_ft ~ CN(0, v_ft)`` up to a constant, i.e. an Itakura-Saito fit).
"""

import functools
import inspect
import os
import tempfile
import warnings
from contextlib import ExitStack

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from pyro_dvae.smoothing import scale_dynamics_var, warn_uncalibrated

from .distributions import SequentialNormal
from .nn import shift_right

EMISSIONS = ("gaussian", "spectral")
FORMAT = "pyro_dvae.prior"
FORMAT_VERSION = 1
SPECTRAL_FLOOR = 1e-8
#: How a spectral decoder's output layer maps to the log-variance: ``"standardised"`` (``log v = x_loc + gamma +
#: x_scale * a``, in the units of the standardised log-power input) or ``"raw"`` (``log v = a``: checkpoints written
#: before the option; the output bias then needs ~10^4 Adam steps to reach the level of quiet bins).
SPECTRAL_OUTPUTS = ("standardised", "raw")
#: Range of a standardised spectral decoder's log-variance (float32-safe).
SPECTRAL_LOGVAR_RANGE = (-40.0, 30.0)
EULER_GAMMA = 0.5772156649015329
NORM_BUFFERS = ("x_loc", "x_scale", "out_scale")
#: The hooks' underscore names before they became public -> their public names. A subclass that still defines
#: an old name (and not the new one) has it aliased to the new name with a :class:`DeprecationWarning`; calling
#: an old name on any prior forwards to the public method with one. Both go in the next release.
DEPRECATED_HOOKS = {
    "_guide_sites": "guide_sites",
    "_model_sites": "model_sites",
    "_decode": "decode_params",
    "_decode_stepwise": "stepwise_decode",
    "_z_prior": "z_prior_params",
    "_emission": "emission_params",
    "_extra_config": "extra_config",
    "_prepare": "prepare_input",
    "_run_sites": "run_sites",
    "_site": "site_dist",
}


class Emission(nn.Module):
    """Output layer: ``(loc, logvar)`` for Gaussian data, ``(None, logvar)`` for power spectra."""

    def __init__(self, in_dim, x_dim, kind):
        super().__init__()
        self.kind = kind
        self.loc = nn.Linear(in_dim, x_dim) if kind == "gaussian" else None
        self.logvar = nn.Linear(in_dim, x_dim)

    def forward(self, h):
        logvar = self.logvar(h).clamp(-20.0, 20.0)
        return (self.loc(h) if self.loc is not None else None), logvar


class DVAE(PyroModule):
    """Base class of the DVAE zoo.

    Derived classes must implement :meth:`guide_sites`, :meth:`model_sites` and :meth:`decode_params`, and, when
    they set ``autoregressive = True``, :meth:`stepwise_decode`. They may override :meth:`z_prior_params` (must,
    when the prior of ``z`` is not ``N(0, I)``), :meth:`emission_params` (must, when the decoder reads a static
    latent such as DSAE's ``v``) and :meth:`extra_config` (must, when ``__init__`` takes options beyond this
    class's). Everything else (:meth:`model`, :meth:`guide`, :meth:`encode`, :meth:`decode`,
    :meth:`decode_stepwise`, :meth:`latent_sequence`, checkpoints, normalisation) is built on those hooks.
    Class attributes: ``name`` (the registry name), ``autoregressive``, ``decoder_reads_x``,
    ``latent_sites`` (site names the guide yields, ``("z",)`` by default, ``("v", "z")`` with a static latent
    ``v``) and ``ss_mode`` (the form of scheduled sampling in training, :meth:`_scheduled_inputs`; the training
    run sets it on the instance from :class:`~pyro_dvae.training.TrainConfig`). See
    ``docs/priors/writing_a_prior.md``.

    :param int x_dim: observation size (4 for boxes, 513 for a 1024-point spectrum).
    :param int z_dim: latent size per time step.
    :param str emission: ``"gaussian"`` or ``"spectral"``.
    :param int dense_dim: width of the observation-side MLPs.
    :param int rnn_dim: LSTM state size.
    :param tuple z_dense: hidden sizes of the latent-side MLPs.
    :param bool residual: autoregressive Gaussian priors only: the decoder predicts the change from
        ``x_{t-1}`` (``loc_t = x_{t-1} + f(...)``), which lets small networks model slow motion precisely.
    :param str spectral_output: spectral emissions only: ``"standardised"`` or ``"raw"`` output units (below).
    :param float level_floor_db: spectral emissions only: model the power above a floor this many dB below the
        mean training power (``None``: no floor). The floor ``f`` (the buffer ``power_floor``, set by
        :meth:`fit_normalisation`) is added to the observation and to the decoder's variance, ``|X|^2 + f ~
        Exponential(mean v + f)``, and to the networks' log-power input, ``log(|X|^2 + f)``. Bins far below it
        (codec holes, room noise between words) then cost nothing, and the networks spend their capacity on the
        loud bins that carry the signal; :meth:`decode` still returns ``v``, the variance of the power itself.

    Data normalisation (buffers saved with the weights, identity until :meth:`fit_normalisation`):
    the networks read standardised features ``(f(x) - x_loc) / x_scale`` (``f`` is the identity for
    Gaussian data, ``log`` for power spectra), and a Gaussian emission is produced in standardised
    units, ``loc = base + out_scale * a``, ``logvar = b + 2 log out_scale``, with ``base = x_{t-1}`` for
    residual decoders (``out_scale`` = std of the per-step change) and ``x_loc`` otherwise. Box
    trajectories move by ~1e-3 per frame: without this, the output log-variance alone needs thousands
    of optimiser steps to reach its scale. A spectral emission likewise (``spectral_output="standardised"``, the
    default) gives ``log v = x_loc + gamma + x_scale * a`` (``gamma`` Euler's constant, the gap between
    ``E[log |X|^2]`` and ``log v``), starting every bin at its mean level; ``"raw"`` (``log v = a``) is what
    spectral checkpoints written before the option hold (:func:`~pyro_dvae.priors.load` rebuilds them so).
    """

    name = None  # registry name, set by subclasses
    autoregressive = False  # True when p(x_t | ...) reads x_{<t}
    ss_mode = "parallel"  # scheduled sampling of training: "parallel" or "sequential" (_scheduled_inputs)
    decoder_reads_x = False  # True when the decoder needs the sequence for another reason (DSAE's v)
    latent_sites = ("z",)

    def __init_subclass__(cls, **kwargs):
        """Keep subclasses written against the underscore hook names working for one release
        (:data:`DEPRECATED_HOOKS`): an old name the class defines without the new one becomes the new one (with a
        :class:`DeprecationWarning`); a new name it defines gets a deprecated old-name alias that calls this
        class's own implementation (so ``super()._decode(...)`` in an old-style subclass still reaches it)."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        for old, new in DEPRECATED_HOOKS.items():
            if old in own and new not in own:
                warnings.warn(f"{cls.__qualname__}.{old} is deprecated: rename it {new} (the DVAE hooks are public; "
                              "the underscore names stop working in the next release)", DeprecationWarning,
                              stacklevel=2)
                setattr(cls, new, own[old])
            elif new in own and old not in own:
                setattr(cls, old, _deprecated_alias(own[new], old, new))
        hook = cls.__dict__.get("z_prior_params")
        if hook is not None and "latents" not in inspect.signature(hook).parameters:
            cls.z_prior_params = _with_latents(hook)

    def __init__(self, x_dim, z_dim=16, emission="gaussian", dense_dim=256, rnn_dim=128, z_dense=(64, 32),
                 residual=False, spectral_output="standardised", level_floor_db=None):
        super().__init__()
        if spectral_output not in SPECTRAL_OUTPUTS:
            raise ValueError(f"spectral_output must be one of {SPECTRAL_OUTPUTS}, got {spectral_output!r}")
        self.spectral_output = spectral_output
        if level_floor_db is not None:
            if emission != "spectral":
                raise ValueError("level_floor_db is for spectral priors (emission='spectral')")
            if isinstance(level_floor_db, bool) or not isinstance(level_floor_db, (int, float)) or not (
                    0 < level_floor_db < float("inf")):
                raise ValueError(f"level_floor_db must be a positive number of dB, got {level_floor_db!r}")
            level_floor_db = float(level_floor_db)
            self.register_buffer("power_floor", torch.zeros(()))
        self.level_floor_db = level_floor_db
        if residual and (emission != "gaussian" or not self.autoregressive):
            raise ValueError("residual=True needs an autoregressive prior with a gaussian emission")
        self.residual = bool(residual)
        if emission not in EMISSIONS:
            raise ValueError(f"emission must be one of {EMISSIONS}, got {emission!r}")
        for key, val in (("x_dim", x_dim), ("z_dim", z_dim), ("dense_dim", dense_dim), ("rnn_dim", rnn_dim)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"{key} must be a positive int, got {val!r}")
        self.x_dim, self.z_dim, self.emission = x_dim, z_dim, emission
        self.dense_dim, self.rnn_dim, self.z_dense = dense_dim, rnn_dim, tuple(int(h) for h in z_dense)
        for name in NORM_BUFFERS:
            self.register_buffer(name, torch.full((x_dim,), 0.0 if name == "x_loc" else 1.0))

    # ---------------------------------------------------------------- data normalisation
    @property
    def is_normalised(self):
        """False while the normalisation buffers hold their identity defaults."""
        return not (bool((self.x_loc == 0).all()) and bool((self.x_scale == 1).all())
                    and bool((self.out_scale == 1).all()))

    @torch.no_grad()
    def fit_normalisation(self, x, mask=None):
        """Set ``x_loc``, ``x_scale`` (and ``out_scale``) from training data ``x (*batch, T, x_dim)``.

        Statistics run over valid steps only (``mask``: prefix mask ``(*batch, T)``); scales are floored
        at 1e-6 of the largest. Call before training (:func:`~pyro_dvae.training.train_prior` does
        when the prior still has the identity normalisation).
        """
        x, mask, _ = self.prepare_input(torch.as_tensor(x, dtype=self.x_loc.dtype, device=self.x_loc.device), mask)
        valid = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device) if mask is None else mask
        if self.level_floor_db is not None:
            self.power_floor.copy_(x[valid].mean() * 10 ** (-self.level_floor_db / 10))
        f = self._raw_features(x)[valid]
        loc, scale = f.mean(0), f.std(0)
        self.x_loc.copy_(loc)
        self.x_scale.copy_(scale.clamp_min(1e-6 * float(scale.max().clamp_min(1e-12))))
        if self.emission == "gaussian":
            if self.residual:
                step = (x[..., 1:, :] - x[..., :-1, :])[valid[..., 1:] & valid[..., :-1]]
                out = step.std(0) if step.shape[0] > 1 else self.x_scale.clone()
            else:
                out = x[valid].std(0)
            self.out_scale.copy_(out.clamp_min(1e-6 * float(out.max().clamp_min(1e-12))))
        return self

    # ---------------------------------------------------------------- configuration and checkpoints
    @property
    def config(self):
        """Keyword arguments that rebuild this prior with :func:`pyro_dvae.priors.build`."""
        return {
            "x_dim": self.x_dim,
            "z_dim": self.z_dim,
            "emission": self.emission,
            "dense_dim": self.dense_dim,
            "rnn_dim": self.rnn_dim,
            "z_dense": list(self.z_dense),
            **({"residual": True} if self.residual else {}),
            **({"spectral_output": self.spectral_output} if self.emission == "spectral" else {}),
            **({"level_floor_db": self.level_floor_db} if self.level_floor_db is not None else {}),
            **self.extra_config(),
        }

    def extra_config(self):
        """Options of this class's ``__init__`` beyond the base class's, as keyword arguments of
        :func:`pyro_dvae.priors.build` (merged into :attr:`config`, so they are saved in checkpoints).

        Subclasses whose ``__init__`` takes extra options MUST override it (e.g. DSAE returns ``{"v_dim": ...}``),
        or a saved checkpoint rebuilds with the defaults; the base returns ``{}``.

        :returns: a dict of JSON-like values (ints, floats, strings, lists).
        :rtype: dict
        """
        return {}

    def checkpoint(self, **extra):
        """The checkpoint dictionary (weights, class name, config) plus ``extra`` entries."""
        return checkpoint_dict(self, **extra)

    def save(self, path, **extra):
        """Write weights + config atomically (temporary file, then rename).

        The file loads with ``torch.load(path, weights_only=True)`` and rebuilds with
        :func:`pyro_dvae.priors.load`.
        """
        save_checkpoint(self.checkpoint(**extra), path)

    # ---------------------------------------------------------------- input handling
    def prepare_input(self, x, mask):
        """Validate a batch of sequences and zero-fill its padded steps: what :meth:`model`, :meth:`guide`,
        :meth:`encode` and :meth:`decode` run first, and what a caller driving :meth:`guide_sites` /
        :meth:`model_sites` itself (the separation model) runs before them. Subclasses need not override it.

        :param torch.Tensor x: ``(*batch, T, x_dim)`` observations (power spectra are checked non-negative).
        :param mask: optional prefix mask ``(*batch, T)`` (valid steps first); padded steps of ``x`` are set to 0.
        :returns: ``(x, mask, lengths)``: the zero-filled ``x``, the boolean mask (or ``None``) and the valid
            lengths ``(*batch)`` (``None`` without a mask).
        :raises ValueError: on a wrong shape, a non-prefix mask, NaN / inf, or negative power.
        """
        if not torch.is_tensor(x) or x.dim() < 2:
            raise ValueError(f"x must be a tensor shaped (*batch, T, {self.x_dim}); got "
                             f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
        if x.shape[-1] != self.x_dim:
            raise ValueError(f"{self.name} prior expects x_dim={self.x_dim} but x has {x.shape[-1]} features")
        if x.shape[-2] < 1:
            raise ValueError("x has no time steps")
        lengths = None
        if mask is not None:
            mask = torch.as_tensor(mask, device=x.device)
            if mask.shape != x.shape[:-1]:
                raise ValueError(f"mask must be shaped {tuple(x.shape[:-1])}, got {tuple(mask.shape)}")
            mask = mask.bool()
            if (mask[..., 1:] & ~mask[..., :-1]).any():
                raise ValueError("mask must be a prefix mask (valid steps first, padding after) per sequence")
            x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
            lengths = mask.sum(-1)
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf at unmasked steps")
        if self.emission == "spectral" and (x < 0).any():
            raise ValueError("spectral priors take power spectra: x must be non-negative")
        return x, mask, lengths

    @property
    def floor(self):
        """The power floor ``f`` of ``level_floor_db`` (a 0-d tensor), or 0.0 without one."""
        return self.power_floor if self.level_floor_db is not None else 0.0

    def _raw_features(self, x):
        return torch.log(x + self.floor + SPECTRAL_FLOOR) if self.emission == "spectral" else x

    def features(self, x):
        """Network input: identity (Gaussian data) or log-power (spectra), then standardised."""
        return (self._raw_features(x) - self.x_loc) / self.x_scale

    def _sequence_features(self, x):
        """What an input-recurrent decoder's ``phi_x`` reads at every step of ``x (*batch, T, x_dim)``:
        :meth:`features`; a subclass may add inputs (e.g. the last change), matching :meth:`_step_features`."""
        return self.features(x)

    def _step_features(self, x, x_prev):
        """:meth:`_sequence_features` of one step ``x (*batch, x_dim)`` given the step before it (``None`` at the
        first step), for step-by-step decoding."""
        return self.features(x)

    def _plates(self, batch_shape, names):
        return batch_plates(batch_shape, names)

    @staticmethod
    def site_dist(d, mask, time_shape):
        """The distribution a site yielded by :meth:`guide_sites` / :meth:`model_sites` is sampled with: a
        per-time-step site (batch shape ``time_shape``) gets the step mask and its time dimension moved to the
        event (event ``(T, dim)``); a static site (batch ``(*batch)``, e.g. DSAE's ``v``) is returned as is.

        :param d: a distribution with event ``(dim,)``.
        :param mask: optional prefix mask ``(*batch, T)``.
        :param tuple time_shape: ``(*batch, T)``.
        """
        if tuple(d.batch_shape) == tuple(time_shape):  # a per-time-step site: T becomes an event dim
            if mask is not None:
                d = d.mask(mask)
            return d.to_event(1)
        return d

    def run_sites(self, gen, mask, time_shape):
        """Run a site generator (:meth:`guide_sites` or :meth:`model_sites`, possibly wrapped, e.g. to rename
        its sites) as Pyro sample sites (:meth:`site_dist`), sending each sampled value back into it and binding
        :class:`~pyro_dvae.priors.distributions.SequentialNormal` sites to it. Call inside the batch plates.
        Subclasses need not override it.

        :param gen: the generator.
        :param mask: optional prefix mask ``(*batch, T)``.
        :param tuple time_shape: ``(*batch, T)``.
        :returns: the generator's return value (the emission ``(loc, logvar)`` for :meth:`model_sites`,
            ``None`` for :meth:`guide_sites`).
        """
        value = None
        try:
            while True:
                name, d = gen.send(value)
                value = pyro.sample(name, self.site_dist(d, mask, time_shape))
                if isinstance(d, SequentialNormal):
                    d.bind(value)
        except StopIteration as stop:
            return stop.value

    def emission_dist(self, loc, logvar):
        """Per-step observation distribution (batch ``(*batch, T)``, event ``(x_dim,)``)."""
        if self.emission == "gaussian":
            return dist.Normal(loc, torch.exp(0.5 * logvar)).to_event(1)
        if self.level_floor_db is not None:  # observes the power plus the floor (model)
            return dist.Exponential(1.0 / (torch.exp(logvar) + self.power_floor)).to_event(1)
        return dist.Exponential(torch.exp(-logvar)).to_event(1)

    def expected(self, loc, logvar):
        """``(mean, var)`` of the emission: Gaussian loc/var, or ``(v, v)`` for spectra (``v`` is both
        the expected power and the complex-Gaussian variance)."""
        var = torch.exp(logvar)
        return (loc if self.emission == "gaussian" else var), var

    # ---------------------------------------------------------------- Pyro model / guide
    def model(self, x, mask=None, ss_prob=0.0, plates=None):
        """Generative model ``p(x, z)``.

        :param torch.Tensor x: ``(*batch, T, x_dim)`` observations.
        :param torch.Tensor mask: optional prefix mask ``(*batch, T)``.
        :param float ss_prob: scheduled-sampling probability (autoregressive priors only): each past
            input ``x_{t-1}`` is replaced by the decoder's own prediction with this probability.
        :param list plates: optional names for the leading batch plates.
        """
        x, mask, lengths = self.prepare_input(x, mask)
        if not 0.0 <= float(ss_prob) <= 1.0:
            raise ValueError(f"ss_prob must lie in [0, 1], got {ss_prob}")
        with self._plates(x.shape[:-2], plates):
            loc, logvar = self.run_sites(self.model_sites(x, lengths, float(ss_prob)), mask, x.shape[:-1])
            d = self.emission_dist(loc, logvar)
            if mask is not None:
                d = d.mask(mask)
            return pyro.sample("x", d.to_event(1), obs=x + self.floor)  # floor 0.0 without level_floor_db

    def guide(self, x, mask=None, ss_prob=0.0, plates=None):
        """Amortised variational posterior ``q(z | x)`` (``ss_prob`` is accepted and ignored)."""
        x, mask, lengths = self.prepare_input(x, mask)
        with self._plates(x.shape[:-2], plates):
            self.run_sites(self.guide_sites(x, lengths), mask, x.shape[:-1])

    # ---------------------------------------------------------------- VEM pieces
    def encode(self, x, mask=None, with_statics=False):
        """The encoder ``q(z | x)`` for a given sequence, as a distribution with batch shape
        ``(*batch, T)`` and event shape ``(z_dim,)``; draw with ``rsample()``. Static latents
        (DSAE ``v``) are set to their posterior mean; ``with_statics=True`` also returns them as a
        dict by site name (empty for priors without static latents)."""
        x, mask, lengths = self.prepare_input(x, mask)
        gen, value, statics = self.guide_sites(x, lengths), None, {}
        while True:
            name, d = gen.send(value)
            if name == "z":
                return (d, statics) if with_statics else d
            value = statics[name] = d.mean

    def decode(self, z, x=None, mask=None):
        """Generative ``(mean, var)`` of every ``x_t`` given ``z`` and the past, teacher-forced on
        ``x`` (required by autoregressive priors and DSAE; ignored otherwise)."""
        if z.shape[-1] != self.z_dim:
            raise ValueError(f"z must have z_dim={self.z_dim} features, got {z.shape[-1]}")
        lengths = None
        if x is not None:
            x, mask, lengths = self.prepare_input(x, mask)
        elif self.autoregressive or self.decoder_reads_x:
            raise ValueError(f"the {self.name} decoder reads the observed sequence: pass x")
        return self.expected(*self.decode_params(z, x, lengths))

    def decode_stepwise(self, z, feed, x=None, latents=None):
        """Run the decoder one step at a time, feeding back an external estimate.

        :param torch.Tensor z: ``(*batch, T, z_dim)``.
        :param callable feed: ``feed(t, mean_t, var_t) -> x_t`` returns the value (``(*batch, x_dim)``)
            to feed as the past at step ``t + 1``, e.g. a posterior mean computed from ``mean_t``,
            ``var_t`` and the observations.
        :param torch.Tensor x: for non-autoregressive priors that need a sequence summary (DSAE).
        :param dict latents: the other latents by site name (static ones such as LigHT-DVAE's ``w``, site
            ``v``), e.g. the encoder's; priors whose decoder reads none ignore it.
        :returns: stacked ``(means, vars)`` shaped ``(*batch, T, x_dim)``.
        """
        if not self.autoregressive:
            means, vars_ = self.decode(z, x)
            for t in range(z.shape[-2]):
                feed(t, means[..., t, :], vars_[..., t, :])
            return means, vars_
        return self.stepwise_decode(z, feed)

    # ---------------------------------------------------------------- subclass hooks
    def guide_sites(self, x, lengths):
        """The amortised posterior ``q(latents | x)`` as a generator of sites. Subclasses MUST implement it.

        The generator yields ``(name, distribution)`` for each latent site, in the order of
        ``latent_sites`` (static sites first, ``"z"`` last), and receives the sampled value back
        (``value = yield name, d``); it returns nothing. Per-step sites have batch shape ``(*batch, T)`` and event
        ``(z_dim,)``: ``dist.Normal(loc, scale).to_event(1)`` or a
        :class:`~pyro_dvae.priors.distributions.SequentialNormal` (an encoder with a recurrence on ``z``); the
        task models read their ``loc`` / ``scale`` (analytic KLs), so use one of these two. Static sites
        (DSAE's ``v``) have batch ``(*batch)`` and event ``(dim,)``. :meth:`guide`, :meth:`encode` and the task
        models' E-Z steps all run this one generator (:meth:`run_sites`).

        :param torch.Tensor x: ``(*batch, T, x_dim)`` observations, already through :meth:`prepare_input`
            (padded steps zero-filled); read them through :meth:`features`.
        :param torch.Tensor lengths: valid lengths ``(*batch)`` of ragged sequences, or ``None`` (all ``T``
            steps valid). Encoders that run backwards in time should start each sequence at its last valid
            step (:class:`~pyro_dvae.priors.nn.SeqLSTM` does given ``lengths``).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement guide_sites")

    def model_sites(self, x, lengths, ss_prob):
        """The prior ``p(latents)`` as a generator of sites, returning the emission. Subclasses MUST implement it.

        Yields the same sites as :meth:`guide_sites` (same names, shapes and order) from the generative model:
        ``z`` from :func:`standard_normal_steps` (``N(0, I)``) or a
        :class:`~pyro_dvae.priors.distributions.SequentialNormal` over ``p(z_t | z_{<t}, x_{<t})`` (then
        also override :meth:`z_prior_params`), and returns the emission parameters of ``p(x_t | ...)`` at the
        received values, teacher-forced on ``x`` (the same numbers as :meth:`emission_params` on those
        latents). :meth:`model` samples the sites and observes ``x`` with :meth:`emission_dist`.

        :param torch.Tensor x: ``(*batch, T, x_dim)`` observations (see :meth:`guide_sites`).
        :param torch.Tensor lengths: valid lengths ``(*batch)`` or ``None``.
        :param float ss_prob: scheduled-sampling probability in ``[0, 1]`` (autoregressive priors may replace
            each past input by their own prediction with it, e.g. with ``_scheduled_inputs``; others ignore it).
        :returns: ``(loc, logvar)``, each ``(*batch, T, x_dim)`` (``loc`` is ``None`` for a spectral emission),
            best built with ``self._out(h, x)`` from decoder features ``h`` (it undoes the output
            normalisation).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement model_sites")

    def decode_params(self, z, x, lengths):
        """Teacher-forced emission parameters given ``z``. Subclasses MUST implement it.

        Static latents (DSAE's ``v``) are not given: a decoder that reads one infers it from ``x`` (its
        posterior mean). :meth:`decode` returns :meth:`expected` of this.

        :param torch.Tensor z: ``(*batch, T, z_dim)`` latents.
        :param torch.Tensor x: ``(*batch, T, x_dim)`` past of the sequence for autoregressive decoders (step
            ``t`` reads ``x_{<t}``) and decoders that summarise it (``decoder_reads_x``); ``None`` otherwise.
        :param torch.Tensor lengths: valid lengths ``(*batch)`` or ``None``.
        :returns: ``(loc, logvar)``, each ``(*batch, T, x_dim)`` (``loc`` ``None`` for a spectral emission).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement decode_params")

    def stepwise_decode(self, z, feed):
        """The decoder run one step at a time on an external past: the hook behind :meth:`decode_stepwise` for
        autoregressive priors, which MUST implement it (non-autoregressive ones need not: :meth:`decode_stepwise`
        then calls :meth:`decode`). Priors with static latents override :meth:`decode_stepwise` itself to
        pass them.

        :param torch.Tensor z: ``(*batch, T, z_dim)`` latents.
        :param callable feed: ``feed(t, mean_t, var_t) -> x_t`` (``(*batch, x_dim)`` each): the value of step
            ``t`` that the decoder reads as the past of step ``t + 1``.
        :returns: ``(means, vars)``, the emission moments (:meth:`expected`) stacked to ``(*batch, T, x_dim)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement stepwise_decode")

    def joint_stepwise(self, eps, feed, latents=None):
        """Draw ``z`` and the sequence ``x`` together, ancestrally, one step at a time: ``z_t`` from
        ``p(z_t | z_{<t}, x_{<t})`` with the noise ``eps[..., t, :]``, then ``x_t = feed(t, mean_t, var_t)`` from
        the emission moments of ``p(x_t | z_{<=t}, x_{<t})``. The sampler of :meth:`latent_sequence` (and of the
        separation model) when no guide gives ``z`` and the prior of ``z`` reads the sequence (SRNN, VRNN,
        LigHT-/HiT-DVAE): ``z`` cannot be drawn before the sequence exists, nor the sequence before ``z``.

        Subclasses MAY override it with an ``O(T)`` recursion (SRNN and VRNN do); the default is exact for any
        prior obeying the hooks' causal contract, from :meth:`z_prior_params` and :meth:`emission_params`
        teacher-forced on the growing prefix (``2 T`` parallel passes).

        :param torch.Tensor eps: ``(*batch, T, z_dim)`` standard normal noise of ``z``.
        :param callable feed: ``feed(t, mean_t, var_t) -> x_t`` (``(*batch, x_dim)`` each), as in
            :meth:`decode_stepwise`: the drawn (or otherwise chosen) value of step ``t``.
        :param dict latents: the static latents by site name (``"v"``), for decoders that read one.
        :returns: ``(z, z_loc, z_scale, means, vars)``: the path ``(*batch, T, z_dim)``, the parameters of
            ``p(z_t | z_{<t}, x_{<t})`` along it, and the emission moments (:meth:`expected`)
            ``(*batch, T, x_dim)`` of each step given the past that was fed.
        """
        def z_params(z, x):
            params = self.z_prior_params(z, x)
            return (torch.zeros_like(z), torch.ones_like(z)) if params is None else params

        return self.joint_teacher_forced(eps, feed, z_params,
                                          lambda z, x: self.expected(*self.emission_params(z, x, latents)))

    def joint_teacher_forced(self, eps, feed, z_params, moments):
        """:meth:`joint_stepwise` by teacher forcing on the growing prefix, for given densities: ``z_params(z, x)
        -> (loc, scale)`` of ``p(z_t | z_{<t}, x_{<t})`` and ``moments(z, x) -> (means, vars)`` of
        ``p(x_t | z_{<=t}, x_{<t})``, each for every step at once, step ``t`` reading only that past (``2 T``
        parallel passes). For subclasses, and for a model that wraps this prior in densities of its own (the
        separation model's sampler). Returns as :meth:`joint_stepwise`."""
        z = torch.zeros_like(eps)
        x = eps.new_zeros(*eps.shape[:-1], self.x_dim)
        for t in range(eps.shape[-2]):
            loc, scale = z_params(z, x)
            z = z.clone()
            z[..., t, :] = loc[..., t, :] + scale[..., t, :] * eps[..., t, :]
            mean, var = moments(z, x)
            x = x.clone()
            x[..., t, :] = feed(t, mean[..., t, :], var[..., t, :])
        loc, scale = z_params(z, x)
        mean, var = moments(z, x)
        return z, loc, scale, mean, var

    def _out(self, h, x=None, step=False):
        """Emission ``(loc, logvar)`` from decoder features ``h``, undoing the output standardisation.

        ``x``: for residual decoders, the teacher-forcing input sequence ``(*batch, T, x_dim)`` (the base
        of step ``t`` is ``x_{t-1}``, with ``x_{-1} = 0``); with ``step=True``, the single past value
        ``x_{t-1}`` or ``None`` at ``t = 0``. The first step thus learns the start position as a large
        offset with a broad variance (a flat start, which is what a tracker wants from a prior trained on
        synthetic start positions).
        """
        loc, logvar = self.emit(h)
        if self.emission != "gaussian":
            if self.spectral_output == "raw":
                return loc, logvar
            # standardised: a = 0 is each bin's mean log-power (+ Euler's gamma, the offset of E[log |X|^2] below
            # log v for a complex Gaussian); a = 1 one standard deviation above it
            return loc, (self.x_loc + EULER_GAMMA + self.x_scale * logvar).clamp(*SPECTRAL_LOGVAR_RANGE)
        if not self.residual:
            base = self.x_loc
        elif step:
            base = torch.zeros_like(self.x_loc) if x is None else x
        else:
            base = shift_right(x)
        return base + self.out_scale * loc, logvar + 2 * torch.log(self.out_scale)

    def _input_recurrent_stepwise(self, z, feed, features_at):
        """Step-by-step decoding for decoders whose recurrence reads only the past observations,
        ``h_t = rnn_h(phi_x(x_{t-1}))`` (SRNN, Deep AR): ``features_at(h_t, t)`` gives the decoder features
        of step ``t``; ``feed`` as in :meth:`decode_stepwise`."""
        batch = z.shape[:-2]
        state = self.rnn_h.init_state(batch, z)
        fx_prev = z.new_zeros(*batch, self.dense_dim)
        x_prev = x_prev2 = None  # no past at t = 0
        means, vars_ = [], []
        for t in range(z.shape[-2]):
            h, state = self.rnn_h.step(fx_prev, state)
            mean, var = self.expected(*self._out(features_at(h, t), x_prev, step=True))
            x_prev2, x_prev = x_prev, feed(t, mean, var)
            fx_prev = self.phi_x(self._step_features(x_prev, x_prev2))
            means.append(mean), vars_.append(var)
        return torch.stack(means, -2), torch.stack(vars_, -2)

    def z_prior_params(self, z, x, latents=None):
        """Parameters of the prior of ``z``, ``p(z_t | z_{<t}, x_{<t}, w)``, teacher-forced on ``z`` (and ``x``)
        for every step at once; ``None`` (the default) means ``N(0, I)`` per step. Subclasses MAY override it and
        MUST when :meth:`model_sites` draws ``z`` from anything but ``N(0, I)``: :meth:`latent_sequence`, the
        separation model's ``z`` sites and KLs and the enhancement model read it. An override written without the
        ``latents`` parameter still works (the base class adds it and ignores it).

        :param torch.Tensor z: ``(*batch, T, z_dim)`` latents.
        :param torch.Tensor x: ``(*batch, T, x_dim)`` sequence the prior of ``z`` conditions on (autoregressive
            priors such as SRNN / VRNN; it may be ``None`` for the others, which ignore it).
        :param dict latents: the static latents by site name (``"v"`` ``(*batch, dim)``: LigHT / HiT-DVAE's
            ``w``), for priors whose prior of ``z`` reads them; the task models pass the values of their own
            ``v`` sites or E-Z steps (the encoder's ``w``). ``None``: the prior's own fallback.
        :returns: ``(loc, scale)``, each ``(*batch, T, z_dim)``, or ``None``.
        """
        return None

    def emission_params(self, z, x, latents):
        """Emission parameters given *all* latents, teacher-forced on ``x``: what the task models decode with
        (their latents come from their own E-Z step, static ones included). Subclasses MAY override it and
        MUST when the decoder reads a static latent (DSAE, LigHT-DVAE read ``latents["v"]``); the default is
        :meth:`decode_params` ``(z, x, None)``.

        :param torch.Tensor z: ``(*batch, T, z_dim)`` latents.
        :param torch.Tensor x: ``(*batch, T, x_dim)`` past of the sequence (autoregressive decoders) or ``None``.
        :param dict latents: every latent by site name (``"z"``, statics such as ``"v"`` ``(*batch, dim)``).
        :returns: ``(loc, logvar)``, each ``(*batch, T, x_dim)`` (``loc`` ``None`` for a spectral emission).
        """
        return self.decode_params(z, x, None)

    # ---------------------------------------------------------------- the prior inside a larger model
    def latent_sequence(self, name, like, var_scale=None):
        """Sample this prior's latents and a *latent* sequence as sites of an enclosing model.

        Call inside the enclosing model's plates (one plate per leading dim of ``like``). The sites
        are the prior's latent sites (``z``, plus ``v`` for DSAE) and ``name`` (event ``(T, x_dim)``),
        jointly distributed as ``p(z) p(name | z)`` of the prior. Densities that read the other
        sequence (``p(z_t | s_{<t})`` in SRNN/VRNN, ``p(s_t | z, s_{<t})``) are evaluated lazily, once
        every value is known, so the sites work under any guide (``poutine.replay``). Without a guide
        (prior predictive draws, an autoguide's initialisation) ``z`` and the sequence are drawn together,
        ancestrally, by :meth:`joint_stepwise` when the prior of ``z`` reads the sequence; a value given to
        one site only (``poutine.condition``, an init strategy) leaves the other drawn given it where the
        factorisation allows, and every density is that of the values the sites end up with.

        :param str name: site name of the sequence (e.g. ``"s"``).
        :param torch.Tensor like: ``(*batch, T, x_dim)`` tensor giving shape, dtype and device.
        :param torch.Tensor var_scale: optional ``(x_dim,)`` factor on the variance of
            ``p(name_t | z, name_{<t})`` (autoregressive priors: from ``t = 1`` on, the first step being
            the start position), e.g. a tracker's calibration of a prior trained on slower motion:
            :func:`pyro_dvae.smoothing.calibrate_var_scale` ``(prior, tracks)`` fits it to rough tracks of the data
            (e.g. detections interpolated over their gaps). A Gaussian autoregressive prior used without it warns
            once (:class:`~pyro_dvae.smoothing.UncalibratedPriorWarning`): its variance is then that of its training
            motion, typically 20-70x too small for faster motion. ``1.0`` keeps the prior's, without the warning.
        :returns: dict of sampled values by site name.
        """
        if self.emission != "gaussian":
            raise ValueError("latent_sequence needs a gaussian-emission prior")
        if like.shape[-1] != self.x_dim:
            raise ValueError(f"{self.name} prior has x_dim={self.x_dim}, the sequence has {like.shape[-1]}")
        warn_uncalibrated(self, var_scale)
        cell, out = {}, {}
        if "v" in self.latent_sites:
            zeros = like.new_zeros(*like.shape[:-2], self.v_dim)
            out["v"] = pyro.sample("v", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
        z_like = like.new_zeros(*like.shape[:-1], self.z_dim)
        if var_scale is not None:
            var_scale = torch.as_tensor(var_scale, dtype=like.dtype, device=like.device)
        sd_scale = None if var_scale is None else var_scale.sqrt()
        ar = self.autoregressive

        def z_params(z):
            if name not in cell and self.autoregressive:
                raise ValueError(f"the {self.name} prior of z reads {name!r}: provide both through a guide")
            return self.z_prior_params(z, cell.get(name))

        pending = {}
        if self.z_prior_params(z_like, like) is None:
            z_dist = standard_normal_steps(z_like)
        else:
            joint = None
            if ar:  # z reads the sequence: without a guide both are drawn together
                joint = self._joint_sampler(like, sd_scale, lambda eps, feed: self.joint_stepwise(eps, feed, out),
                                            pending)
            z_dist = SequentialNormal(z_params, z_like, joint)
        out["z"] = pyro.sample("z", z_dist.to_event(1))

        def x_params(x):
            loc, logvar = self.emission_params(out["z"], x, out)
            return loc, scale_dynamics_var(torch.exp(0.5 * logvar), sd_scale, ar)

        def x_sample(eps):
            z = out["z"]
            if pending.get("z") is z:  # drawn with z by joint_stepwise
                return pending["x"]
            if ar:
                step_sd = lambda t, v: v.sqrt() if sd_scale is None or t == 0 else v.sqrt() * sd_scale  # noqa: E731
                mean, var = self.stepwise_decode(z, lambda t, m, v: m + step_sd(t, v) * eps[..., t, :])
            else:
                mean, var = self.expected(*self.emission_params(z, None, out))
            var = scale_dynamics_var(var, var_scale, ar)
            x = mean + var.sqrt() * eps
            return x, mean, var.sqrt()

        out[name] = cell[name] = pyro.sample(name, SequentialNormal(x_params, like, x_sample).to_event(1))
        self._settle_joint(pending, z_dist, out["z"], out[name])
        return out

    # ---------------------------------------------------------------- helpers for subclasses
    @staticmethod
    def _joint_sampler(like, sd_scale, joint, pending):
        """The ``sample_fn`` of the ``z`` site of :meth:`latent_sequence` for a prior whose ``z`` prior reads the
        sequence: ``joint(eps, feed)`` (:meth:`joint_stepwise`) draws ``z`` and the sequence (noise
        ``sd_scale``-scaled from ``t = 1`` on, as ``var_scale`` scales the variance); the sequence's draw, with its
        ``(x, loc, scale)``, waits in ``pending`` for the sequence site."""
        def step_sd(t, v):
            return v.sqrt() if sd_scale is None or t == 0 else v.sqrt() * sd_scale

        def sample(eps):
            noise, xs = torch.randn_like(like), []

            def feed(t, mean_t, var_t):
                xs.append(mean_t + step_sd(t, var_t) * noise[..., t, :])
                return xs[-1]

            z, loc, scale, mean, var = joint(eps, feed)
            sd = torch.stack([step_sd(t, var[..., t, :]) for t in range(var.shape[-2])], -2)
            pending.update(z=z, x=(torch.stack(xs, -2), mean, sd))
            return z, loc, scale

        return sample

    @staticmethod
    def _settle_joint(pending, z_dist, z, x):
        """After the sequence site: when ``z`` is the joint draw but the sequence is not (a value given to that
        site only), the parameters cached at the draw are not those at ``x``: have the density recomputed."""
        if pending.get("z") is z and pending["x"][0] is not x:
            z_dist.unbind()
    def _scheduled_inputs(self, x, predict, ss_prob, stepwise=None):
        """Scheduled sampling: replace each past input ``x_t`` by the model's own prediction (no gradient) with
        probability ``ss_prob``, the choice drawn per step.

        :attr:`ss_mode` ``"parallel"`` [Duckworth et al. 2019]: the prediction is teacher-forced, ``predict(x)``
        (one pass), so the model learns to read one step of its own output. ``"sequential"`` [Bengio et al.
        2015]: the decoder runs one step at a time, ``stepwise(feed)`` (e.g. ``lambda feed:
        self.stepwise_decode(z, feed)``), and the prediction of step ``t`` reads the inputs chosen before it, so
        at ``ss_prob = 1`` the inputs are the decoder's free-running output, the past it reads when it resynthesises
        or generates. Priors that pass no ``stepwise`` use the parallel form.
        """
        if ss_prob <= 0.0:
            return x
        pick = torch.rand(x.shape[:-1], device=x.device) < ss_prob
        if self.ss_mode == "sequential" and stepwise is not None:
            fed = []

            def feed(t, mean, var):
                fed.append(torch.where(pick[..., t, None], mean, x[..., t, :]))
                return fed[-1]

            with torch.no_grad():
                stepwise(feed)
            return torch.stack(fed, -2)
        with torch.no_grad():
            pred = predict(x)
        return torch.where(pick.unsqueeze(-1), pred, x)


def _deprecated_alias(impl, old, new):
    """A deprecated method ``old`` calling ``impl`` (a class's own ``new``, a function or a staticmethod)."""
    static = isinstance(impl, staticmethod)
    fn = impl.__func__ if static else impl

    @functools.wraps(fn)
    def alias(*args, **kwargs):
        warnings.warn(f"DVAE.{old} is deprecated and will be removed in the next release: use {new}",
                      DeprecationWarning, stacklevel=2)
        return fn(*args, **kwargs)

    owner = fn.__qualname__.rpartition(".")[0]
    alias.__name__, alias.__qualname__ = old, f"{owner}.{old}" if owner else old
    alias.__doc__ = f"Deprecated alias of :meth:`{new}` (removed in the next release)."
    return staticmethod(alias) if static else alias


for _old, _new in DEPRECATED_HOOKS.items():
    setattr(DVAE, _old, _deprecated_alias(DVAE.__dict__[_new], _old, _new))
del _old, _new


def _with_latents(hook):
    """``z_prior_params`` written as ``(self, z, x)``: accept and ignore ``latents``."""
    @functools.wraps(hook)
    def z_prior_params(self, z, x, latents=None):
        return hook(self, z, x)

    return z_prior_params


def standard_normal_steps(like):
    """``N(0, I)`` per step with batch ``(*batch, T)`` and event ``(z_dim,)``."""
    return dist.Normal(torch.zeros_like(like), torch.ones_like(like)).to_event(1)


def batch_plates(batch_shape, names=None):
    """One ``pyro.plate`` per leading batch dim (names ``batch`` or ``batch_0, batch_1, ...`` by default), as one
    context manager."""
    if names is None:
        names = ["batch"] if len(batch_shape) == 1 else [f"batch_{i}" for i in range(len(batch_shape))]
    if len(names) != len(batch_shape):
        raise ValueError(f"got {len(names)} plate names for {len(batch_shape)} batch dims")
    stack = ExitStack()
    for i, (name, size) in enumerate(zip(names, batch_shape)):
        stack.enter_context(pyro.plate(name, size, dim=i - len(batch_shape)))
    return stack


def checkpoint_dict(prior, **extra):
    """A prior's checkpoint dictionary (weights, registry name, config) plus ``extra``; a non-finite weight is
    refused."""
    state = {k: v.detach().cpu() for k, v in prior.state_dict().items()}
    for k, v in state.items():
        if not torch.isfinite(v).all():
            raise FloatingPointError(f"refusing to checkpoint a non-finite parameter: {k}")
    return {"format": FORMAT, "version": FORMAT_VERSION, "prior": prior.name, "config": prior.config,
            "state_dict": state, **extra}


def save_checkpoint(ckpt, path):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    os.close(fd)
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
