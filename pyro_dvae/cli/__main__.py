# SPDX-License-Identifier: Apache-2.0
"""``python -m pyro_dvae.cli``: the ``pyro-dvae`` command."""

import sys

from . import main

sys.exit(main())
