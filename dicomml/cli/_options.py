"""Options shared by the subcommands that load a series (``show``, ``export``; ``--max-voxels`` also ``preprocess``)."""

from __future__ import annotations

import click

from dicomml.dicom.philips import PHILIPS_SCALINGS
from dicomml.limits import DEFAULT_MAX_VOXELS

__all__ = ["max_voxels", "on_irregular", "philips_scaling"]

on_irregular = click.option(
    "--on-irregular",
    type=click.Choice(["raise", "resample", "keep"]),
    default="raise",
    show_default=True,
    help="Gaps, tilt or uneven slices: raise an error, resample to a regular grid (as dcm2niix), or keep the slices as they are.",
)
philips_scaling = click.option(
    "--philips-scaling",
    type=click.Choice(PHILIPS_SCALINGS),
    default="float",
    show_default=True,
    help="Philips MR: private floating-point values (as dcm2niix) or the standard rescale only (display).",
)
max_voxels = click.option(
    "--max-voxels",
    type=click.IntRange(min=1),
    default=None,
    envvar="DICOMML_MAX_VOXELS",
    show_envvar=True,
    help=f"Most voxels one assembled volume may have (a guard against hostile headers) [{DEFAULT_MAX_VOXELS}; "
    "preprocess: the config's max_voxels]; raise it for larger data.",
)
