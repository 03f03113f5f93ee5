# SPDX-License-Identifier: Apache-2.0
"""Effect handlers used across the package."""

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
