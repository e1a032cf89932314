"""How the CLI reaches remote files: ``--storage-option`` pairs, and DICOMweb credentials from the environment.

Only the CLI reads the environment; the library takes a :class:`dicomml.sources.Remote`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # pyarrow (the manifest) and the sources: imported to run, not for --help
    from dicomml.indexer.manifest import Manifest
    from dicomml.sources import Remote

__all__ = ["open_manifest", "remote_from_env", "storage_option"]

storage_option = click.option(
    "--storage-option",
    "storage_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="fsspec option of bucket sources, repeatable: anon=true, endpoint_url=URL, profile=NAME.",
)


def _option_value(text: str) -> Any:
    """``true``/``false`` as booleans, integers as int, anything else as given."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return int(text) if text.lstrip("-").isdigit() else text


def _storage_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: write KEY=VALUE (anon=true, endpoint_url=http://..., profile=name)")
        options[key] = _option_value(value)
    return options


def _dicomweb_auth() -> Any:
    """$DICOMML_DICOMWEB_TOKEN (bearer), else $DICOMML_DICOMWEB_USER and $DICOMML_DICOMWEB_PASSWORD (basic), else None."""
    token = os.environ.get("DICOMML_DICOMWEB_TOKEN")
    if token:
        return token
    user, password = os.environ.get("DICOMML_DICOMWEB_USER"), os.environ.get("DICOMML_DICOMWEB_PASSWORD")
    return (user, password or "") if user else None


def remote_from_env(pairs: tuple[str, ...] = ()) -> Remote:
    """The Remote of a command: its ``--storage-option`` pairs and the environment's DICOMweb credentials."""
    from dicomml.sources import Remote

    return Remote(storage_options=_storage_options(pairs), auth=_dicomweb_auth())


def open_manifest(path: str, pairs: tuple[str, ...] = ()) -> Manifest:
    """The manifest at ``path``, reading its remote files with :func:`remote_from_env`."""
    from dicomml.indexer.manifest import Manifest

    return Manifest(path, remote=remote_from_env(pairs))
