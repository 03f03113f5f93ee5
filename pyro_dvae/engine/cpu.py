# SPDX-License-Identifier: Apache-2.0
"""The torch CPU thread count of a process, set in one place (:func:`threads`).

The ``pyro-dvae`` commands apply ``--threads`` once, in :func:`pyro_dvae.cli.main`; the engine applies
:attr:`Engine.threads <pyro_dvae.engine.Engine>` in each training process; the examples apply their
``--threads``. Summaries report the value that was applied, not ``torch.get_num_threads()``.
"""

import torch


class _Threads:
    """The setting made by :func:`threads`; as a context manager it puts the previous count back on exit."""

    def __init__(self, n):
        self.previous = torch.get_num_threads()
        self.n = n
        if n is not None:
            torch.set_num_threads(n)

    def __enter__(self):
        return self.n

    def __exit__(self, *exc):
        if self.n is not None and torch.get_num_threads() != self.previous:
            torch.set_num_threads(self.previous)
        return False


def threads(n):
    """Set this process's torch CPU threads to ``n`` (1 is fastest for the project's model sizes on a busy
    machine: BENCHMARKS.md).

    Called as a function the setting stays; used as ``with threads(n):`` the previous count is restored on exit.
    ``None`` leaves the count as it is.

    :param int n: threads (``>= 1``) or ``None``.
    :returns: a context manager whose ``__enter__`` gives ``n``.
    """
    if n is not None:
        if isinstance(n, bool) or int(n) != n or int(n) < 1:
            raise ValueError(f"threads must be an integer >= 1, got {n!r}")
        n = int(n)
    return _Threads(n)
