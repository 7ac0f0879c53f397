"""Every docstring example in the package runs and prints what it says.

Modules are imported by their installed names (``regretflow.…``): collecting the
source folders with ``--doctest-modules`` would import them as ``engine.…`` and
leave numba cache entries that the installed package cannot load.
"""

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import regretflow.connectors
import regretflow.engine
import regretflow.learners

MODULES = sorted(
    info.name
    for pkg in (regretflow.engine, regretflow.learners, regretflow.connectors)
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
    if not info.name.endswith(".__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


# docs pages whose examples are run like docstrings (each example block ends with a blank line before its fence)
PAGES = ["river-and-vw.md"]


@pytest.mark.parametrize("page", PAGES)
def test_docs_page_examples_run(page):
    path = Path(__file__).resolve().parents[1] / "docs" / page
    result = doctest.testfile(str(path), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"docs/{page} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in docs/{page}"
