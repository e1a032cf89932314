"""Names a package re-exports, imported from their modules on first use.

A package lists its public names and the module of each, and gets its
module-level ``__getattr__`` and ``__dir__`` from :func:`lazy_exports`; it
imports the same names under ``if TYPE_CHECKING:`` so that type checkers and
editors see them, and writes ``__all__`` as a literal list (not
``sorted(_EXPORTS)``: the API reference reads it without running the module);
a test checks that the three agree. Importing the package then costs nothing
until a name is used: the indexer's workers never import torch, and a
training script imports only what its first batch needs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, which re-exports ``exports`` lazily.

    Parameters
    ----------
    package
        The package's ``__name__``.
    exports
        Public name -> the module that defines it.

    Returns
    -------
    tuple
        ``(__getattr__, __dir__)``: the first imports a name's module on first
        use and keeps the name in the package; the second lists the names.

    Examples
    --------
    >>> getattr_, dir_ = lazy_exports("json", {"JSONDecoder": "json.decoder"})
    >>> getattr_("JSONDecoder").__name__
    'JSONDecoder'
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)  # the next use is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
