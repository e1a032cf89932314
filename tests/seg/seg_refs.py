"""Reference grids for the mask tests, built from outside references.

The grids come from dcm2niix's NIfTI files (read by nibabel), from NRRD label
maps (pynrrd), from highdicom's own volumes, or from the image files' headers;
the masks are compared with those references after nibabel's axis alignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pydicom
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from dicomml.geometry import LPS_TO_RAS, analyze_stack, dicom_affine
from dicomml.volume import Volume


def nifti_grid(path: Path) -> Volume:
    """A Volume on the grid of a NIfTI file (its (x, y, z) order, nibabel's affine)."""
    image = nib.load(str(path))
    return Volume(np.zeros(image.shape[:3], np.int16), image.affine)


def header_grid(paths: Sequence[Path]) -> Volume:
    """A Volume on the (slice, row, column) grid of single-frame files, from their headers only."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    positions = np.array([h.ImagePositionPatient for h in headers], dtype=float)
    stack = analyze_stack(positions, headers[0].ImageOrientationPatient)
    first = positions[stack.order[0]]
    affine = dicom_affine(headers[0].ImageOrientationPatient, headers[0].PixelSpacing, first, stack.step)
    shape = (stack.n_positions, int(headers[0].Rows), int(headers[0].Columns))
    return Volume(np.zeros(shape, np.int16), affine)


def nrrd_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A NRRD label map and its RAS+ affine (pynrrd; space left-posterior-superior)."""
    array, header = nrrd.read(str(path))
    assert header["space"] == "left-posterior-superior"
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(header["space directions"], dtype=float).T
    lps[:3, 3] = header["space origin"]
    return array, LPS_TO_RAS @ lps


def onto(array: np.ndarray, affine: np.ndarray, target_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute and flip the last three axes of ``array`` into ``target_affine``'s axis codes (nibabel)."""
    transform = ornt_transform(io_orientation(affine), io_orientation(target_affine))
    lead = array.ndim - 3
    full = np.vstack([[[i, 1] for i in range(lead)], transform + [lead, 0]]) if lead else transform
    moved = apply_orientation(array, full)
    return moved, affine @ inv_ornt_aff(transform, array.shape[-3:])


def ct2_files() -> list[Path]:
    """pydicom's own test series dicomdirtests/77654033/CT2 (4 slices, a 202.5 mm gap)."""
    from pydicom.data import get_testdata_file

    folder = Path(get_testdata_file("dicomdirtests/77654033/CT2"))
    return sorted(folder.iterdir())


def regular_grid_over(paths: Sequence[Path], spacing: float) -> Volume:
    """The equidistant grid that spans single-frame files' slices at ``spacing`` mm (headers only)."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    positions = np.array([h.ImagePositionPatient for h in headers], dtype=float)
    stack = analyze_stack(positions, headers[0].ImageOrientationPatient)
    normal = stack.step / np.linalg.norm(stack.step)
    count = int(round((stack.offsets[-1] - stack.offsets[0]) / spacing)) + 1
    affine = dicom_affine(
        headers[0].ImageOrientationPatient, headers[0].PixelSpacing, positions[stack.order[0]], normal * spacing
    )
    return Volume(np.zeros((count, int(headers[0].Rows), int(headers[0].Columns)), np.int16), affine)


def write_seg(
    path: Path,
    source_images: list,
    pixel_array,
    segmentation_type: str,
    n_segments: int,
    **kwargs,
) -> Path:
    """Write a SEG with highdicom (segment i labelled ``f"segment {i}"``, property Tissue)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=f"segment {i}",
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for i in range(1, n_segments + 1)
    ]
    seg = hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=pixel_array,
        segmentation_type=segmentation_type,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="dicomml tests",
        manufacturer_model_name="none",
        software_versions="0",
        device_serial_number="0",
        **kwargs,
    )
    seg.save_as(path)
    return path
