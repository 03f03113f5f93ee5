# SPDX-License-Identifier: Apache-2.0
"""The documentation's code runs as written: every tutorial script under ``docs/tutorials/`` and every
``python`` block of the Markdown pages under ``docs/``. (``sphinx-build -W docs`` itself runs in CI.)"""

import math
import pathlib
import re
import runpy

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.py"))
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts and p.name != "benchmarks.md")
BLOCKS = [(page, i, block) for page in PAGES
          for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))]


def _likelihood(scores):  # the heavy tails keep the tracks that the Gaussian loses to the outliers
    assert scores["student-t"] >= 0.9 and scores["student-t"] > scores["gaussian"] + 0.2


def _guides(losses):  # every guide fits; the trained amortised encoder is the best of them after 100 steps
    assert all(math.isfinite(v) for v in losses.values()) and min(losses, key=losses.get) == "amortised"


#: What each tutorial's ``main()`` result must satisfy (a tutorial without an entry only has to run).
CHECKS = {"writing_a_likelihood": _likelihood, "swapping_guides": _guides}


@pytest.mark.parametrize("script", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = runpy.run_path(str(script))
    result = ns["main"]()
    CHECKS.get(script.stem, lambda r: None)(result)


@pytest.mark.parametrize("page,index,block", BLOCKS, ids=[f"{p.relative_to(DOCS)}[{i}]" for p, i, _ in BLOCKS])
def test_docs_python_block_runs(page, index, block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block, f"{page.name}[python block {index}]", "exec"), {"__name__": "docs"})


def test_every_public_module_has_an_api_page():
    import sys

    sys.path.insert(0, str(DOCS))
    try:
        import conf
    finally:
        sys.path.remove(str(DOCS))
    modules = conf.public_modules()
    assert {"pyro_dvae.models.tracking", "pyro_dvae.inference.registry", "pyro_dvae.priors.base"} <= set(modules)
    assert not [m for m in modules if m.split(".")[-1].startswith("_")]
    pages = {p.stem for p in (DOCS / "api").glob("*.rst")} - {"index"}
    assert pages == set(modules)
