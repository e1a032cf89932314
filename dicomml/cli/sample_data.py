"""``dicomml sample-data DIR``: write the synthetic sample study (CT, SEG on it, MR)."""

from __future__ import annotations

import click

from dicomml.cli._paths import local_output

__all__ = ["command"]


@click.command("sample-data")
@click.argument("directory", type=click.Path(file_okay=False, writable=True), callback=local_output)
@click.option("--seed", default=0, show_default=True, help="Seeds noise and UIDs; the same seed writes the same files.")
def command(directory: str, seed: int) -> None:
    """Write a small synthetic study into DIRECTORY: an axial CT (80 slices), a DICOM SEG
    (lesion, liver) on it and a sagittal MR (28 slices); about 4 MB, no real data needed."""
    from dicomml.sample import write_sample_study  # pydicom: imported to run, not for --help

    study = write_sample_study(directory, seed=seed)
    click.echo(f"CT  {len(study.ct):3d} files  {study.ct[0].parent}")
    click.echo(f"MR  {len(study.mr):3d} files  {study.mr[0].parent}")
    click.echo(f"SEG   1 file   {study.seg}")
