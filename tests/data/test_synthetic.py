# SPDX-License-Identifier: Apache-2.0
import numpy as np
import pytest

from pyro_dvae.data import synthetic_trajectories
from pyro_dvae.data.synthetic import MAX_STEP


@pytest.mark.parametrize("T", [1, 7, 60, 300])
def test_shapes_bounds_and_geometry(T):
    boxes = synthetic_trajectories(200, T, seed=3)
    assert boxes.shape == (200, T, 4) and boxes.dtype == np.float32
    assert (boxes >= 0).all() and (boxes <= 1).all()
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    assert (w > 0).all() and (h > 0).all()
    ratio = (h / w)[:, 0]
    assert 4.0 < np.median(ratio) < 6.5  # pedestrian aspect in normalised 16:9 coordinates
    if T > 1:
        assert np.abs(np.diff(boxes, axis=1)).max() <= MAX_STEP + 1e-6
        assert np.isclose(h / w, ratio[:, None], rtol=1e-3).all()  # aspect constant per track


def test_motion_types_are_mixed():
    boxes = synthetic_trajectories(2000, 60, seed=0).astype(np.float64)
    x = boxes[..., 0]
    speed = np.abs(np.diff(x, axis=1))
    static = (speed.max(1) < 1e-9).mean()
    assert 0.005 < static < 0.2  # a static x needs static segments only
    curv = np.abs(np.diff(x, 2, axis=1)).max(1)
    assert (curv > 1e-6).mean() > 0.3  # many tracks bend


def test_seeded():
    a = synthetic_trajectories(50, 30, seed=1)
    assert np.array_equal(a, synthetic_trajectories(50, 30, seed=1))
    assert not np.array_equal(a, synthetic_trajectories(50, 30, seed=2))


def test_bad_arguments():
    with pytest.raises(ValueError):
        synthetic_trajectories(0, 10)
    with pytest.raises(ValueError):
        synthetic_trajectories(5, 0)
