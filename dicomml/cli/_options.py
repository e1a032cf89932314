"""Options shared by the subcommands that load a series (``show``, ``export``)."""

from __future__ import annotations

import click

from dicomml.dicom.philips import PHILIPS_SCALINGS

__all__ = ["on_irregular", "philips_scaling"]

on_irregular = click.option(
    "--on-irregular", type=click.Choice(["raise", "resample", "keep"]), default="raise", show_default=True,
    help="Gaps, tilt or uneven slices: raise an error, resample to a regular grid (as dcm2niix), or keep the slices as they are.",
)
philips_scaling = click.option(
    "--philips-scaling", type=click.Choice(PHILIPS_SCALINGS), default="float", show_default=True,
    help="Philips MR: private floating-point values (as dcm2niix) or the standard rescale only (display).",
)
