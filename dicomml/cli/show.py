"""``dicomml show MANIFEST SERIES_KEY -o out.png``: orthogonal views and a montage of a series."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

from dicomml.cli._options import max_voxels, on_irregular, philips_scaling
from dicomml.cli._paths import output_option, png_output
from dicomml.cli._remote import open_manifest, storage_option

if TYPE_CHECKING:  # nibabel, pydicom, PIL and pyarrow: imported to run, not for --help
    import numpy as np

    from dicomml.indexer.manifest import Manifest
    from dicomml.viz.window import Window

__all__ = ["command", "parse_window"]

#: The display conventions of ``--convention``: the keys of :data:`dicomml.viz.planes.CONVENTIONS`, written out
#: because that module imports nibabel (tests/cli/test_help_imports.py checks that the two agree).
_CONVENTIONS = ("neurological", "radiological")


def parse_window(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> Window:
    """Click callback: ``"lung"`` stays a preset name; ``"40,400"`` -> ``(40.0, 400.0)``; ``None`` stays.

    Anything else is a usage error (exit 2) with one message.
    """
    if value is None:
        return value
    if "," in value:
        try:
            center, width = (float(v) for v in value.split(","))
        except ValueError:
            pass
        else:
            if math.isfinite(center) and math.isfinite(width) and width > 0:
                return center, width
    from dicomml.transforms.intensity import WINDOW_PRESETS  # the preset table (with torch, which applying a preset needs)

    if value in WINDOW_PRESETS:
        return value
    raise click.BadParameter(
        f"{value!r}: expected a preset ({', '.join(WINDOW_PRESETS)}) or CENTER,WIDTH with a positive width, such as 40,400",
        param_hint="--window",
    )


@click.command("show")
@click.argument("manifest", type=click.Path(exists=True, file_okay=False))
@click.argument("series_key")
@output_option("PNG to write (.png)", png_output)
@click.option(
    "--window",
    default=None,
    callback=parse_window,
    help="Preset name (lung, bone, brain, ...) or CENTER,WIDTH; default: the header's window.",
)
@click.option("--mask", "annotation_key", default=None, help="Annotation key (SEG / RTSTRUCT) to overlay.")
@click.option("--convention", type=click.Choice(_CONVENTIONS), default="radiological", show_default=True)
@click.option("--montage", type=click.IntRange(min=0), default=12, show_default=True, help="Axial slices in the montage (0: none).")
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
    montage of SERIES_KEY (from MANIFEST) to a PNG, optionally with a mask overlay.

    A series of 2D images (radiographs, mammograms, ultrasound...) or of
    colour images is drawn image by image instead (the first 8), as
    displayed: mammograms in the breast convention, CR and DX in the chest
    one, with their sides.
    """
    from dicomml import load_mask, load_series
    from dicomml.limits import DEFAULT_MAX_VOXELS
    from dicomml.viz import save_png

    opened = open_manifest(manifest, storage_option)
    files = _image_files(opened, series_key)
    if files is not None:
        path = _show_images(opened, files, annotation_key, window, output)
        click.echo(f"wrote {path}")
        return
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


#: Images of a 2D series drawn by ``show``.
MAX_IMAGES = 8
#: The display convention of a modality's images (others keep their stored orientation).
_DISPLAY = {"MG": "breast", "CR": "chest", "DX": "chest"}


def _image_files(manifest: Manifest, series_key: str) -> list[tuple[str, str]] | None:
    """(path, modality) of each file of a series of 2D or colour images; None for a series to draw as a volume."""
    from dicomml.imaging2d.modalities import IMAGE_MODALITIES, is_colour

    usable = manifest.table("series", ["usable"], [("series_key", "==", series_key)]).column("usable").to_pylist()
    if not usable or usable[0]:
        return None  # an unknown key is load_series' error to give; a usable one is a volume
    columns = ["path", "modality", "samples_per_pixel", "photometric_interpretation"]
    rows = manifest.table("instances", columns, [("series_key", "==", series_key)]).to_pylist()
    # no volume whatever its modality (CT fusion captures)
    colour = any(is_colour(row["samples_per_pixel"], row["photometric_interpretation"]) for row in rows)
    if not rows or not colour and any(row["modality"] not in IMAGE_MODALITIES for row in rows):
        return None
    return sorted((row["path"], row["modality"]) for row in rows)


def _show_images(manifest: Manifest, files: list[tuple[str, str]], annotation_key: str | None, window: Window, output: str) -> Any:
    import numpy as np

    from dicomml.imaging2d import load_image
    from dicomml.imaging2d.masks import displayed_masks
    from dicomml.viz import save_images_png
    from dicomml.viz.window import window_limits

    voi: Any = "header"
    if window is not None:  # a preset name or (center, width), as a VOI window
        low, high = window_limits(window, np.zeros(1), {})
        voi = ((low + high) / 2, high - low)
    annotation = [] if annotation_key is None else [str(manifest.annotation(annotation_key)["path"])]
    images: list[Any] = []
    masks: list[np.ndarray | None] = []
    labels: list[str] = []
    for path, modality in files[:MAX_IMAGES]:
        image = load_image(path, voi=voi, display=_DISPLAY.get(modality), remote=manifest.remote)
        found, names = displayed_masks(annotation, image.meta, manifest.remote) if annotation else (None, [])
        images.append(image)
        masks.append(found)
        labels = labels or names
    return save_images_png(images, output, masks=masks, labels=labels)
