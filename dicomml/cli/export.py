"""``dicomml export MANIFEST SERIES_KEY -o out.nii.gz``: a series (and a mask) as NIfTI."""

from __future__ import annotations

from pathlib import Path

import click

from dicomml.export import save_nifti

__all__ = ["command"]

_SUFFIXES = (".nii.gz", ".nii")


def _mask_path(output: str) -> Path:
    suffix = next(s for s in _SUFFIXES if output.endswith(s))
    return Path(output[: -len(suffix)] + "_mask" + suffix)


@click.command("export")
@click.argument("manifest", type=click.Path(exists=True, file_okay=False))
@click.argument("series_key")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, writable=True), help="NIfTI file, .nii or .nii.gz.")
@click.option("--mask", "annotation_key", default=None, help="Annotation key (SEG / RTSTRUCT) to export on the image grid.")
@click.option("--mask-output", default=None, type=click.Path(dir_okay=False, writable=True), help="Default: OUTPUT with _mask before the suffix.")
@click.option("--on-irregular", type=click.Choice(["raise", "resample", "keep"]), default="raise", show_default=True)
def command(manifest: str, series_key: str, output: str, annotation_key: str | None, mask_output: str | None, on_irregular: str) -> None:
    """Write SERIES_KEY of MANIFEST as NIfTI-1 (RAS+ affine as dcm2niix's, sform and
    qform code 1), and with --mask the annotation as a label map on the same grid."""
    if not output.endswith(_SUFFIXES):
        raise click.BadParameter(f"{output!r} must end with .nii or .nii.gz", param_hint="--output")
    from dicomml import Manifest, load_mask, load_series

    opened = Manifest(manifest)
    volume = load_series(opened, series_key, on_irregular=on_irregular)
    click.echo(f"wrote {save_nifti(volume, output)}")
    if annotation_key is not None:
        mask = load_mask(opened, annotation_key, reference=volume)
        click.echo(f"wrote {save_nifti(mask, mask_output or _mask_path(output))}")
