# SPDX-License-Identifier: Apache-2.0
"""
Stochastic variational inference, registered as ``"svi"``, and its variant
with exact enumeration of discrete sites, registered as ``"enum-svi"``.

**References:**

1. *Stochastic Variational Inference*,
   Matthew D. Hoffman, David M. Blei, Chong Wang, John Paisley (2013), JMLR 14.
2. *Black Box Variational Inference*,
   Rajesh Ranganath, Sean Gerrish, David M. Blei (2014), AISTATS.
3. *Pyro: Deep Universal Probabilistic Programming*,
   Eli Bingham et al. (2019), JMLR 20.
4. *Tensor Variable Elimination for Plated Factor Graphs*,
   Fritz Obermeyer et al. (2019), ICML.
"""

import contextlib
import functools
import inspect
import math
import time
from dataclasses import dataclass, fields, replace

import pyro.distributions as dist
import pyro.optim
import pyro.poutine as poutine
import pyro.util
import torch
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from pyro.infer.autoguide.initialization import InitMessenger, init_to_value
from pyro.infer.util import zero_grads
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import biject_to
from tqdm.auto import tqdm

from .registry import InferenceResult, PosteriorSummaries, accepted_options, check_option, register
from .util import inspect_model, is_latent

__all__ = [
    "AUTOGUIDES",
    "LOSSES",
    "MAX_GUIDE_PARAMETERS",
    "SVIConfig",
    "build_elbo",
    "build_guide",
    "check_guide_size",
    "check_task_guide",
    "enum_svi",
    "guide_estimate",
    "is_guide_factory",
    "is_point_mass",
    "svi",
]

#: Guide names accepted by :func:`svi`, mapped to the autoguide class built from the model.
AUTOGUIDES = {
    "auto-normal": AutoNormal,
    "auto-delta": AutoDelta,
    "auto-diagonal-normal": AutoDiagonalNormal,
    "auto-multivariate-normal": AutoMultivariateNormal,
    "auto-lowrank-multivariate-normal": AutoLowRankMultivariateNormal,
}

#: Loss names accepted by :func:`svi`.
LOSSES = ("auto", "trace", "meanfield", "enum")


#: The most parameters a named autoguide whose size grows faster than the latent dimension ``D`` may hold
#: (``auto-multivariate-normal``: a dense ``D x D`` ``scale_tril``; ``auto-lowrank-multivariate-normal``: a
#: ``D x round(sqrt(D))`` covariance factor): 25 million, 100 MB in float32 and about four times that with the
#: gradients and Adam's two moments. :func:`build_guide` refuses a larger one (:func:`check_guide_size`).
MAX_GUIDE_PARAMETERS = 25_000_000

_DENSE_GUIDES = ("auto-multivariate-normal", "auto-lowrank-multivariate-normal")


class _ScaledLowRankMultivariateNormal(AutoLowRankMultivariateNormal):
    """:class:`~pyro.infer.autoguide.AutoLowRankMultivariateNormal` whose covariance factor also starts at
    ``init_scale``: Pyro's draws it from ``N(0, 1 / rank)`` whatever ``init_scale``, a unit standard deviation
    in every coordinate that throws a guide started at a good point (``init_loc_fn``) far from it. Here the
    factor and the diagonal each carry half of ``init_scale**2``."""

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        with torch.no_grad():
            self.cov_factor.mul_(0.5**0.5 * self._init_scale)


def is_guide_factory(guide) -> bool:
    """
    :returns: whether ``guide`` is a guide *factory* rather than a guide: a class (e.g. an
        :class:`~pyro.infer.autoguide.AutoGuide` subclass such as ``AutoIAFNormal``) or a
        :func:`functools.partial` of one, which :func:`build_guide` calls with the model.
    """
    return isinstance(guide, type) or (isinstance(guide, functools.partial) and isinstance(guide.func, type))


