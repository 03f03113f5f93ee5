# SPDX-License-Identifier: Apache-2.0
import pyro
import pytest

pyro.enable_validation(True)


@pytest.fixture(autouse=True)
def _reset_pyro():
    """Fresh parameter store and a fixed seed for every test."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
