# SPDX-License-Identifier: Apache-2.0
"""Old module paths of :mod:`pyro_dvae.models`, kept for one release."""

import importlib
import sys
import warnings


def moved(old, new):
    """Make the module ``old`` an alias of ``new``, with a :class:`DeprecationWarning` naming the new path."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release: import {new}", DeprecationWarning,
                  stacklevel=3)
    sys.modules[old] = module = importlib.import_module(new)
    return module
