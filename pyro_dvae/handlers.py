# SPDX-License-Identifier: Apache-2.0
"""Effect handlers and contexts used across the package."""

import contextlib
import warnings

import torch
from pyro.poutine.handlers import _make_handler
from pyro.poutine.messenger import Messenger


class SiteScaleMessenger(Messenger):
    """Scale the log-densities of the named sample sites only (e.g. KL warm-up on ``z``).

    Unlike :func:`pyro.poutine.scale`, which scales every site in its context, this touches only the
    sites in ``sites`` and leaves the observation term alone. A scale of exactly 0 masks the sites out
    (``poutine.scale`` refuses non-positive scales), so a warm-up may start from 0.

    :param float scale: non-negative factor.
    :param sites: names of the sites to scale.
    """

    def __init__(self, scale, sites):
        if not scale >= 0:
            raise ValueError(f"site scale must be >= 0, got {scale}")
        super().__init__()
        self.scale, self.sites = float(scale), frozenset(sites)

    def _process_message(self, msg):
        if msg["type"] != "sample" or msg["name"] not in self.sites:
            return
        if self.scale == 0.0:
            msg["mask"] = False
        else:
            msg["scale"] = self.scale * msg["scale"]


@_make_handler(SiteScaleMessenger)
def scale_sites(fn=None, scale=1.0, sites=()):
    """Handler form of :class:`SiteScaleMessenger`: ``scale_sites(model, scale=0.3, sites=["z"])``."""
    ...


@contextlib.contextmanager
def frozen(*modules, enabled=True):
    """A context in which the weights of ``modules`` (e.g. the prior passed to a task's entry point) are frozen,
    and after which they are bitwise what they were, whatever ran inside.

    Inside, every parameter has ``requires_grad=False``, so :func:`pyro.module` (e.g. a guide calling
    ``pyro.module("prior", prior)`` to use ``prior.encode``) registers none of them in Pyro's parameter store and
    no optimiser sees them (its warning about them is silenced). On exit the ``requires_grad`` flags are restored,
    and any parameter or buffer whose value changed all the same (a ``pyro.param`` call on one of them, an
    in-place update) gets its value back. The run works *with* the weights as they are; it never trains them.
    Task configs expose this as ``fine_tune_prior`` (``False``: frozen; ``True``: ``enabled=False``, the weights
    are left trainable and keep what training does to them).

    Example::

        with frozen(prior):
            inference.run("svi", model, guide_that_registers_the_prior, x, num_steps=100)
        # prior.state_dict() is unchanged

    :param modules: :class:`torch.nn.Module` s (repeats, and entries that are no module, such as ``None``, are
        skipped).
    :param bool enabled: ``False``: a context that does nothing.
    """
    mods = [] if not enabled else list({id(m): m for m in modules if isinstance(m, torch.nn.Module)}.values())
    tensors = {id(t): t for m in mods for t in (*m.parameters(), *m.buffers())}
    saved = {key: t.detach().clone() for key, t in tensors.items()}
    flags = {id(p): (p, p.requires_grad) for m in mods for p in m.parameters()}
    for p, _ in flags.values():
        p.requires_grad_(False)
    try:
        with warnings.catch_warnings():
            if mods:
                warnings.filterwarnings("ignore", message=r".*was not registered in the param store because "
                                        r"requires_grad=False")
            yield
    finally:
        with torch.no_grad():
            for key, t in tensors.items():
                if not torch.equal(t, saved[key]):
                    t.copy_(saved[key])
        for p, flag in flags.values():
            p.requires_grad_(flag)
