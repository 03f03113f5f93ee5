# SPDX-License-Identifier: Apache-2.0
"""The shared config field checks: values pass (converted), bad ones are one-line errors naming the field."""

import math

import pytest

from pyro_dvae import checks
from pyro_dvae.models.mot_tracker import TrackerConfig


def test_checks_pass_and_convert():
    assert checks.integer("n", 3.0, 1) == 3 and isinstance(checks.integer("n", 3.0, 1), int)
    assert checks.integer("n", None, 1, none=True) is None
    assert checks.positive("lr", 1) == 1.0 and checks.positive("a", 0, zero=True) == 0.0
    assert checks.fraction("q", 0.2) == 0.2 and checks.unit("p", 1) == 1.0
    assert checks.choice("mode", "una", ("una", "und")) == "una"
    assert checks.group(dict, {"a": 1}) == {"a": 1}


@pytest.mark.parametrize("call,match", [
    (lambda: checks.integer("num_iters", 0, 1), r"num_iters must be an integer >= 1, got 0"),
    (lambda: checks.integer("num_iters", True, 1), r"num_iters must be an integer >= 1, got True"),
    (lambda: checks.integer("num_iters", 2.5, 1, none=True), r"num_iters must be an integer >= 1 or None, got 2.5"),
    (lambda: checks.positive("lr", math.inf), r"lr must be a finite number > 0, got inf"),
    (lambda: checks.positive("alpha", -1, zero=True), r"alpha must be a finite number >= 0, got -1"),
    (lambda: checks.fraction("quantile", 1.0), r"quantile must be in \(0, 1\), got 1.0"),
    (lambda: checks.unit("share", "x"), r"share must be in \[0, 1\], got 'x'"),
    (lambda: checks.choice("mode", "both", ("una", "und")), r"mode must be one of \('una', 'und'\), got 'both'"),
    (lambda: checks.choice("mode", ["una"], ("una",)), r"mode must be one of"),
])
def test_checks_name_the_field_and_range(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_group_refuses_other_types():
    with pytest.raises(TypeError, match="expected a dict or a dict of its fields, got int"):
        checks.group(dict, 3)


@pytest.mark.parametrize("kw,match", [(dict(high_score=1.5), "high_score must be in"),
                                      (dict(low_score=0.7, high_score=0.6), "low_score .* must not exceed"),
                                      (dict(max_age=0), "max_age must be an integer >= 1"),
                                      (dict(dynamics="kalman"), "dynamics must be one of"),
                                      (dict(window=1), "window must be an integer >= 2")])
def test_tracker_config_checks_its_fields(kw, match):
    with pytest.raises(ValueError, match=match):
        TrackerConfig(**kw)
