# SPDX-License-Identifier: Apache-2.0
"""
A registry of inference algorithms sharing one calling convention::

    result = algorithm(model, guide, *args, **options)

where ``options`` are the algorithm's keyword-only parameters (or, for an
algorithm registered with ``options=``, the fields of its options dataclass,
e.g. :class:`~pyro_dvae.inference.svi.SVIConfig`) and ``result`` is an
:class:`InferenceResult`. :func:`run` checks option names against
:func:`accepted_options` and option values against :data:`OPTION_CONSTRAINTS`
before calling it, so that a typo or an out-of-range value fails at once with a
message naming the option, rather than deep inside an optimisation loop.
"""

import dataclasses
import inspect
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.distributions import constraints

__all__ = [
    "OPTION_CONSTRAINTS",
    "InferenceResult",
    "PosteriorSummaries",
    "UnknownAlgorithmError",
    "accepted_options",
    "available",
    "check_option",
    "get",
    "register",
    "run",
    "unregister",
]

_ALGORITHMS: dict[str, Callable] = {}
_EXTRA_CONSTRAINTS: dict[str, dict[str, constraints.Constraint]] = {}
_DECLARED_OPTIONS: dict[str, dict[str, Any]] = {}

#: Value constraints applied to every algorithm that accepts an option of this
#: name. An option whose default is ``None`` may always be passed as ``None``.
OPTION_CONSTRAINTS: dict[str, constraints.Constraint] = {
    "num_steps": constraints.positive_integer,
    "num_iters": constraints.positive_integer,
    "num_particles": constraints.positive_integer,
    "num_elbo_particles": constraints.positive_integer,
    "num_posterior_samples": constraints.nonnegative_integer,
    "max_plate_nesting": constraints.nonnegative_integer,
    "lr": constraints.positive,
    "clip_norm": constraints.positive,
    "tol": constraints.nonnegative,
}

_DESCRIPTIONS = {
    constraints.positive_integer: "a positive integer",
    constraints.nonnegative_integer: "a non-negative integer",
    constraints.positive: "a positive real number",
    constraints.nonnegative: "a non-negative real number",
}


