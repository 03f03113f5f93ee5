# SPDX-License-Identifier: Apache-2.0
"""Sphinx configuration of the pyro_dvae documentation.

Build with ``sphinx-build -W docs docs/_build/html`` (warnings are errors). The API pages (``docs/api/``) are
written at build time from the installed package, one page per public module, so that they cannot drift from
the code. Cross-references to PyTorch and Pyro (intersphinx) need their inventories: offline (the default, and
CI) intersphinx is off and those names render as plain text; set ``PYRO_DVAE_DOCS_ONLINE=1`` to fetch them.
"""

import importlib
import os
import pkgutil
import sys

import pyro_dvae

project = "pyro_dvae"
author = "the pyro_dvae developers"
copyright = "2026, the pyro_dvae developers"
release = version = pyro_dvae.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "*.jpg"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_typehints = "none"
autodoc_inherit_docstrings = False  # Lightning and torch docstrings of overridden hooks are not ours
autodoc_mock_imports = []
napoleon_google_docstring = False
napoleon_numpy_docstring = False
# References between the package's own objects are checked; names of other libraries that are not resolved
# offline are not warnings.
nitpicky = False
suppress_warnings = ["myst.header"]

intersphinx_mapping = {}
if os.environ.get("PYRO_DVAE_DOCS_ONLINE") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://pytorch.org/docs/stable/", None),
        "pyro": ("https://docs.pyro.ai/en/stable/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
    }

html_theme = "furo"
html_title = f"pyro_dvae {release}"

# ------------------------------------------------------------------------------------------------ API pages
ROOT = "pyro_dvae"
HERE = os.path.dirname(os.path.abspath(__file__))


def is_alias(module_name):
    """True for the deprecated module paths kept for one release (they re-export another module)."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return False
    with open(spec.origin) as f:
        return "moved(__name__" in f.read()


def public_modules():
    """Every public module of the package, sorted: no ``_private`` part, no deprecated alias, no ``__main__``."""
    names = []
    for package in (ROOT, f"{ROOT}.models", f"{ROOT}.inference"):  # the last two live in their own folders
        names.append(package)
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
            parts = info.name.split(".")
            if any(p.startswith("_") for p in parts) or is_alias(info.name):
                continue
            names.append(info.name)
    return sorted(set(names))


def write_api_pages(app=None):
    folder = os.path.join(HERE, "api")
    os.makedirs(folder, exist_ok=True)
    modules = public_modules()
    for name in modules:
        title = f"``{name}``"
        body = f"{title}\n{'=' * len(title)}\n\n.. automodule:: {name}\n"
        path = os.path.join(folder, f"{name}.rst")
        if not os.path.exists(path) or open(path).read() != body:
            with open(path, "w") as f:
                f.write(body)
    for stale in os.listdir(folder):
        if stale.endswith(".rst") and stale != "index.rst" and stale[:-4] not in modules:
            os.remove(os.path.join(folder, stale))
    index = ("API reference\n=============\n\nOne page per public module, from its docstrings.\n\n"
             ".. toctree::\n   :maxdepth: 1\n\n" + "".join(f"   {m}\n" for m in modules))
    with open(os.path.join(folder, "index.rst"), "w") as f:
        f.write(index)


def write_benchmarks_page(app=None):
    """``benchmarks.md``: BENCHMARKS.md of the repository root, with its paths made relative to ``docs/``."""
    with open(os.path.join(HERE, "..", "BENCHMARKS.md")) as f:
        text = f.read()
    text = text.replace("](docs/", "](")
    path = os.path.join(HERE, "benchmarks.md")
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)


write_api_pages()
write_benchmarks_page()
sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
