"""``dicomml show MANIFEST SERIES_KEY -o out.png``: orthogonal views and a montage of a series."""

from __future__ import annotations

import click

from dicomml.cli._options import max_voxels, on_irregular, philips_scaling
from dicomml.cli._paths import output_option
from dicomml.cli._remote import open_manifest, storage_option
from dicomml.viz import CONVENTIONS, save_png
from dicomml.viz.window import Window

__all__ = ["command", "parse_window"]


def parse_window(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> Window:
    """Click callback: ``"lung"`` stays a preset name; ``"40,400"`` -> ``(40.0, 400.0)``; ``None`` stays."""
    if value is None or "," not in value:
        return value
    try:
        center, width = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected a preset name or CENTER,WIDTH such as 40,400", param_hint="--window") from None
    return center, width


@click.command("show")
@click.argument("manifest", type=click.Path(exists=True, file_okay=False))
@click.argument("series_key")
@output_option("PNG to write")
@click.option(
    "--window",
    default=None,
    callback=parse_window,
    help="Preset name (lung, bone, brain, ...) or CENTER,WIDTH; default: the header's window.",
)
@click.option("--mask", "annotation_key", default=None, help="Annotation key (SEG / RTSTRUCT) to overlay.")
@click.option("--convention", type=click.Choice(sorted(CONVENTIONS)), default="radiological", show_default=True)
@click.option("--montage", default=12, show_default=True, help="Axial slices in the montage (0: none).")
@on_irregular
@philips_scaling
@max_voxels
@storage_option
def command(
    manifest: str,
    series_key: str,
    output: str,
    window: Window,
    annotation_key: str | None,
    convention: str,
    montage: int,
    on_irregular: str,
    philips_scaling: str,
    max_voxels: int | None,
    storage_option: tuple[str, ...],
) -> None:
    """Write axial, coronal and sagittal views with R/L, A/P, S/I labels and an axial
    montage of SERIES_KEY (from MANIFEST) to a PNG, optionally with a mask overlay."""
    from dicomml import load_mask, load_series
    from dicomml.limits import DEFAULT_MAX_VOXELS

    opened = open_manifest(manifest, storage_option)
    volume = load_series(
        opened,
        series_key,
        on_irregular=on_irregular,  # type: ignore[arg-type]
        philips_scaling=philips_scaling,  # type: ignore[arg-type]
        max_voxels=max_voxels or DEFAULT_MAX_VOXELS,
    )
    mask = None if annotation_key is None else load_mask(opened, annotation_key, reference=volume)
    path = save_png(volume, output, window=window, mask=mask, convention=convention, montage=montage)
    click.echo(f"wrote {path}")