class UnknownAlgorithmError(KeyError, ValueError):
    """
    Raised by :func:`get` and :func:`run` for a name that is not registered.
    It is both a :class:`KeyError` and a :class:`ValueError`.
    """

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class PosteriorSummaries(dict):
    """
    The ``posterior`` of an :class:`InferenceResult`: a :class:`dict` of site
    name -> dict of summary tensors, whose missing keys raise a
    :class:`KeyError` that lists the summarised sites and, when given,
    ``reason`` (why there are none, e.g. how to ask for them).
    """

    def __init__(self, *args, reason=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.reason = reason

    def __missing__(self, key):
        message = f"no posterior summary for site {key!r} (summarised sites: {sorted(self)})"
        raise KeyError(f"{message}; {self.reason}" if self.reason else message)


@dataclass
class InferenceResult:
    """
    The outcome of one inference run.

    :param str algorithm: the registered name of the algorithm that produced it.
    :param guide: the fitted guide object.
    :param list losses: negative ELBO estimate per iteration, as floats.
    :param list iter_times: wall-clock seconds per iteration.
    :param dict posterior: site name -> dict of summary tensors (e.g. ``mean``,
        ``std``); may be empty (a :class:`PosteriorSummaries` says why in the
        :class:`KeyError` of a missing site).
    :param dict info: free-form details (ELBO used, number of steps, ...).
    """

    algorithm: str
    guide: Any = None
    losses: list[float] = field(default_factory=list)
    iter_times: list[float] = field(default_factory=list)
    posterior: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def elbo(self) -> list[float]:
        """ELBO estimate per iteration (``-losses``)."""
        return [-loss for loss in self.losses]

    @property
    def final_loss(self) -> float:
        """The last recorded loss, or ``nan`` if no iteration was run."""
        return self.losses[-1] if self.losses else math.nan

    @property
    def seconds_per_iter(self) -> float:
        """Mean wall-clock seconds per iteration, or ``nan`` if no iteration was run."""
        return sum(self.iter_times) / len(self.iter_times) if self.iter_times else math.nan

    def to_dict(self) -> dict:
        """
        :returns: a JSON-serialisable summary (the guide itself is represented
            by its class name; tensors become nested lists).
        :rtype: dict
        """
        return {
            "algorithm": self.algorithm,
            "guide": type(self.guide).__name__,
            "losses": [float(x) for x in self.losses],
            "elbo": [float(x) for x in self.elbo],
            "iter_times": [float(x) for x in self.iter_times],
            "final_loss": float(self.final_loss),
            "seconds_per_iter": float(self.seconds_per_iter),
            "posterior": _to_builtin(self.posterior),
            "info": _to_builtin(self.info),
        }


def _to_builtin(x):
    if isinstance(x, torch.Tensor):
        return x.detach().tolist()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, dict):
        return {str(k): _to_builtin(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_to_builtin(v) for v in x]
    if isinstance(x, numbers.Number) or hasattr(x, "tolist"):  # numpy scalars and arrays
        return x.tolist() if hasattr(x, "tolist") else float(x)
    return getattr(x, "__qualname__", None) or type(x).__name__


def register(name: str, *, option_constraints: dict | None = None, options=None):
    """
    Decorator registering an inference algorithm under ``name``.

    The algorithm must have the signature ``fn(model, guide, *args, **options)``
    with its options declared as keyword-only parameters, and return an
    :class:`InferenceResult`. An algorithm with many options may instead
    take ``fn(model, guide, *args, config=None, **overrides)`` and declare
    them with ``options`` (as :func:`~pyro_dvae.inference.svi.svi` does with
    :class:`~pyro_dvae.inference.svi.SVIConfig`); :func:`run` then also passes
    a ``config=`` through.

    Example::

        @register("my-algorithm")
        def my_algorithm(model, guide, *args, num_steps=10):
            ...
            return InferenceResult("my-algorithm", guide, losses)

    :param str name: the public name.
    :param dict option_constraints: extra option name ->
        :class:`~torch.distributions.constraints.Constraint` checks for this
        algorithm, on top of :data:`OPTION_CONSTRAINTS`.
    :param options: the accepted options, when they are not the keyword-only
        parameters of the function: a dataclass (its fields and defaults) or a
        dict of option name -> default.
    :raises ValueError: if ``name`` is already taken.
    """
    if options is not None and dataclasses.is_dataclass(options):
        options = {f.name: f.default for f in dataclasses.fields(options)}
    elif options is not None:
        options = dict(options)
    if not isinstance(name, str) or not name:
        raise ValueError(f"algorithm name must be a non-empty string, got {name!r}")

    def decorator(fn):
        if name in _ALGORITHMS:
            raise ValueError(f"inference algorithm {name!r} is already registered")
        if not callable(fn):
            raise TypeError(f"cannot register {fn!r} as {name!r}: not callable")
        _ALGORITHMS[name] = fn
        _EXTRA_CONSTRAINTS[name] = dict(option_constraints or {})
        if options is not None:
            _DECLARED_OPTIONS[name] = options
        return fn

    return decorator


def unregister(name: str) -> Callable:
    """
    Removes a registered algorithm.

    :returns: the function that was registered.
    :raises UnknownAlgorithmError: if ``name`` is not registered.
    """
    fn = get(name)
    del _ALGORITHMS[name]
    del _EXTRA_CONSTRAINTS[name]
    _DECLARED_OPTIONS.pop(name, None)
    return fn


def available() -> list[str]:
    """:returns: the sorted list of registered algorithm names."""
    return sorted(_ALGORITHMS)


def get(name: str) -> Callable:
    """
    :returns: the algorithm function registered under ``name``.
    :raises UnknownAlgorithmError: (a ``KeyError`` and ``ValueError``) listing
        the available names.
    """
    try:
        return _ALGORITHMS[name]
    except (KeyError, TypeError):
        raise UnknownAlgorithmError(
            f"unknown inference algorithm {name!r}; available: {', '.join(available())}"
        ) from None


def accepted_options(name: str) -> dict[str, Any]:
    """
    :returns: the accepted options of an algorithm, mapped to their defaults:
        its keyword-only parameters, or the options it was registered with.
    :rtype: dict
    """
    fn = get(name)
    if name in _DECLARED_OPTIONS:
        return dict(_DECLARED_OPTIONS[name])
    signature = inspect.signature(fn)
    return {
        p.name: p.default for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def check_option(option, value, constraint=None):
    """
    Checks one option value against ``constraint`` (default: the one of
    :data:`OPTION_CONSTRAINTS` for that name; no check without one).

    :raises ValueError: ``option <name>=<value> is out of range: expected ...``.
    """
    constraint = constraint if constraint is not None else OPTION_CONSTRAINTS.get(option)
    if constraint is not None:
        _check_value(option, value, constraint)


def _check_value(option, value, constraint):
    description = _DESCRIPTIONS.get(constraint, str(constraint))
    integral = constraint.is_discrete
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        ok = not integral or not value.is_floating_point()
        ok = ok and bool(constraint.check(value.detach()))
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        ok = False
    elif integral and not isinstance(value, numbers.Integral):
        ok = False
    else:
        ok = bool(constraint.check(torch.tensor(float(value))))
    if not ok:
        raise ValueError(f"option {option}={value!r} is out of range: expected {description}")


def _check_options(name, given):
    accepted = accepted_options(name)
    if name in _DECLARED_OPTIONS:  # a config object is passed through as it is (it checks itself)
        given = {k: v for k, v in given.items() if k != "config"}
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise TypeError(
            f"inference algorithm {name!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"accepted options: {', '.join(sorted(accepted))}"
        )
    checks = {**OPTION_CONSTRAINTS, **_EXTRA_CONSTRAINTS.get(name, {})}
    for option, value in given.items():
        if option not in checks or (value is None and accepted[option] is None):
            continue
        _check_value(option, value, checks[option])


def run(name: str, model, guide, /, *args, **options) -> InferenceResult:
    """
    Runs a registered algorithm after validating its options.

    Example::

        result = run("svi", model, "auto-normal", data, num_steps=500, lr=0.05)
        print(result.final_loss, result.seconds_per_iter)

    :param str name: a name from :func:`available`.
    :param model: a Pyro model.
    :param guide: a guide, in any form the algorithm accepts.
    :param args: positional arguments passed to model and guide.
    :param options: the algorithm's keyword-only options.
    :raises UnknownAlgorithmError: for an unknown ``name``.
    :raises TypeError: for an option the algorithm does not accept.
    :raises ValueError: for an option value out of range.
    :rtype: InferenceResult
    """
    fn = get(name)
    _check_options(name, options)
    result = fn(model, guide, *args, **options)
    if not isinstance(result, InferenceResult):
        raise TypeError(f"inference algorithm {name!r} returned {type(result).__name__}, not InferenceResult")
    return result
