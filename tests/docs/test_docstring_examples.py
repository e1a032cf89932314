"""Every Examples section of dicomml's docstrings (what the API reference shows) runs as written; those that need a
manifest, files or a server say ``# doctest: +SKIP``."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import dicomml

MODULES = sorted(m.name for m in pkgutil.walk_packages(dicomml.__path__, "dicomml.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_as_written(name: str) -> None:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)  # as pytest runs doctests
    said: list[str] = []
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=said.append)
    assert runner.failures == 0, "".join(said)
