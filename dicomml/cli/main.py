"""Entry point of the ``dicomml`` command.

Subcommands live one per module in this package and are registered below.
A :class:`~dicomml.errors.DicomMLError` becomes exit status 1 with its
one-line message; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

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


#: Loggers of the storage and HTTP clients under fsspec: on a failed request they log every retry with its
#: traceback (gcsfs: hundreds of lines for one missing bucket) before dicomml's own one-line error says it all.
QUIET_LOGGERS = ("gcsfs", "s3fs", "aiobotocore", "botocore", "boto3", "urllib3", "aiohttp", "google", "fsspec")


def _quiet_third_party_logs() -> None:
    """Keep the storage clients' log records (and their tracebacks) off the terminal; dicomml's own
    messages are click output and exceptions, not these loggers, so nothing of dicomml's is hidden."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
            logger.addHandler(logging.NullHandler())  # without a handler, logging's last resort prints to stderr
        logger.propagate = False


#: What DuckDB raises, as a RuntimeError, in place of the KeyboardInterrupt of a Ctrl-C during a query.
DUCKDB_INTERRUPTED = "Query interrupted"


class _EndOfInputError(DicomMLError, ValueError):
    """An EOFError that escaped (a truncated file a reader did not name): an error, not Ctrl-C."""


class _LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # click turns EOFError, like KeyboardInterrupt, into Abort ("aborted", 130); only Ctrl-C is that
        try:
            return super().invoke(ctx)
        except EOFError as exc:
            reason = " ".join(str(exc).split()) or "EOFError"
            raise _EndOfInputError(f"unexpected end of input, a truncated file? ({reason})") from exc
        except RuntimeError as exc:
            if str(exc) == DUCKDB_INTERRUPTED:  # Ctrl-C during a query: aborted, like Ctrl-C anywhere else
                raise KeyboardInterrupt from exc
            raise

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
    _quiet_third_party_logs()
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