def _accepts(factory, name):
    target = factory.func if isinstance(factory, functools.partial) else factory
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def check_guide_size(name, latent_dim):
    """
    Refuses a named autoguide that would not fit in memory: ``auto-multivariate-normal`` holds ``D**2 + 2 D``
    parameters and ``auto-lowrank-multivariate-normal`` ``D (round(sqrt(D)) + 2)`` for ``D`` latent dimensions;
    more than :data:`MAX_GUIDE_PARAMETERS` is a one-line :class:`ValueError` with the sizes and what to use
    instead. Other guides hold ``D`` or ``2 D``, as much as the latents themselves, and are not checked.

    :param str name: a key of :data:`AUTOGUIDES`.
    :param int latent_dim: ``D``, the number of (unconstrained) latent values the guide covers.
    :raises ValueError: for a guide over the limit.
    """
    if name not in _DENSE_GUIDES:
        return
    D = int(latent_dim)
    if name == "auto-multivariate-normal":
        count, shape = D * D + 2 * D, f"a dense {D:,} x {D:,} scale_tril"
        instead = "'auto-lowrank-multivariate-normal', 'auto-normal' or 'auto-delta'"
    else:
        rank = max(int(round(D**0.5)), 1)
        count, shape = D * (rank + 2), f"a {D:,} x {rank:,} covariance factor"
        instead = "'auto-normal', 'auto-diagonal-normal' or 'auto-delta'"
    if count > MAX_GUIDE_PARAMETERS:
        raise ValueError(
            f"guide {name!r} cannot cover this model's {D:,} latent dimensions: it needs {shape}, {count:,} "
            f"parameters ({4 * count / 2**30:.1f} GiB in float32, about 4x that with gradients and Adam's moments), "
            f"over the limit of {MAX_GUIDE_PARAMETERS:,} (MAX_GUIDE_PARAMETERS); use {instead}, or fewer or "
            "shorter sequences"
        )


def _latent_dim(model, init_loc_fn, args, kwargs):
    # the latent size an autoguide sees: its prototype trace (the model under the init strategy), RNG kept
    with torch.no_grad(), poutine.block(), _rng_kept():
        trace = poutine.trace(InitMessenger(init_loc_fn)(model)).get_trace(*args, **kwargs)
    total = 0
    for site in prune_subsample_sites(trace).nodes.values():
        if is_latent(site) and not site["infer"].get("enumerate"):
            value = site["value"]
            total += torch.Size(biject_to(site["fn"].support).inv.forward_shape(value.shape)).numel()
    return total


