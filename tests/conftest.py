# SPDX-License-Identifier: Apache-2.0
import os

import pyro
import pytest
import torch

pyro.enable_validation(True)
# The suite's models are small: one thread is fastest, and torch's default (one per core) runs many times
# slower on a busy machine. PYRO_DVAE_TEST_THREADS overrides it (e.g. to test multi-threaded kernels).
torch.set_num_threads(int(os.environ.get("PYRO_DVAE_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _reset_pyro():
    """Fresh parameter store and a fixed seed for every test."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
