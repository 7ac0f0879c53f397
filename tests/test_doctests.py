"""Every docstring example in the package runs and prints what it says.

Modules are imported by their installed names (``regretflow.…``): collecting the
source folders with ``--doctest-modules`` would import them as ``engine.…`` and
leave numba cache entries that the installed package cannot load.
"""

import doctest
import importlib
import pkgutil

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
