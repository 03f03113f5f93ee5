# SPDX-License-Identifier: Apache-2.0
"""What several test modules share (importable as ``common``: pytest puts ``tests/`` on the path with its
``conftest.py``).

:data:`REALDATA` is the shared real-data folder: ``$PYRO_DVAE_REALDATA`` when set, else ``../shared/realdata``
beside the repository. :func:`requires_realdata` marks a test that reads it (marker ``realdata``) and skips it,
naming the folder and the variable, when what it reads is absent.
"""

import os
from pathlib import Path

import pytest

#: the repository root
REPO = Path(__file__).resolve().parents[1]
#: the environment variable that points the tests at the real-data folder
REALDATA_ENV = "PYRO_DVAE_REALDATA"
#: the real-data folder (MOTChallenge sequences, speech, music, noise)
REALDATA = Path(os.environ.get(REALDATA_ENV, REPO.parent / "shared" / "realdata"))


def requires_realdata(*subpaths):
    """A decorator: the ``realdata`` marker, and a skip unless ``REALDATA / p`` exists for every ``p`` in
    ``subpaths`` (the folder itself when none is given); the reason names the missing paths and
    ``PYRO_DVAE_REALDATA``."""
    missing = [str(REALDATA / p) for p in subpaths or (".",) if not (REALDATA / p).exists()]
    reason = (f"real data absent: {', '.join(missing)} (set {REALDATA_ENV} to the shared realdata folder, "
              f"default {REPO.parent / 'shared' / 'realdata'})")
    skip = pytest.mark.skipif(bool(missing), reason=reason)

    def mark(test):
        return pytest.mark.realdata(skip(test))

    return mark
