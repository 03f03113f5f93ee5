# SPDX-License-Identifier: Apache-2.0
"""The process's rank in a launched run, read from the environment (no Lightning import)."""

import os


def is_rank_zero():
    """Whether this process is rank 0 (``torchrun`` and Lightning's launchers set ``RANK`` / ``LOCAL_RANK``;
    a process that was not launched is rank 0)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0
