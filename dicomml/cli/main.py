"""Entry point of the ``dicomml`` command.

Subcommands live one per module in this package and are registered below.
A :class:`~dicomml.errors.DicomMLError` becomes exit status 1 with its
one-line message; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from dicomml.errors import DicomMLError

#: subcommand name -> module under dicomml.cli that defines ``command``.
SUBCOMMANDS = {
    "index": "index",
    "info": "info",
    "list": "listing",
    "export": "export",
    "sample-data": "sample_data",
    "show": "show",
    "cache": "cache",
    "preprocess": "preprocess",
    "labels": "labels",
    "write-seg": "write_seg",
    "write-rtstruct": "write_rtstruct",
    "studies": "studies",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        return importlib.import_module(f"dicomml.cli.{SUBCOMMANDS[name]}").command


@click.group(cls=_LazyGroup)
@click.version_option(package_name="dicomml")
def cli() -> None:
    """DICOM archives to training-ready PyTorch tensors."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a DicomMLError exits 1 with one line on stderr."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except DicomMLError as exc:
        click.echo(f"dicomml: error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("dicomml: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
