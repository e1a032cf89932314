"""`dicomml index SRC... -o MANIFEST`: build or update a manifest."""

from __future__ import annotations

import os
from typing import Any

import click

from dicomml.cli._paths import local_output
from dicomml.cli._remote import remote_from_env, storage_option
from dicomml.errors import ConfigError, SourceNotFoundError


@click.command("index")
@click.argument("sources", nargs=-1)
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False), callback=local_output, help="Manifest folder.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: one per core).")
@click.option("--scheduler", default=None, help="Dask scheduler address; read headers on that cluster.")
@click.option("--include-phi", is_flag=True, help="Keep patient names, IDs, birth dates and other identifiers.")
@click.option(
    "--salt",
    default=None,
    help="Salt of patient_key (default: $DICOMML_SALT, else ~/.config/dicomml/salt, created once).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Per-file time limit, s; 0: read in this process, without a limit.",
)
@storage_option
@click.option(
    "--url-list",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A text file of object URLs (one a line) to index without listing their bucket.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(
    sources: tuple[str, ...],
    out: str,
    workers: int | None,
    scheduler: str | None,
    include_phi: bool,
    salt: str | None,
    timeout_s: float,
    storage_option: tuple[str, ...],
    url_list: str | None,
    quiet: bool,
) -> None:
    """Index DICOM files under SOURCES into the manifest OUT.

    SOURCES are folders, fsspec URLs (s3://, gs://...) or DICOMweb servers
    (dicomweb+https://host/dicom-web, narrowed by /studies/UID/series/UID and
    QIDO-RS parameters: ...?Modality=CT). DICOMweb credentials come from
    $DICOMML_DICOMWEB_TOKEN (bearer) or $DICOMML_DICOMWEB_USER and
    $DICOMML_DICOMWEB_PASSWORD (basic); they are never written down.

    A rerun reads only new and changed files and drops deleted ones, and
    the rows of sources it does not name: to add a folder, name the ones
    indexed before too. Files
    that cannot be read are listed in the manifest's errors table; the run
    still exits 0 and says how many. When SOURCES hold no DICOM file at all
    (an empty folder, a mistyped one), it says so and exits 1.
    """
    from dicomml.indexer import index  # pyarrow (and pydicom in the scan): imported to run, not for --help

    items: list[Any] = list(sources)
    if url_list is not None:
        from dicomml.sources import ObjectList

        with open(url_list) as f:
            items.append(ObjectList(f))
    if not items:
        raise click.UsageError("give at least one source (a folder, URL or --url-list FILE)")
    if salt is None:
        salt = os.environ.get("DICOMML_SALT")
        if salt is not None and not salt.strip():  # a shell variable that expanded to nothing: not the stored salt
            raise ConfigError("$DICOMML_SALT is set but empty; set it to a secret salt, or unset it to use ~/.config/dicomml/salt")
    manifest = index(
        items,
        out,
        workers=workers,
        scheduler=scheduler,
        include_phi=include_phi,
        salt=salt,
        timeout_s=timeout_s,
        progress=not quiet,
        remote=remote_from_env(storage_option),
    )
    counts, run = manifest.meta["counts"], manifest.meta["last_run"]
    if counts["instances"] == 0:  # the error alone: no summary of a run that found nothing to index
        from dicomml.indexer.privacy import storable_source

        # a list file alone names no source; a QIDO-RS filter's patient stays out of the message, as out of manifest.json
        where = ", ".join([*(storable_source(s, include_phi=False) for s in sources), *([url_list] if url_list else [])])
        if run["files_listed"] == 0 and counts["errors"]:  # a server or bucket that failed lists nothing
            raise SourceNotFoundError(
                f"{where}: no DICOM file found: {counts['errors']} entries could not be listed or reached; "
                f"`dicomml info {out} --errors` says why"
            )
        if run["files_listed"] == 0:
            raise SourceNotFoundError(
                f"{where}: no DICOM file found: no files at all (an empty folder, a query matching nothing?); check the path"
            )
        raise SourceNotFoundError(
            f"{where}: no DICOM file found among {run['files_listed']} files; `dicomml info {out} --errors` says why each was refused"
        )
    unnamed = run.get("rows_of_unnamed_sources", 0)
    click.echo(
        f"{manifest.path}: {counts['instances']} instance rows, {counts['series']} series, "
        f"{counts['annotations']} annotations ({run['files_listed']} files listed, {run['files_read']} read, "
        f"{run['rows_removed']} stale rows dropped, {run['seconds']:.1f} s)"
        # a manifest mirrors the sources of its last run: say why rows of files still on disk went
        + (f"; {unnamed} rows of sources no longer named dropped (a manifest keeps only the sources its last run named)" if unnamed else "")
    )
    if counts["errors"]:
        click.echo(f"{counts['errors']} files or entries could not be indexed; see `dicomml info {out} --errors`")
