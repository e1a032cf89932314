"""Optional dependencies: imported where a feature needs them, with the extra that installs them named."""

from __future__ import annotations

import importlib
from types import ModuleType

from dicomml.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module``, or raise a one-line error naming the pip extra that installs it.

    Parameters
    ----------
    module
        The module to import, e.g. ``"matplotlib"``.
    extra
        The dicomml extra that installs it, e.g. ``"viz"``.
    feature
        What needs it, for the message, e.g. ``"pictures (dicomml.viz, dicomml show)"``.

    Raises
    ------
    MissingDependencyError
        If ``module`` cannot be imported.

    Examples
    --------
    >>> require("numpy", extra="core", feature="arrays").__name__
    'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs {module.split('.')[0]}, which is not installed ({exc}); pip install 'dicomml[{extra}]'"
        ) from None
