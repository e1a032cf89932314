"""``dicomml export MANIFEST SERIES_KEY -o out.nii.gz``: a series (and a mask) as NIfTI."""

from __future__ import annotations

from pathlib import Path

import click

from dicomml.cli._options import max_voxels, on_irregular, philips_scaling
from dicomml.cli._paths import make_parent, output_option
from dicomml.cli._remote import open_manifest, storage_option

__all__ = ["command"]

_SUFFIXES = (".nii.gz", ".nii")


def _nifti_output(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.endswith(_SUFFIXES):
        raise click.BadParameter(f"{value!r} must end with .nii or .nii.gz", param_hint=f"--{param.name}")
    return make_parent(ctx, param, value)


def _mask_path(output: str) -> Path:
    suffix = next(s for s in _SUFFIXES if output.endswith(s))
    return Path(output[: -len(suffix)] + "_mask" + suffix)


@click.command("export")
@click.argument("manifest", type=click.Path(exists=True, file_okay=False))
@click.argument("series_key")
@output_option("NIfTI file, .nii or .nii.gz", _nifti_output)
@click.option("--mask", "annotation_key", default=None, help="Annotation key (SEG / RTSTRUCT) to export on the image grid.")
@click.option(
    "--mask-output",
    default=None,
    type=click.Path(dir_okay=False),
    callback=_nifti_output,
    help="Default: OUTPUT with _mask before the suffix.",
)
@on_irregular
@philips_scaling
@max_voxels
@storage_option
def command(
    manifest: str,
    series_key: str,
    output: str,
    annotation_key: str | None,
    mask_output: str | None,
    on_irregular: str,
    philips_scaling: str,
    max_voxels: int | None,
    storage_option: tuple[str, ...],
) -> None:
    """Write SERIES_KEY of MANIFEST as NIfTI-1 (RAS+ affine; voxels where dcm2niix puts them, sform and
    qform code 1; a diffusion series with its .bval and .bvec), and with --mask the
    annotation as a label map on the same grid."""
    if mask_output is not None and annotation_key is None:  # else it would be ignored without a word
        raise click.UsageError("--mask-output names the file of --mask ANNOTATION_KEY; give --mask too, or drop --mask-output")
    from dicomml import load_mask, load_series
    from dicomml.export import diffusion_paths, save_nifti  # nibabel: imported to run, not for --help
    from dicomml.limits import DEFAULT_MAX_VOXELS

    opened = open_manifest(manifest, storage_option)
    volume = load_series(
        opened,
        series_key,
        on_irregular=on_irregular,  # type: ignore[arg-type]
        philips_scaling=philips_scaling,  # type: ignore[arg-type]
        max_voxels=max_voxels or DEFAULT_MAX_VOXELS,
    )
    # everything is loaded and checked before anything is written: a bad --mask leaves no image behind
    mask = None if annotation_key is None else load_mask(opened, annotation_key, reference=volume)
    click.echo(f"wrote {save_nifti(volume, output)}")
    for sidecar in diffusion_paths(volume, output):
        click.echo(f"wrote {sidecar}")
    if mask is not None:
        click.echo(f"wrote {save_nifti(mask, mask_output or _mask_path(output))}")
