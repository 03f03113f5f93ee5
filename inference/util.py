# SPDX-License-Identifier: Apache-2.0
"""
Static inspection of a model/guide pair, shared by the inference algorithms:
which sites are marked for enumeration and how deeply plates are nested.
"""

from typing import NamedTuple, Optional

import pyro.poutine as poutine
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites, site_is_subsample

__all__ = [
    "ModelInfo",
    "enumerated_sites",
    "guess_max_plate_nesting",
    "inspect_model",
    "is_latent",
]


class ModelInfo(NamedTuple):
    """
    The result of :func:`inspect_model`.

    :param model_trace: a trace of the model (replayed against the guide when
        one was given); subsample sites are pruned.
    :param guide_trace: a trace of the guide, or ``None``.
    :param list enumerated_sites: see :func:`enumerated_sites`.
    :param int max_plate_nesting: see :func:`guess_max_plate_nesting`.
    """

    model_trace: Trace
    guide_trace: Optional[Trace]
    enumerated_sites: list
    max_plate_nesting: int


def is_latent(site: dict) -> bool:
    """
    :returns: whether a trace node is a latent sample site, i.e. a sample site
        that is neither observed, nor a plate's subsample site, nor marked
        ``infer={"is_auxiliary": True}``.
    """
    return (
        site["type"] == "sample"
        and not site["is_observed"]
        and not site_is_subsample(site)
        and not site["infer"].get("is_auxiliary", False)
    )


def enumerated_sites(model_trace: Trace, guide_trace: Optional[Trace] = None) -> list:
    """
    Names of the sites an enumerating ELBO must sum out: latent model sites
    marked ``infer={"enumerate": ...}`` that the guide does not sample, then
    guide sites marked for enumeration.

    :param model_trace: a trace of the model.
    :param guide_trace: a trace of the guide, or ``None`` for a model alone.
    :rtype: list
    """
    guide_sites = set()
    names = []
    if guide_trace is not None:
        guide_sites = {name for name, site in guide_trace.nodes.items() if site["type"] == "sample"}
    for name, site in model_trace.nodes.items():
        if is_latent(site) and site["infer"].get("enumerate") and name not in guide_sites:
            names.append(name)
    if guide_trace is not None:
        for name, site in guide_trace.nodes.items():
            if is_latent(site) and site["infer"].get("enumerate") and name not in names:
                names.append(name)
    return names


def guess_max_plate_nesting(*traces: Optional[Trace]) -> int:
    """
    The number of batch dimensions used by vectorized plates, i.e. the maximum
    of ``-frame.dim`` over the plate frames of all sample sites; ``0`` if
    there are none. ``None`` traces are ignored.

    :rtype: int
    """
    dims = [
        -frame.dim
        for trace in traces
        if trace is not None
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.dim is not None
    ]
    return max(dims, default=0)


def inspect_model(model, guide, /, *args, **kwargs) -> ModelInfo:
    """
    Runs the guide (if any) and then the model once, without enumeration and
    hidden from any enclosing effect handler, and reports what the inference
    algorithms need to know about the pair. The model is replayed against the
    guide, as in an ELBO evaluation. Pyro parameters created by either are
    initialised in the parameter store as a side effect.

    :param model: a Pyro model.
    :param guide: a Pyro guide, or ``None`` to inspect the model alone.
    :param args: positional arguments for model and guide.
    :param kwargs: keyword arguments for model and guide.
    :rtype: ModelInfo
    """
    guide_trace = None
    with poutine.block():
        if guide is not None:
            guide_trace = prune_subsample_sites(poutine.trace(guide).get_trace(*args, **kwargs))
            model = poutine.replay(model, trace=guide_trace)
        model_trace = prune_subsample_sites(poutine.trace(model).get_trace(*args, **kwargs))
    return ModelInfo(
        model_trace,
        guide_trace,
        enumerated_sites(model_trace, guide_trace),
        guess_max_plate_nesting(model_trace, guide_trace),
    )