def build_guide(guide, model, enumerated=(), *, init_values=None, init_scale=None, model_args=None,
                model_kwargs=None):
    """
    Resolves the ``guide`` argument of :func:`svi` (and the ``guide`` setting of the task entry points).

    :param guide: a callable guide (returned unchanged), a key of :data:`AUTOGUIDES`, or a guide factory
        (:func:`is_guide_factory`: a class or a :func:`functools.partial` of one), called with the model and
        those of ``init_loc_fn`` / ``init_scale`` it accepts.
    :param model: the model an autoguide is built from.
    :param enumerated: names of model sites that will be enumerated; an
        autoguide is built on the model with these sites hidden.
    :param dict init_values: site name -> initial value: the guide's location starts there
        (``init_to_value``; other sites: Pyro's fallback). ``None``: the autoguide's default strategy.
    :param float init_scale: the initial scale of a guide that has one (all of :data:`AUTOGUIDES` but
        ``auto-delta``; ``auto-lowrank-multivariate-normal`` starts its covariance factor at this scale too,
        where Pyro's draws it at unit scale). ``None``: the autoguide's default (0.1).
    :param tuple model_args: the model's arguments; with them a named ``auto-multivariate-normal`` or
        ``auto-lowrank-multivariate-normal`` is first checked to fit in memory (:func:`check_guide_size`).
    :param dict model_kwargs: the model's keyword arguments, with ``model_args``.
    :raises ValueError: for an unknown guide name, or a guide too large for the model.
    :raises TypeError: for a guide that is neither a string nor callable.
    """
    if isinstance(guide, str) and guide not in AUTOGUIDES:
        raise ValueError(f"unknown guide {guide!r}; accepted guide names: {', '.join(AUTOGUIDES)}")
    if not isinstance(guide, str) and not callable(guide):
        raise TypeError(
            f"guide must be callable or one of {', '.join(AUTOGUIDES)}; got {type(guide).__name__}"
        )
    if not isinstance(guide, str) and not is_guide_factory(guide):
        return guide
    if enumerated:
        model = poutine.block(model, hide=list(enumerated))
    options = {}
    if init_values is not None:
        options["init_loc_fn"] = init_to_value(values=dict(init_values))
    if init_scale is not None:
        options["init_scale"] = float(init_scale)
    if is_guide_factory(guide):
        return guide(model, **{k: v for k, v in options.items() if _accepts(guide, k)})
    cls = AUTOGUIDES[guide]
    if guide in _DENSE_GUIDES and model_args is not None:
        init_loc_fn = options.get("init_loc_fn", init_to_value(values={}))
        check_guide_size(guide, _latent_dim(model, init_loc_fn, tuple(model_args), dict(model_kwargs or {})))
    if guide == "auto-lowrank-multivariate-normal" and init_scale is not None:
        cls = _ScaledLowRankMultivariateNormal
    return cls(model, **{k: v for k, v in options.items() if _accepts(cls, k)})


def check_task_guide(guide, algo, structured, fix="algo='svi' or 'enum-svi'", context="algo='vem'"):
    """
    Checks the ``guide`` setting of a task's config (tracking, separation, enhancement): ``None`` (the task's
    default guide), a key of :data:`AUTOGUIDES`, a guide factory (:func:`is_guide_factory`) or a callable guide.
    Variational EM iterates the closed-form blocks of the task's own structured guide, so ``algo="vem"`` takes
    ``None`` only. Returns ``guide``.

    :param str algo: the config's algorithm.
    :param str structured: the task's structured guide, for the message (e.g. ``"TrackingGuide"``).
    :param str fix: what to use instead, for the message.
    :param str context: what runs variational EM, for the message.
    :raises ValueError: one line, for an unknown name or a guide with ``algo="vem"``.
    :raises TypeError: for a guide that is neither a string nor callable.
    """
    if guide is None:
        return None
    if isinstance(guide, str):
        if guide not in AUTOGUIDES:
            raise ValueError(f"unknown guide {guide!r}; accepted guide names: {', '.join(AUTOGUIDES)} (or a "
                             "callable guide, or a guide factory such as an AutoGuide class)")
    elif not callable(guide):
        raise TypeError(f"guide must be None, one of {', '.join(AUTOGUIDES)}, a guide factory or a callable guide; "
                        f"got {type(guide).__name__}")
    if algo == "vem":
        shown = guide if isinstance(guide, str) else getattr(guide, "__name__", type(guide).__name__)
        raise ValueError(f"guide={shown!r} with {context}: variational EM iterates the closed-form blocks of the "
                         f"task's structured guide ({structured}) and takes no other guide; use {fix} to fit "
                         "this guide")
    return guide


