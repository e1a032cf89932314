"""Output paths of the CLI: local only, the folder of an ``-o`` file is made, or the command says why not."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from dicomml.errors import OutputError
from dicomml.paths import os_reason, refuse_url

__all__ = ["local_output", "make_parent", "output_option", "png_output"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _hint(param: click.Parameter | None) -> str:
    """How the user spelt the option (``-o/--output``, ``--mask-output``) or argument (``DIRECTORY``), for a message."""
    if param is None:
        return "the output"
    return "/".join(param.opts) if isinstance(param, click.Option) else param.human_readable_name


def local_output(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> str | None:
    """Click callback: ``value`` unless it is a URL, which the writers would take for a local folder named ``s3:``.

    Raises
    ------
    OutputError
        If ``value`` holds ``://`` (``s3://bucket/x.nii.gz``, ``file:///x``).
    """
    if value is not None:
        refuse_url(value, _hint(param))
    return value


def make_parent(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> str | None:
    """Click callback: create the folder of the output file ``value`` (None stays None).

    Raises
    ------
    OutputError
        If ``value`` is a URL, or the folder cannot be made (a file in the way, no permission) or written.
    """
    value = local_output(ctx, param, value)
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


def output_option(what: str, callback: Callable[..., str | None] = make_parent) -> Callable[[_F], _F]:
    """The ``-o/--output FILE`` option of a command that writes ``what``; its folder is made (``callback``)."""
    return click.option(
        "-o",
        "--output",
        required=True,
        type=click.Path(dir_okay=False),
        callback=callback,
        help=f"{what}; its folder is created if missing.",
    )


def png_output(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> str | None:
    """Click callback of an output that is drawn as PNG: refuse another suffix (``x.jpg`` would hold PNG
    bytes), then make its folder as :func:`make_parent`."""
    if value is not None and not value.lower().endswith(".png"):
        raise click.BadParameter(f"{value!r} must end with .png (the image is written as PNG)", param_hint=_hint(param))
    return make_parent(ctx, param, value)
