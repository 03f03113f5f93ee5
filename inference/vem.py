# SPDX-License-Identifier: Apache-2.0
"""
Variational EM as coordinate ascent over the blocks of a structured guide,
registered as ``"vem"``.

**References:**

1. *Variational Inference: A Review for Statisticians*,
   David M. Blei, Alp Kucukelbir, Jon D. McAuliffe (2017), JASA 112(518).
2. *A View of the EM Algorithm that Justifies Incremental, Sparse, and Other Variants*,
   Radford M. Neal, Geoffrey E. Hinton (1998), in Learning in Graphical Models.
3. *Pattern Recognition and Machine Learning*, Christopher M. Bishop (2006), chapter 10.
"""

import math
import time

import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from tqdm.auto import tqdm

from .blocks import Block, GradientBlock
from .registry import InferenceResult, register
from .util import inspect_model

__all__ = ["schedule", "vem"]


def schedule(model, guide, blocks=None) -> list:
    """
    The update order used by :func:`vem`: ``blocks`` if given, else
    ``guide.blocks``, followed by the blocks in ``model.m_steps`` (if the model
    has that attribute) that are not already scheduled.

    :raises ValueError: if neither ``blocks`` nor ``guide.blocks`` exists.
    :raises TypeError: if an entry is not a :class:`~pyro_dvae.inference.blocks.Block`.
    :rtype: list
    """
    if blocks is None:
        blocks = getattr(guide, "blocks", None)
        if blocks is None:
            raise ValueError(
                "vem needs a schedule of blocks: the guide must be a StructuredGuide "
                "(or have a .blocks attribute), or the option blocks=[...] must be given"
            )
    order = list(blocks)
    for block in getattr(model, "m_steps", None) or ():
        if not any(block is b for b in order):
            order.append(block)
    for block in order:
        if not isinstance(block, Block):
            raise TypeError(f"vem schedule entries must be Block instances, got {type(block).__name__}")
    return order


class _MonteCarloELBO:
    # Trace_ELBO (or TraceEnum_ELBO when the pair has enumerated sites) estimate,
    # built on first use so that the model/guide inspection only runs if needed.
    def __init__(self, num_particles):
        self.num_particles = num_particles
        self.elbo = None
        self.enumerated_sites = None

    def __call__(self, model, guide, *args, **kwargs):
        if self.elbo is None:
            found = inspect_model(model, guide, *args, **kwargs)
            self.enumerated_sites = found.enumerated_sites
            cls = TraceEnum_ELBO if found.enumerated_sites else Trace_ELBO
            self.elbo = cls(num_particles=self.num_particles, max_plate_nesting=found.max_plate_nesting)
        return -self.elbo.loss(model, guide, *args, **kwargs)