def guide_estimate(guide, name, *args, num_samples=100, **kwargs):
    """
    A point estimate of the site ``name`` from a fitted guide, without gradients: ``guide.median(*args)``
    for an autoguide (its posterior median, the location in the unconstrained space mapped back); else the
    mean of the site's distribution in one run of the guide (a Normal's location, a Delta's value), or, for a
    distribution without a mean, the mean of ``num_samples`` draws.

    :param guide: a fitted guide.
    :param str name: the site.
    :param args: the guide's arguments (the model's).
    :raises KeyError: if the guide has no such site.
    :rtype: torch.Tensor
    """
    with torch.no_grad():
        median = getattr(guide, "median", None)
        if callable(median):
            values = median(*args, **kwargs)
            if name in values:
                return values[name].detach()
        with poutine.block():
            site = _guide_trace(guide, args, kwargs).nodes.get(name)
        if site is None or site["type"] != "sample":
            raise KeyError(f"the guide has no site {name!r}")
        try:
            mean = site["fn"].mean
            if torch.isfinite(mean).all():
                return mean.detach()
        except NotImplementedError:
            pass
        draws = [site["value"]]
        with poutine.block():
            for _ in range(num_samples - 1):
                draws.append(_guide_trace(guide, args, kwargs).nodes[name]["value"])
        return _as_float(torch.stack(draws)).mean(0)


def build_elbo(loss, enumerated, num_particles=1, max_plate_nesting=0) -> ELBO:
    """
    Resolves the ``loss`` argument of :func:`svi`.

    :param loss: an :class:`~pyro.infer.elbo.ELBO` instance (returned
        unchanged) or one of :data:`LOSSES`.
    :param list enumerated: names of the sites marked for enumeration.
    :param int num_particles: particles per ELBO estimate.
    :param int max_plate_nesting: passed to the ELBO.
    :raises ValueError: for an unknown name, for ``"enum"`` without any
        enumerated site, and for ``"meanfield"`` with enumerated sites.
    """
    if isinstance(loss, ELBO):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected an ELBO instance or one of {', '.join(LOSSES)}")
    if loss == "auto":
        loss = "enum" if enumerated else "trace"
    if loss == "enum" and not enumerated:
        raise ValueError(
            "enumeration (loss='enum' or algorithm 'enum-svi') needs at least one latent site marked "
            "infer={'enumerate': 'parallel'} (or 'sequential') that the guide does not sample; "
            "this model has none"
        )
    if loss == "meanfield" and enumerated:
        raise ValueError(
            f"loss='meanfield' (TraceMeanField_ELBO) does not support enumerated sites {enumerated}; "
            "use loss='enum' or 'auto'"
        )
    cls = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO, "enum": TraceEnum_ELBO}[loss]
    return cls(num_particles=num_particles, max_plate_nesting=max_plate_nesting)


def _step(elbo, optim, model, guide, args, kwargs, step):
    # Like pyro.infer.SVI.step, but checks the loss before updating parameters,
    # so that after a FloatingPointError the store holds the last finite state.
    with poutine.trace(param_only=True) as capture:
        loss = float(elbo.loss_and_grads(model, guide, *args, **kwargs))
    params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
    if not math.isfinite(loss):
        zero_grads(params)
        raise FloatingPointError(
            f"svi: non-finite loss {loss} at step {step}; parameters keep their values from before this step"
        )
    optim(params)
    zero_grads(params)
    return loss


#: Distribution wrappers that keep a point mass a point mass (a reshape, a mask, an expand or a
#: deterministic transform of a :class:`~pyro.distributions.Delta`).
_POINT_MASS_WRAPPERS = (
    torch.distributions.Independent,
    torch.distributions.TransformedDistribution,
    dist.MaskedDistribution,
    dist.ExpandedDistribution,
)


def is_point_mass(fn) -> bool:
    """
    :returns: whether a sample site's distribution is a point mass: a
        :class:`~pyro.distributions.Delta`, possibly inside
        :class:`~torch.distributions.Independent`, masked, expanded or
        transformed distributions (e.g. the sites of
        :class:`~pyro.infer.autoguide.AutoDelta`).
    """
    while isinstance(fn, _POINT_MASS_WRAPPERS):
        fn = fn.base_dist
    return isinstance(fn, dist.Delta)


