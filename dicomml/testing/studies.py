"""Synthetic studies: several MR series of one phantom, on grids with known spacing, orientation and offset.

The phantom is a function of patient coordinates (LPS+ mm), so every series
samples the same anatomy and a correct resampling onto another series' grid
reproduces that series' voxels up to interpolation error. Used by the study
tests and ``benchmarks/bench_study.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from dicomml.dicom.synthetic import write_slice

__all__ = ["PHANTOM_CENTRE", "SeriesGrid", "phantom", "write_study"]

#: Centre (LPS+ mm) of the phantom's bright blob.
PHANTOM_CENTRE = np.array([12.0, -18.0, 25.0])


def phantom(lps: np.ndarray) -> np.ndarray:
    """Intensity at points ``(..., 3)`` (LPS+ mm): a bright Gaussian blob on a dimmer, wider one, in [0, ~1500]."""
    d1 = np.sum((lps - PHANTOM_CENTRE) ** 2, axis=-1)
    d2 = np.sum((lps - np.array([-30.0, 20.0, -10.0])) ** 2, axis=-1)
    return 1000.0 * np.exp(-d1 / (2 * 14.0**2)) + 500.0 * np.exp(-d2 / (2 * 40.0**2))


@dataclass(frozen=True)
class SeriesGrid:
    """Where one synthetic series samples the phantom.

    Attributes
    ----------
    description
        SeriesDescription.
    shape
        (slices, rows, columns).
    spacing
        (slice step, between rows, between columns), mm.
    orientation
        ImageOrientationPatient (row cosine, column cosine), LPS+.
    centre
        LPS+ mm of the grid's centre voxel.
    number
        SeriesNumber.
    acquisition_time
        AcquisitionTime (HHMMSS).
    extra
        More header elements by keyword.
    """

    description: str
    shape: tuple[int, int, int] = (40, 64, 64)
    spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    number: int = 1
    acquisition_time: str = "090000"
    extra: dict[str, object] = field(default_factory=dict)

    def positions(self) -> np.ndarray:
        """(slices, 3) ImagePositionPatient."""
        row, col = np.asarray(self.orientation[:3]), np.asarray(self.orientation[3:])
        normal = np.cross(row, col)
        n, r, c = self.shape
        step, dr, dc = self.spacing
        corner = np.asarray(self.centre) - ((c - 1) / 2 * dc * row + (r - 1) / 2 * dr * col + (n - 1) / 2 * step * normal)
        return corner + np.arange(n)[:, None] * step * normal

    def world(self, k: int) -> np.ndarray:
        """(rows, columns, 3) LPS+ mm of slice ``k``'s pixel centres."""
        row, col = np.asarray(self.orientation[:3]), np.asarray(self.orientation[3:])
        _, r, c = self.shape
        _, dr, dc = self.spacing
        jj, ii = np.meshgrid(np.arange(r), np.arange(c), indexing="ij")
        return self.positions()[k] + ii[..., None] * dc * row + jj[..., None] * dr * col


def write_study(
    folder: str | Path,
    grids: Sequence[SeriesGrid],
    *,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    patient_id: str = "SYNTHETIC",
) -> dict[str, list[Path]]:
    """Write one MR study: one series per grid, all sampling :func:`phantom`, in one frame of reference.

    Parameters
    ----------
    folder
        Created; each series goes to ``folder/<series number>_<description>``.
    grids
        The series.
    study_uid, frame_of_reference_uid
        Shared by every series; new ones by default.
    patient_id
        PatientID.

    Returns
    -------
    dict
        Series description to its files, in slice order.
    """
    study_uid = study_uid or generate_uid()
    frame = frame_of_reference_uid or generate_uid()
    out: dict[str, list[Path]] = {}
    for grid in grids:
        target = Path(folder) / f"{grid.number:02d}_{grid.description}"
        target.mkdir(parents=True, exist_ok=True)
        series_uid = generate_uid()
        extra = {
            "StudyInstanceUID": study_uid,
            "FrameOfReferenceUID": frame,
            "PatientID": patient_id,
            "SeriesDescription": grid.description,
            "SeriesNumber": grid.number,
            "AcquisitionTime": grid.acquisition_time,
            "SliceThickness": grid.spacing[0],
            **grid.extra,
        }
        out[grid.description] = [
            write_slice(
                target / f"IM{k:05d}.dcm",
                np.clip(np.rint(phantom(grid.world(k))), 0, 65535).astype(np.uint16),
                position=grid.positions()[k],
                orientation=grid.orientation,
                pixel_spacing=grid.spacing[1:],
                series_uid=series_uid,
                instance=k + 1,
                modality="MR",
                rescale=None,
                extra=extra,
            )
            for k in range(grid.shape[0])
        ]
    return out
