"""A Volume as NIfTI-1 through nibabel, laid out as dcm2niix and most NIfTI tools expect."""

from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import numpy as np

from dicomml.geometry.directions import fsl_bvecs, reaxis_table
from dicomml.paths import atomic_output
from dicomml.volume import Volume

__all__ = ["diffusion_paths", "save_nifti", "to_nifti"]

#: NIfTI ``qform_code`` / ``sform_code`` 1: scanner-based anatomical coordinates, as dcm2niix writes.
SCANNER_XFORM = 1


def to_nifti(volume: Volume) -> nib.Nifti1Image:
    """The NIfTI-1 image of a Volume, with the same voxels at the same RAS+ places.

    The array's axes are reversed: NIfTI's i, j, k are the DICOM column, row
    and slice (as in dcm2niix's output, up to its row flip), and leading axes
    (time, echo) become the 4th and later NIfTI dimensions. The affine's
    columns follow the axes, so each voxel keeps its RAS+ millimetre
    position; it is written as both sform and qform, code 1 (scanner), units
    mm; a sheared affine (a gantry tilt kept) as the sform only, qform code 0
    (a shear from rounded slice positions, which moves no corner voxel by a
    hundredth of a voxel, keeps the qform, as dcm2niix does);
    a nominal one (``meta["nominal_affine"]``: slices kept without positions or
    with gaps) with both codes 0, unknown. The 4th dimension's step is the first volume's ``repetition_time`` in
    seconds (``meta["volumes"]``) when known, as in dcm2niix's output. No
    data are copied: the reversed C-order array is NIfTI's Fortran order.

    Parameters
    ----------
    volume
        Any Volume; bool data become uint8, and 64-bit integers the smallest
        integer type that holds their values (NIfTI-1 tools rarely read int64).

    Returns
    -------
    nibabel.Nifti1Image

    Examples
    --------
    >>> img = to_nifti(Volume(np.zeros((2, 3, 4), np.int16), np.diag([3.0, 2.0, 1.0, 1.0])))
    >>> img.shape, nib.aff2axcodes(img.affine)
    ((4, 3, 2), ('S', 'A', 'R'))
    """
    data = _nifti_dtype(volume)
    affine = volume.affine[:, [2, 1, 0, 3]]
    image = nib.Nifti1Image(data.T, affine)
    # a stack kept irregular (no positions, gaps) has a nominal affine: code 0 (unknown) says so to every reader
    scanner = 0 if volume.meta.get("nominal_affine") else SCANNER_XFORM
    image.set_sform(affine, code=scanner)
    image.set_qform(affine, code=scanner)  # nibabel keeps the rotation and zooms, without the shear
    # a sheared grid (gantry tilt kept) would be placed elsewhere by readers that prefer the qform (ITK), silently:
    # code 0 leaves the sform as the geometry; the shear of rounded slice positions moves no voxel that far
    if not _placed_alike(image.get_qform(), affine, image.shape[:3]):
        image.set_qform(affine, code=0)
    image.header.set_xyzt_units(xyz="mm", t="sec")
    repetition = (volume.meta.get("volumes") or {}).get("repetition_time") or [None]
    if volume.axes and repetition[0]:  # the time step FSL and nilearn read, as dcm2niix writes it
        zooms = image.header.get_zooms()
        image.header.set_zooms((*zooms[:3], repetition[0] / 1000.0, *zooms[4:]))
    return image


def save_nifti(volume: Volume, path: str | Path) -> Path:
    """Write ``volume`` as NIfTI-1 (``.nii`` or gzipped ``.nii.gz``); see :func:`to_nifti`.

    A diffusion series (b-values in ``meta["volumes"]``) also gets FSL's
    ``.bval`` and ``.bvec`` beside it, as dcm2niix writes them: b-values in
    s/mm², gradients along the NIfTI's voxel axes with the first component
    negated when the affine's determinant is positive (:func:`diffusion_paths`
    names them).

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> save_nifti(volume, "ct.nii.gz")  # doctest: +SKIP
    """
    path = Path(path)
    image = to_nifti(volume)
    sidecars = diffusion_paths(volume, path)
    if sidecars:
        table = reaxis_table(volume.meta, volume.affine, image.affine)["volumes"]
        with atomic_output(sidecars[0]) as tmp:
            tmp.write_text(" ".join(f"{float(b):g}" for b in table["b_value"]) + "\n")
        if len(sidecars) > 1:
            rows = fsl_bvecs(np.asarray(table["gradient"], dtype=np.float64), image.affine) + 0.0  # + 0.0: no "-0"
            with atomic_output(sidecars[1]) as tmp:
                tmp.write_text("".join(" ".join(f"{v:.6g}" for v in row) + "\n" for row in rows))
    with atomic_output(path) as tmp:
        nib.save(image, tmp)
    return path


def diffusion_paths(volume: Volume, path: str | Path) -> tuple[Path, ...]:
    """The files :func:`save_nifti` writes beside ``path``: the ``.bval`` of a diffusion series with every
    b-value known, and its ``.bvec`` when the gradients are known too; none for any other volume."""
    table = volume.meta.get("volumes") or {}
    b_values = table.get("b_value")
    if not volume.axes or not b_values or any(b is None for b in b_values):
        return ()
    name = str(path)
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name.removesuffix(".nii")
    return (Path(stem + ".bval"), Path(stem + ".bvec")) if "gradient" in table else (Path(stem + ".bval"),)


#: How far (in voxels of the smallest spacing) a qform may place a corner voxel from the sform and still be written.
QFORM_TOLERANCE = 0.01


def _placed_alike(qform: np.ndarray, affine: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether ``qform`` puts every corner voxel of ``shape`` within :data:`QFORM_TOLERANCE` voxel of where ``affine`` does."""
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in shape])), dtype=np.float64).T
    moved = (qform[:3, :3] - affine[:3, :3]) @ corners + (qform[:3, 3] - affine[:3, 3])[:, None]
    return bool(np.abs(moved).max() <= QFORM_TOLERANCE * np.linalg.norm(affine[:3, :3], axis=0).min())


def _nifti_dtype(volume: Volume) -> np.ndarray:
    data = volume.array
    if data.dtype == np.bool_:
        return data.astype(np.uint8)
    if data.dtype in (np.int64, np.uint64) and data.size:
        # NIfTI-1 readers rarely take 64-bit integers: use the smallest type that holds the values.
        return data.astype(np.result_type(np.min_scalar_type(data.min()), np.min_scalar_type(data.max())))
    return data