@contextlib.contextmanager
def _rng_kept():
    # torch (and CUDA, if already in use), numpy and random generators are restored on exit
    state = pyro.util.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        pyro.util.set_rng_state(state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _guide_trace(guide, args, kwargs):
    return prune_subsample_sites(poutine.trace(guide).get_trace(*args, **kwargs))


def _latent_sites(trace):
    return {
        name: site
        for name, site in trace.nodes.items()
        if is_latent(site) and not site["infer"].get("enumerate")
    }


def _draws_at_random(trace):
    # a point mass guide draws every unobserved site, auxiliary ones included, from a point mass
    return any(
        site["type"] == "sample" and not site["is_observed"] and not is_point_mass(site["fn"])
        for site in trace.nodes.values()
    )


def _as_float(value):
    value = value.detach()
    return value if value.is_floating_point() else value.to(torch.get_default_dtype())


def _exact(value):
    value = _as_float(value)
    return {"mean": value.clone(), "std": torch.zeros_like(value)}


def _summarize(guide, num_samples, args, kwargs):
    """
    Summaries of the fitted guide: ``(posterior, reason)``, where ``reason``
    says why ``posterior`` is empty (else ``None``). A guide that draws every
    site from a point mass is summarised exactly from one run (``mean`` = the
    value, ``std`` = 0); any other guide by the ``mean`` and ``std`` of
    ``num_samples`` guide samples, a site whose samples are all equal again
    exactly. ``num_samples=None``: the point-mass summaries, or none for other
    guides (the check run leaves the random generators as they were).
    """
    if num_samples == 0:
        return {}, "num_posterior_samples=0 turns posterior summaries off"
    with torch.no_grad(), poutine.block(), _rng_kept() if num_samples is None else contextlib.nullcontext():
        first = _guide_trace(guide, args, kwargs)
    latent = _latent_sites(first)
    if not _draws_at_random(first):
        return {name: _exact(site["value"]) for name, site in latent.items()}, None
    if num_samples is None:
        return {}, (
            f"the guide ({type(guide).__name__}) is not a point mass, so its summaries come from guide "
            "samples: pass num_posterior_samples=N (e.g. 100)"
        )
    samples = {name: [site["value"]] for name, site in latent.items()}
    with torch.no_grad(), poutine.block():
        for _ in range(num_samples - 1):
            for name, site in _latent_sites(_guide_trace(guide, args, kwargs)).items():
                samples.setdefault(name, []).append(site["value"])  # a guide may change its sites
    posterior = {}
    for name, values in samples.items():
        if all(torch.equal(v, values[0]) for v in values[1:]):
            posterior[name] = _exact(values[0])
            continue
        value = _as_float(torch.stack(values))
        posterior[name] = {"mean": value.mean(0), "std": value.std(0, correction=1 if num_samples > 1 else 0)}
    return posterior, None


@dataclass
class SVIConfig:
    """
    The options of :func:`svi` (and of ``enum-svi``, without ``loss``). Each
    is also accepted by name: ``svi(model, guide, x, num_steps=500)``,
    ``inference.run("svi", model, guide, x, num_steps=500)``.

    :ivar int num_steps: number of gradient steps.
    :ivar float lr: learning rate of the default optimiser (ignored when
        ``optim`` is given).
    :ivar optim: a :class:`~pyro.optim.optim.PyroOptim`; defaults to
        ``Adam({"lr": lr})``, or ``ClippedAdam({"lr": lr, "clip_norm": clip_norm})``
        when ``clip_norm`` is set.
    :ivar loss: ``"auto"`` (``TraceEnum_ELBO`` if the model has enumerated
        sites, else ``Trace_ELBO``), ``"trace"``, ``"meanfield"``
        (``TraceMeanField_ELBO``), ``"enum"`` or an
        :class:`~pyro.infer.elbo.ELBO` instance (used as given).
    :ivar int num_particles: particles per ELBO estimate.
    :ivar int max_plate_nesting: passed to the ELBO; guessed from the traces
        when ``None``.
    :ivar float clip_norm: gradient norm clipping for the default optimiser.
    :ivar int num_posterior_samples: summaries of every latent,
        non-enumerated site of the fitted guide, as ``posterior[site]["mean"]``
        and ``["std"]``. A guide that draws every site from a point mass (e.g.
        ``"auto-delta"``) is summarised exactly from one guide run, whatever
        this number: ``mean`` is the value, ``std`` zero. Any other guide, if
        positive, by the ``mean`` and ``std`` of this many guide samples (a site
        whose samples are all equal again exactly). ``None`` (default): other
        guides get no summaries (``posterior`` is empty, and a missing site
        raises a :class:`KeyError` that says to pass ``num_posterior_samples``);
        the point-mass check does not touch the random generators. ``0``: no
        summaries at all.
    :ivar callable callback: ``callback(step, result_so_far)`` called after
        each step; returning ``True`` stops the run.
    :ivar bool progress: show a tqdm progress bar.
    :ivar dict model_kwargs: keyword arguments passed to model and guide.
    """

    num_steps: int = 1000
    lr: float = 1e-2
    optim: object = None
    loss: object = "auto"
    num_particles: int = 1
    max_plate_nesting: int = None
    clip_norm: float = None
    num_posterior_samples: int = None
    callback: object = None
    progress: bool = False
    model_kwargs: dict = None

    def __post_init__(self):
        # the registry's value checks (one-line ValueError naming the option and its range)
        for f in fields(self):
            value = getattr(self, f.name)
            if not (value is None and f.default is None):
                check_option(f.name, value)


@register("svi", options=SVIConfig)
def svi(model, guide, *args, config=None, **overrides) -> InferenceResult:
    """
    Fits a guide by stochastic gradient descent on a Monte-Carlo estimate of
    the negative ELBO [1, 2], with Pyro's ELBO implementations [3]. Discrete
    sites marked ``infer={"enumerate": "parallel"}`` in the model and not
    sampled by the guide are summed out exactly by
    :class:`~pyro.infer.traceenum_elbo.TraceEnum_ELBO` [4].

    Before the first step the guide and model are run once (see
    :func:`~pyro_dvae.inference.util.inspect_model`) to find enumerated sites
    and guess ``max_plate_nesting``. Each step checks the loss before
    updating parameters: a non-finite loss raises :class:`FloatingPointError`
    and leaves the parameters as they were.

    Example::

        def model(x):
            mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
            with pyro.plate("data", len(x)):
                pyro.sample("x", dist.Normal(mu, 0.5), obs=x)

        result = svi(model, "auto-normal", x, num_steps=500, lr=0.05, num_posterior_samples=1000)
        result.posterior["mu"]["mean"], result.posterior["mu"]["std"]
        result = svi(model, "auto-delta", x, config=SVIConfig(num_steps=500, lr=0.05))
        result.posterior["mu"]["mean"]  # the fitted point, std 0: no samples needed

    :param callable model: a Pyro model.
    :param guide: a callable guide (function, ``PyroModule``, autoguide
        instance), the name of an autoguide to build from the model, one of
        :data:`AUTOGUIDES`, or a guide factory (a class such as
        ``AutoIAFNormal``, or a :func:`functools.partial` of one, called with
        the model). A named or factory-made autoguide is built on the model
        with its enumerated sites hidden; a named
        ``auto-multivariate-normal`` / ``auto-lowrank-multivariate-normal``
        too large for memory is refused (:func:`check_guide_size`).
    :param args: positional arguments passed to model and guide.
    :param SVIConfig config: the options (steps, learning rate, optimiser,
        loss, particles, posterior summaries, callback, ...).
    :param overrides: fields of :class:`SVIConfig` replacing those of
        ``config`` (``num_steps=500``, ``lr=0.05``, ...).
    :returns: losses and wall times per step; ``info`` holds ``elbo`` (the ELBO
        class name), ``elbo_object``, ``optim``, ``enumerated_sites``,
        ``max_plate_nesting`` and ``num_steps`` (steps actually run).
    :rtype: ~pyro_dvae.inference.registry.InferenceResult
    :raises FloatingPointError: if a step gives a non-finite loss.
    """
    cfg = replace(config, **overrides) if config is not None else SVIConfig(**overrides)
    optim, max_plate_nesting, progress = cfg.optim, cfg.max_plate_nesting, cfg.progress
    model_kwargs = dict(cfg.model_kwargs or {})
    if isinstance(guide, str) or is_guide_factory(guide):
        enumerated = inspect_model(model, None, *args, **model_kwargs).enumerated_sites
        guide = build_guide(guide, model, enumerated, model_args=args, model_kwargs=model_kwargs)
    else:
        guide = build_guide(guide, model)
    found = inspect_model(model, guide, *args, **model_kwargs)
    if max_plate_nesting is None:
        max_plate_nesting = found.max_plate_nesting
    elbo = build_elbo(cfg.loss, found.enumerated_sites, cfg.num_particles, max_plate_nesting)
    if optim is None:
        optim = (
            pyro.optim.ClippedAdam({"lr": cfg.lr, "clip_norm": cfg.clip_norm})
            if cfg.clip_norm
            else pyro.optim.Adam({"lr": cfg.lr})
        )
    elif not isinstance(optim, pyro.optim.PyroOptim):
        raise TypeError(f"optim must be a pyro.optim.PyroOptim, got {type(optim).__name__}")

    result = InferenceResult(
        "svi",
        guide,
        info={
            "elbo": type(elbo).__name__,
            "elbo_object": elbo,
            "optim": getattr(optim, "pt_optim_constructor", type(optim)).__name__,
            "enumerated_sites": found.enumerated_sites,
            "max_plate_nesting": max_plate_nesting,
            "num_steps": 0,
        },
    )
    with tqdm(range(cfg.num_steps), desc="svi", disable=not progress) as steps:
        for step in steps:
            start = time.perf_counter()
            value = _step(elbo, optim, model, guide, args, model_kwargs, step)
            result.iter_times.append(time.perf_counter() - start)
            result.losses.append(value)
            result.info["num_steps"] = step + 1
            if progress:
                steps.set_postfix(loss=f"{value:.4g}", refresh=False)
            if cfg.callback is not None and cfg.callback(step, result):
                break

    posterior, reason = _summarize(guide, cfg.num_posterior_samples, args, model_kwargs)
    result.posterior = PosteriorSummaries(posterior, reason=reason)
    return result


def enum_svi(model, guide, *args, config=None, **overrides) -> InferenceResult:
    """
    :func:`svi` with ``loss="enum"``: discrete sites marked for enumeration
    are summed out exactly by :class:`~pyro.infer.traceenum_elbo.TraceEnum_ELBO`.
    Accepts the options of :func:`svi` except ``loss`` (a ``config``'s
    ``loss`` is replaced), and raises :class:`ValueError` if the model has no
    enumerated site.

    Example::

        @config_enumerate
        def mixture(x):
            locs = pyro.sample("locs", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
            with pyro.plate("data", len(x)):
                z = pyro.sample("z", dist.Categorical(torch.ones(2) / 2))
                pyro.sample("x", dist.Normal(locs[z], 1.0), obs=x)

        result = enum_svi(mixture, "auto-normal", x, num_steps=200)
    """
    if "loss" in overrides:
        raise TypeError("enum_svi() got an unexpected keyword argument 'loss' (its loss is 'enum')")
    cfg = replace(config, **overrides, loss="enum") if config is not None else SVIConfig(**overrides, loss="enum")
    result = svi(model, guide, *args, config=cfg)
    result.algorithm = "enum-svi"
    return result


register("enum-svi", options={k: v for k, v in accepted_options("svi").items() if k != "loss"})(enum_svi)
