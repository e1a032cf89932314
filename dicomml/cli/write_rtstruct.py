"""``dicomml write-rtstruct PRED --manifest M --series KEY -o rt.dcm``: a prediction file back to RTSTRUCT."""

from __future__ import annotations

from typing import Any

import click

from dicomml.cli.write_seg import source_of, source_options

__all__ = ["command"]


@click.command("write-rtstruct")
@source_options
def command(
    prediction: str,
    manifest: str | None,
    series_key: str | None,
    source: str | None,
    labels: Any,
    output: str,
    threshold: float,
    algorithm: str,
) -> None:
    """Write PREDICTION (a NIfTI label map or channels, on any grid) as an RT Structure Set
    with one ROI per label, contoured on the slices of its source series."""
    from dicomml import write_rtstruct

    where, opened = source_of(manifest, series_key, source)
    path = write_rtstruct(prediction, where, labels, output, manifest=opened, threshold=threshold, algorithm=algorithm)
    click.echo(f"wrote {path}")