@register("vem")
def vem(
    model,
    guide,
    *args,
    num_iters=50,
    blocks=None,
    elbo="auto",
    num_elbo_particles=1,
    tol=None,
    callback=None,
    progress=False,
    model_kwargs=None,
) -> InferenceResult:
    """
    Variational expectation-maximisation by block coordinate ascent [1, 2].
    Each iteration calls ``block.update(model, guide, *args, **model_kwargs)``
    for every block of the schedule (see :func:`schedule`): E-blocks improve
    one factor of the variational distribution, M-blocks the model
    parameters, each with all others held fixed. With exact (closed-form)
    updates every step is a CAVI step [1, 3] and the ELBO never decreases.
    The algorithm knows nothing about particular models: everything
    task-specific lives in the blocks.

    After the updates, the ELBO is evaluated and ``-ELBO`` recorded as the
    iteration's loss.

    Example::

        guide = StructuredGuide([q_z1, q_z2], exact_elbo=closed_form_elbo)
        model.m_steps = [ClosedFormBlock("sigma2", update_sigma2, kind="m")]
        result = vem(model, guide, x, num_iters=100, tol=1e-8)

    :param model: the model; an attribute ``m_steps`` (list of blocks) is
        appended to the schedule.
    :param guide: the guide, normally a
        :class:`~pyro_dvae.inference.blocks.StructuredGuide`.
    :param args: positional arguments passed to model, guide and block updates.
    :param int num_iters: maximum number of iterations.
    :param list blocks: explicit schedule, replacing ``guide.blocks``.
    :param elbo: how to evaluate the ELBO after each iteration: ``"auto"``
        (``guide.elbo(model, *args)`` when it returns a value, else Monte
        Carlo), ``"exact"`` (``guide.elbo`` only), ``"mc"`` (Monte Carlo with
        ``Trace_ELBO``, or ``TraceEnum_ELBO`` when the pair has enumerated
        sites), or a callable ``elbo(model, guide, *args, **model_kwargs)``
        returning the ELBO.
    :param int num_elbo_particles: particles of the Monte-Carlo estimate.
    :param float tol: stop when the relative change of the ELBO between two
        iterations is below ``tol``.
    :param callable callback: ``callback(iteration, result_so_far)`` called
        after each iteration; returning ``True`` stops the run.
    :param bool progress: show a tqdm progress bar.
    :param dict model_kwargs: keyword arguments passed to model, guide and
        block updates.
    :returns: losses (``-ELBO``) and wall times per iteration; ``info`` holds
        ``num_iters`` (iterations run), ``converged``, ``schedule`` (block
        names), ``elbo`` (``"exact"``, ``"callable"`` or the Monte-Carlo ELBO
        class name) and ``num_skipped`` (block name -> skipped steps, for
        every :class:`~pyro_dvae.inference.blocks.GradientBlock`).
    :rtype: ~pyro_dvae.inference.registry.InferenceResult
    :raises FloatingPointError: if the ELBO is not finite.
    """
    model_kwargs = dict(model_kwargs or {})
    order = schedule(model, guide, blocks)
    exact = getattr(guide, "elbo", None) if elbo in ("auto", "exact") else None
    exact = exact if callable(exact) else None
    if elbo == "exact" and exact is None:
        raise ValueError("elbo='exact' needs a guide with an elbo() method, e.g. a StructuredGuide")
    monte_carlo = _MonteCarloELBO(num_elbo_particles)
    if callable(elbo):
        evaluate, method = elbo, "callable"
    elif elbo in ("auto", "exact", "mc"):
        evaluate, method = None, None
    else:
        raise ValueError(f"unknown elbo {elbo!r}; expected 'auto', 'exact', 'mc' or a callable")

    result = InferenceResult(
        "vem",
        guide,
        info={"num_iters": 0, "converged": False, "schedule": [block.name for block in order]},
    )
    with tqdm(range(num_iters), desc="vem", disable=not progress) as iters:
        for iteration in iters:
            start = time.perf_counter()
            for block in order:
                block.update(model, guide, *args, **model_kwargs)

            if evaluate is None:
                value = exact(model, *args, **model_kwargs) if exact is not None else None
                if value is not None:
                    method = "exact"
                elif elbo == "exact":
                    raise ValueError("elbo='exact' but guide.elbo() returned None (no closed-form ELBO)")
                else:
                    value = monte_carlo(model, guide, *args, **model_kwargs)
                    method = type(monte_carlo.elbo).__name__
            else:
                value = evaluate(model, guide, *args, **model_kwargs)
            value = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            result.iter_times.append(time.perf_counter() - start)
            if not math.isfinite(value):
                raise FloatingPointError(f"vem: non-finite ELBO {value} at iteration {iteration}")

            previous = -result.losses[-1] if result.losses else None
            result.losses.append(-value)
            result.info["num_iters"] = iteration + 1
            if progress:
                iters.set_postfix(elbo=f"{value:.6g}", refresh=False)
            if tol is not None and previous is not None:
                if abs(value - previous) < tol * max(abs(previous), 1e-300):
                    result.info["converged"] = True
            if callback is not None and callback(iteration, result):
                break
            if result.info["converged"]:
                break

    result.info["elbo"] = method
    if monte_carlo.enumerated_sites is not None:
        result.info["enumerated_sites"] = monte_carlo.enumerated_sites
    result.info["num_skipped"] = {b.name: b.num_skipped for b in order if isinstance(b, GradientBlock)}
    return result
