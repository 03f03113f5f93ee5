# SPDX-License-Identifier: Apache-2.0
"""The documentation's code runs as written: every tutorial script under ``docs/tutorials/`` and the
``python`` blocks of every Markdown page under ``docs/``. (``sphinx-build -W docs`` itself runs in CI.)"""

import math
import pathlib
import re
import runpy

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.py"))
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts and p.name != "benchmarks.md")
PAGES_WITH_CODE = [p for p in PAGES if "```python" in p.read_text()]


def _likelihood(scores):  # the heavy tails keep the tracks that the Gaussian loses to the outliers
    assert scores["student-t"] >= 0.9 and scores["student-t"] > scores["gaussian"] + 0.2


def _guides(result):  # every guide fits; the trained amortised encoder is the best of them after 100 steps; on the
    # crossing scene every guide swapped into run_tracking scores within 0.1 MOTA of the default guide
    losses, mota = result["elbo"], result["mota"]
    assert all(math.isfinite(v) for v in losses.values()) and min(losses, key=losses.get) == "amortised"
    assert mota["default"] >= 0.9 and all(m >= mota["default"] - 0.1 for m in mota.values()), mota


def _prior(result):  # the new prior trains, tracks the crossing scene and runs in separation
    assert math.isfinite(result["best_val"]) and result["mota"]["mixdvae"] >= 0.8 and result["num_sources"] == 2


def _learning(result):  # the learnt noise ratio recovers the true one; the calibrated model beats interpolation
    assert abs(result["tracker_ratio"] / result["true_ratio"] - 1) < 0.2
    rmse = result["rmse"]
    assert rmse["calibrated"] < 0.9 * rmse["linear interpolation"] < rmse["prior's own variance"]


def _noise_model(scores):  # both noise models improve the input by 3 dB or more; stationary noise suits the new one
    assert scores["nmf"] > scores["input"] + 3 and scores["stationary"] > scores["input"] + 3
    assert scores["stationary"] > scores["nmf"]


#: What each tutorial's ``main()`` result must satisfy (a tutorial without an entry only has to run).
CHECKS = {"writing_a_likelihood": _likelihood, "swapping_guides": _guides, "writing_a_prior": _prior,
          "learning_a_likelihood": _learning, "writing_a_noise_model": _noise_model}


@pytest.mark.parametrize("script", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = runpy.run_path(str(script))
    result = ns["main"]()
    CHECKS.get(script.stem, lambda r: None)(result)


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(DOCS)))
def test_docs_python_blocks_run(page, tmp_path, monkeypatch):
    """The ``python`` blocks of a page run in order in one namespace, as a reader runs them one after the other."""
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "docs"}
    for index, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)):
        exec(compile(block, f"{page.name}[python block {index}]", "exec"), ns)


def test_every_public_module_has_an_api_page():
    """The API pages are written for the modules ``docs/conf.py`` finds by import; compared here with the modules
    found as files (``tests/test_layout.py``), less the private ones and the deprecated aliases."""
    import sys

    from test_layout import MODULES

    sys.path.insert(0, str(DOCS))
    try:
        import conf
    finally:
        sys.path.remove(str(DOCS))
    aliases = {name for name, path in MODULES.items() if "moved(__name__" in path.read_text()}
    assert {"pyro_dvae.models.separation_run", "pyro_dvae.models.enhancement_task"} <= aliases
    expected = {name for name in MODULES if not any(part.startswith("_") for part in name.split("."))} - aliases
    assert set(conf.public_modules()) == expected
    pages = {p.stem for p in (DOCS / "api").glob("*.rst")} - {"index"}
    assert pages == expected