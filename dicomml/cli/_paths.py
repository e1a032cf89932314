"""Output paths of the CLI: the folder of an ``-o`` file is made, or the command says why not."""

from __future__ import annotations

import os
from pathlib import Path

import click

from dicomml.errors import OutputError
from dicomml.paths import os_reason

__all__ = ["make_parent"]


def make_parent(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> str | None:
    """Click callback: create the folder of the output file ``value`` (None stays None).

    Raises
    ------
    OutputError
        If the folder cannot be made (a file in the way, no permission) or written.
    """
    if value is None:
        return None
    parent = Path(value).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{value}: cannot create its folder {parent} ({os_reason(exc)}); choose another output path", path=value) from exc
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{value}: the folder {parent} is not writable; choose another output path", path=value)
    return value
