"""`dicomml index SRC... -o MANIFEST`: build or update a manifest."""

from __future__ import annotations

import os

import click

from dicomml.errors import SourceNotFoundError
from dicomml.indexer import index


@click.command("index")
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False), help="Manifest folder.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: one per core).")
@click.option("--scheduler", default=None, help="Dask scheduler address; read headers on that cluster.")
@click.option("--include-phi", is_flag=True, help="Keep patient names, IDs, birth dates and other identifiers.")
@click.option(
    "--salt",
    default=None,
    help="Salt of patient_key (default: $DICOMML_SALT, else ~/.config/dicomml/salt, created once).",
)
@click.option("--timeout", "timeout_s", type=float, default=30.0, show_default=True, help="Per-file time limit, s.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(
    sources: tuple[str, ...],
    out: str,
    workers: int | None,
    scheduler: str | None,
    include_phi: bool,
    salt: str | None,
    timeout_s: float,
    quiet: bool,
) -> None:
    """Index DICOM files under SOURCES (folders or fsspec URLs) into the manifest OUT.

    A rerun reads only new and changed files and drops deleted ones. Files
    that cannot be read are listed in the manifest's errors table; the run
    still exits 0 and says how many. When SOURCES hold no DICOM file at all
    (an empty folder, a mistyped one), it says so and exits 1.
    """
    manifest = index(
        list(sources),
        out,
        workers=workers,
        scheduler=scheduler,
        include_phi=include_phi,
        salt=salt if salt is not None else os.environ.get("DICOMML_SALT"),
        timeout_s=timeout_s,
        progress=not quiet,
    )
    counts, run = manifest.meta["counts"], manifest.meta["last_run"]
    click.echo(
        f"{manifest.path}: {counts['instances']} instance rows, {counts['series']} series, "
        f"{counts['annotations']} annotations ({run['files_listed']} files listed, {run['files_read']} read, "
        f"{run['rows_removed']} stale rows dropped, {run['seconds']:.1f} s)"
    )
    if counts["instances"] == 0:
        where = ", ".join(sources)
        if run["files_listed"] == 0:
            raise SourceNotFoundError(f"{where}: no DICOM file found: no files at all (an empty folder?); check the path")
        raise SourceNotFoundError(
            f"{where}: no DICOM file found among {run['files_listed']} files; "
            f"`dicomml info {out} --errors` says why each was refused"
        )
    if counts["errors"]:
        click.echo(f"{counts['errors']} files or entries could not be indexed; see `dicomml info {out} --errors`")
