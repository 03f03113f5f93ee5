# SPDX-License-Identifier: Apache-2.0
"""Deprecated alias of :mod:`pyro_dvae.models.enhancement.task` (removed in the next release)."""

from ._compat import moved

moved(__name__, "pyro_dvae.models.enhancement.task")
