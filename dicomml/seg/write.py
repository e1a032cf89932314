"""Write-back: a prediction on any grid, brought onto its source series' grid, as a DICOM SEG.

The adapter layer reads the prediction (array + affine, Volume, MONAI
MetaTensor, NIfTI file) and the source series' headers; the core resamples
the prediction onto the source's exact grid (one plane per source slice, in
position order) and highdicom encodes the SEG with segment descriptions from
the label map and references to every source instance.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from pydicom.charset import convert_encodings
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.uid import UID
from pydicom.valuerep import DA, TM

from dicomml._optional import require
from dicomml.assemble.plan import ORIENTATION_TOLERANCE
from dicomml.config import Label, parse_labels
from dicomml.dicom.frames import frame_table
from dicomml.dicom.io import read_dataset
from dicomml.errors import ConfigError, InvalidDicomFileError, SegReferenceError
from dicomml.geometry import analyze_stack, dicom_affine
from dicomml.paths import atomic_output
from dicomml.transforms.functional import resample_image, resample_mask
from dicomml.volume import Volume

if TYPE_CHECKING:
    import highdicom as hd

    from dicomml.indexer.manifest import Manifest
    from dicomml.sources import Remote
else:  # optional: the [seg] extra
    hd = require("highdicom", extra="seg", feature="write-back to DICOM SEG and RTSTRUCT (dicomml.write_seg)")
find_objects = require("scipy.ndimage", extra="seg", feature="write-back to DICOM SEG (dicomml.write_seg)").find_objects

__all__ = [
    "PATIENT_STUDY",
    "SourceGrid",
    "check_frame_of_reference",
    "hold_text",
    "load_prediction",
    "prediction_file",
    "prepare",
    "source_grid",
    "to_source_grid",
    "write_seg",
]

_log = logging.getLogger(__name__)

#: What a prediction can be: an array or tensor (with ``affine=``), a Volume, a MetaTensor, a NIfTI path.
Prediction = Union[np.ndarray, torch.Tensor, Volume, str, "os.PathLike[str]"]
#: A label map: ``{name: value}``, channel names, or :class:`dicomml.config.Label` objects.
Labels = Mapping[str, Any] | Sequence[Any]
_KINDS = ("binary", "fractional", "labelmap")
_ANATOMY = hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure")
_TISSUE = hd.sr.CodedConcept("85756007", "SCT", "Tissue")


@dataclass(frozen=True)
class SourceGrid:
    """The source series: its header datasets sorted by position, and its voxel grid.

    Attributes
    ----------
    datasets
        One header per slice, sorted along the slice normal; for an enhanced
        multi-frame source, its one header.
    affine
        4x4 affine of the (slice, row, column) grid, indices to RAS+ mm; for
        an irregular stack (gaps, tilt) that of the first slice.
    planes
        Per slice, the 4x4 affine of that slice alone (the exact place of
        each plane, whatever the spacing between them).
    shape
        (slices, rows, columns).
    regular
        Whether one affine holds every slice (equidistant, untilted).
    frames
        For an enhanced multi-frame source, the 1-based frame number of
        each slice; empty for single-frame images.
    """

    datasets: tuple[Dataset, ...]
    affine: np.ndarray
    planes: tuple[np.ndarray, ...]
    shape: tuple[int, int, int]
    regular: bool
    frames: tuple[int, ...] = ()

    def in_frame_order(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` (slices first, in position order) in the order of the source's frames (a no-op for single-frame images)."""
        if not self.frames:
            return pixels
        out = np.empty_like(pixels)
        out[np.asarray(self.frames) - 1] = pixels
        return out


def _read_sources(source: Any, manifest: Manifest | str | os.PathLike[str] | None, remote: Remote | None) -> list[Dataset]:
    if isinstance(source, str) and manifest is not None:
        from dicomml.indexer.manifest import Manifest

        opened = Manifest.open(manifest)
        source, remote = opened.series_files(source)["path"].tolist(), remote or opened.remote  # a remote series through its Remote
    elif isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise ConfigError(f"{source}: a source is a series key with manifest=, a folder or a list of files")
        return [_clean(ds) for ds in _folder_images(folder)]
    datasets = [item if isinstance(item, Dataset) else read_dataset(item, pixels=False, remote=remote) for item in source]
    return [_clean(ds) for ds in datasets]


def _folder_images(folder: Path) -> list[Dataset]:
    """The image headers in a folder. A file that is not DICOM (a README, ``.DS_Store``, the NIfTI prediction)
    or not an image (a SEG or RTSTRUCT beside its series, a report, a presentation state, a DICOMDIR) is
    skipped; an image that cannot be read (truncated) still raises, as a missing slice would go unseen."""
    from dicomml.indexer.schema import ANNOTATION_MODALITIES

    images: list[Dataset] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = read_dataset(path, pixels=False)
        except InvalidDicomFileError as exc:
            if isinstance(exc.__cause__, InvalidDicomError):  # pydicom's "not DICOM": no DICM prefix
                continue
            raise
        meta = getattr(ds, "file_meta", None) or Dataset()
        image_class = "Image Storage" in UID(str(meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID") or "")).name
        if ds.get("Modality") in ANNOTATION_MODALITIES or ("Rows" not in ds and not image_class):
            continue  # a SEG or RTSTRUCT; without Rows, not of an image class: a report, presentation state, DICOMDIR
        images.append(ds)
    return images


#: Type 2 attributes of the Patient and General Study modules that a SEG and an RTSTRUCT copy from their source.
PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
    "StudyDate",
    "StudyTime",
)
#: Type 2 attributes copied from the source; absent ones are written empty (unknown), as the standard means them.
_TYPE2 = (*PATIENT_STUDY, "PositionReferenceIndicator", "SliceThickness")


def _sex(text: str) -> None:
    if text not in ("M", "F", "O"):
        raise ValueError("not M, F or O")


#: Those of them highdicom parses, with the parse: a value that fails it is written empty too (unknown).
_PARSED: dict[str, Callable[[str], object]] = {"PatientBirthDate": DA, "StudyDate": DA, "StudyTime": TM, "PatientSex": _sex}


def _unparsable(ds: Dataset) -> list[str]:
    """Keywords of :data:`_PARSED` whose value does not parse, read from the raw bytes:
    pydicom's warning on converting it would quote the value (a birth date) into the logs."""
    out = []
    for keyword, parse in _PARSED.items():
        if keyword not in ds:
            continue
        value = ds.get_item(keyword).value
        text = (value.decode("latin-1") if isinstance(value, bytes) else str(value or "")).strip(" \x00")
        try:
            if text:
                parse(text)
        except ValueError:
            out.append(keyword)
    return out


def hold_text(ds: Dataset, texts: Sequence[str]) -> None:
    """Declare in ``ds`` a character set that holds ``texts``, ours (labels, descriptions), written into it.

    The repertoire copied from the source (cleaned by :func:`_clean`) may
    lack them (none declared is ASCII; ISO_IR 100 has no kanji), and pydicom
    would then write ``?`` in their place. It is kept when it holds them,
    else replaced by UTF-8 (ISO_IR 192), which holds every value: the copied
    ones are decoded first, so that they are written again in UTF-8, not
    relabelled.
    """
    ours = "".join(text for text in texts if not text.isascii())
    if not ours:
        return
    declared = ds.get("SpecificCharacterSet")
    charsets = [declared] if isinstance(declared, str) else list(declared or [])
    if len(charsets) == 1 and charsets[0]:  # one repertoire, without code extensions
        try:
            ours.encode(convert_encodings(charsets)[0])
            return
        except (UnicodeEncodeError, LookupError):
            pass
    ds.decode()
    ds.SpecificCharacterSet = "ISO_IR 192"


def _clean(ds: Dataset) -> Dataset:
    """A header highdicom accepts: an empty (0008,0005) Specific Character Set value, or ISO_IR 6, means the
    default repertoire (dropped when alone, named ISO 2022 IR 6 before code extensions); absent Type 2
    attributes (:data:`_TYPE2`: patient, study, frame of reference), and dates, times or a sex that do not
    parse, are empty; an enhanced image's pixel measures and orientation are shared (highdicom reads them there only; :func:`source_grid`
    checks they are the same on every frame)."""
    found = ds.get("SpecificCharacterSet")
    # ISO_IR 6, no defined term but met in files (pydicom reads it), names the default repertoire too
    charsets = ["" if c == "ISO_IR 6" else c for c in ([found] if isinstance(found, str) else list(found or []))]
    charset = "SpecificCharacterSet" in ds and not (charsets and all(charsets))
    emptied = [keyword for keyword in _TYPE2 if keyword not in ds] + _unparsable(ds)
    per_frame = []
    if int(ds.get("NumberOfFrames", 1) or 1) > 1 and ds.get("PerFrameFunctionalGroupsSequence"):
        shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else Dataset()
        first = ds.PerFrameFunctionalGroupsSequence[0]
        per_frame = [k for k in ("PixelMeasuresSequence", "PlaneOrientationSequence") if k not in shared and k in first]
    if not (charset or emptied or per_frame):
        return ds
    ds = copy.deepcopy(ds)  # the caller's dataset stays as it was (a pydicom copy shares its elements)
    if charset and any(charsets):
        ds.SpecificCharacterSet = ["ISO 2022 IR 6" if not c else c for c in charsets]
    elif charset:
        del ds.SpecificCharacterSet
    for keyword in emptied:
        setattr(ds, keyword, "")
    if per_frame:
        if not ds.get("SharedFunctionalGroupsSequence"):
            ds.SharedFunctionalGroupsSequence = [Dataset()]
        for keyword in per_frame:
            setattr(ds.SharedFunctionalGroupsSequence[0], keyword, ds.PerFrameFunctionalGroupsSequence[0][keyword].value)
    return ds


def _with_orientation(ds: Dataset, orientation: Any) -> Dataset:
    """A copy of ``ds`` with ``orientation`` as its (0020,0037) Image Orientation (Patient); ``ds`` itself if it has it."""
    if ds.ImageOrientationPatient == orientation:
        return ds
    ds = copy.deepcopy(ds)  # a pydicom copy shares its elements: the caller's dataset would change too
    ds.ImageOrientationPatient = list(orientation)
    return ds


def source_grid(source: Any, *, manifest: Manifest | str | os.PathLike[str] | None = None, remote: Remote | None = None) -> SourceGrid:
    """Headers and grid of the series a prediction was computed from.

    Parameters
    ----------
    source
        A ``series_key`` of ``manifest``, a folder, or the series' files or
        pydicom Datasets: single-frame images of one series, or one enhanced
        multi-frame image (one frame per slice position).
    manifest
        A :class:`dicomml.Manifest` or its folder, when ``source`` is a key.
    remote
        How to reach source URLs (storage options, credentials): a
        :class:`dicomml.sources.Remote`; default: the manifest's.

    Returns
    -------
    SourceGrid

    Raises
    ------
    SegReferenceError
        If the files are not one stack of planes of one series (several
        series, several images or frames at one position: time points,
        echoes), or a Siemens mosaic (whose slices a SEG or RTSTRUCT cannot
        reference one by one).

    Notes
    -----
    In a folder, files that are not DICOM (a README, ``.DS_Store``, a NIfTI)
    and DICOM objects that are not images (a SEG or RTSTRUCT beside the
    series, reports, presentation states) are skipped; images of several
    series are refused.
    """
    datasets = _read_sources(source, manifest, remote)
    if not datasets:
        folder = isinstance(source, (str, os.PathLike)) and Path(source).is_dir()
        raise SegReferenceError(f"{source}: no source files{' (none of its files is a DICOM image)' if folder else ''}", path=str(source))
    name = str(getattr(datasets[0], "filename", source))
    multiframe = any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in datasets)
    if multiframe and len(datasets) > 1:
        raise SegReferenceError(f"{name}: {len(datasets)} multi-frame images; pass one enhanced image or single-frame images", path=name)
    if multiframe:  # an enhanced image: one plane per frame, from its functional groups
        table = frame_table(datasets[0])
        orientations_found, spacings, positions = table.orientations, table.pixel_spacing, table.positions
        frames = table.frame_numbers
    else:
        tables = [frame_table(ds) for ds in datasets]  # one plane each; an absent value is NaN, refused below
        for ds, table in zip(datasets, tables):
            if table.mosaic:  # its tiles are slices, but a SEG or RTSTRUCT can only name the whole image
                where = str(getattr(ds, "filename", name))
                raise SegReferenceError(
                    f"{where}: a Siemens mosaic ({table.mosaic[1]} slices tiled in one image) cannot be referenced slice by "
                    "slice: a SEG or RTSTRUCT references whole images (or frames); convert the series to one image or frame "
                    "per slice (single-frame or enhanced MR DICOM) first and write back onto that",
                    path=where,
                )
        orientations_found = np.concatenate([t.orientations for t in tables])
        spacings = np.concatenate([t.pixel_spacing for t in tables])
        positions = np.concatenate([t.positions for t in tables])
        frames = np.zeros(len(datasets), np.int64)
    if not all(np.all(np.isfinite(values)) for values in (positions, orientations_found, spacings)):
        raise SegReferenceError(
            f"{name}: a source plane has no ImagePositionPatient, ImageOrientationPatient or PixelSpacing (a 2D image "
            "without patient geometry?); write-back needs the planes of a volume",
            path=name,
        )
    series = sorted({str(ds.get("SeriesInstanceUID", "")) for ds in datasets})
    if len(series) != 1:
        where = str(source) if isinstance(source, (str, os.PathLike)) else name
        shown = ", ".join(series[:3]) + (", ..." if len(series) > 3 else "")
        raise SegReferenceError(
            f"{where}: the source holds images of {len(series)} series ((0020,000E) Series Instance UID {shown}); "
            "pass the files of one series (a folder per series, or a manifest's series key)",
            path=where,
        )
    worst = float(np.max(np.abs(orientations_found - orientations_found[0])))
    if worst > ORIENTATION_TOLERANCE:
        raise SegReferenceError(
            f"{name}: (0020,0037) ImageOrientationPatient varies by {worst:.2g} between the source planes; "
            "expected the slices of one volume",
            path=name,
        )
    if not multiframe and worst > 0:  # rounding noise the loader accepts; highdicom wants one orientation exactly
        datasets = [_with_orientation(ds, datasets[0].ImageOrientationPatient) for ds in datasets]
    if not np.allclose(spacings, spacings[0], rtol=1e-4, atol=0):
        raise SegReferenceError(f"{name}: the source planes have different pixel spacings; expected one grid", path=name)
    orientation, spacing = orientations_found[0], spacings[0]
    stack = analyze_stack(positions, orientation)
    if np.any(stack.counts > 1):
        raise SegReferenceError(
            f"{name}: several source images share a slice position (time points or echoes); pass the images of one volume",
            path=name,
        )
    count = len(positions)
    ordered = datasets if multiframe else tuple(datasets[i] for i in stack.order)
    normal = stack.step / max(float(np.linalg.norm(stack.step)), 1e-12) if count > 1 else stack.step
    planes = tuple(dicom_affine(orientation, spacing, positions[i], normal) for i in stack.order)
    regular = count == 1 or (stack.uniform and stack.missing == 0 and stack.tilt_deg < 0.01)
    step = stack.step if count > 1 else normal
    affine = dicom_affine(orientation, spacing, positions[stack.order[0]], step)
    shape = (count, int(datasets[0].Rows), int(datasets[0].Columns))
    return SourceGrid(
        tuple(ordered), affine, planes, shape, bool(regular), tuple(int(frames[i]) for i in stack.order) if multiframe else ()
    )


def prediction_file(prediction: Prediction) -> str | None:
    """The file a prediction was read from, to name in its errors; None for one in memory."""
    return os.fspath(prediction) if isinstance(prediction, (str, os.PathLike)) else None


def load_prediction(prediction: Prediction, affine: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """A prediction as (array, affine): ``(i, j, k)`` or ``(C, i, j, k)``, indices to RAS+ mm.

    Parameters
    ----------
    prediction
        A numpy array or torch tensor (``affine=`` required), a
        :class:`dicomml.Volume`, a MONAI ``MetaTensor`` (its ``affine``,
        RAS+), or a NIfTI file (nibabel; a 4th axis is taken as channels). A
        leading batch axis of size 1 is dropped.
    affine
        4x4 affine (RAS+ mm) for a plain array or tensor; overrides the
        MetaTensor's.

    Raises
    ------
    ConfigError
        If a file cannot be read as NIfTI (not NIfTI, truncated, corrupt), no
        affine is known, the array is not 3-D or 4-D or not of a real number
        type (complex), or its channels hold NaN or infinite values.
    """
    if isinstance(prediction, (str, os.PathLike)):
        import nibabel as nib

        try:
            image: Any = nib.load(str(prediction))
            array = np.asanyarray(image.dataobj)
        except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as exc:
            # not NIfTI (a DICOM file, text), truncated or corrupt: nibabel's error, on one line
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"{prediction}: cannot read the prediction as NIfTI ({reason})", path=str(prediction)) from None
        if array.ndim == 4:
            array = np.moveaxis(array, -1, 0)
        found: Any = image.affine
    elif isinstance(prediction, Volume):
        array, found = prediction.array, prediction.affine
    else:
        found = getattr(prediction, "affine", None)
        if isinstance(prediction, torch.Tensor):
            tensor = prediction.detach().cpu().as_subclass(torch.Tensor)
            # numpy has no bfloat16; float32 holds each of its values exactly
            prediction = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        array = np.asarray(prediction)
    name = prediction_file(prediction)
    where = f"{name}: " if name else ""
    found = found if affine is None else affine
    if found is None:
        raise ConfigError("the prediction has no affine; pass affine= (4x4, indices to RAS+ mm)")
    found = np.asarray(found.detach().cpu() if isinstance(found, torch.Tensor) else found, dtype=np.float64)
    if array.ndim == 5 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (3, 4) or found.shape != (4, 4):
        raise ConfigError(
            f"{where}a prediction of shape {array.shape} with an affine of shape {found.shape}; "
            "expected (i, j, k) or (C, i, j, k) and a 4x4 affine",
            path=name,
        )
    if array.dtype.kind not in "biuf":  # complex, text, objects: neither label values nor probabilities
        raise ConfigError(
            f"{where}a prediction of dtype {array.dtype}; expected integer label values, bool or floating probabilities",
            path=name,
        )
    # NaN probabilities pass no threshold and cast to 0: a silent hole (a 3-D map's are refused as not whole numbers)
    if array.ndim == 4 and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ConfigError(
            f"{where}the prediction holds NaN or infinite values; replace them (numpy.nan_to_num) before writing it back", path=name
        )
    return array, found


def _resampled(array: np.ndarray, affine: np.ndarray, grid: SourceGrid, labels: bool) -> np.ndarray:
    """``array`` (C, i, j, k) on the source grid, (C, slices, rows, columns); nearest for labels."""
    if grid.regular and array.shape[1:] == grid.shape and np.allclose(affine, grid.affine, rtol=0, atol=1e-5):
        return array  # already on the source grid (within 1e-5 mm): nothing to resample, nothing to copy
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.dtype == torch.bool:
        tensor = tensor.to(torch.uint8)
    targets = [(grid.affine, grid.shape)] if grid.regular else [(p, (1,) + grid.shape[1:]) for p in grid.planes]
    parts = []
    for target_affine, target_shape in targets:
        if labels:
            part = resample_mask(tensor, affine, target_affine, target_shape)
        else:
            # "fov": the edge voxels' values out to their outer edges, as resample_mask places labels
            part = resample_image(tensor.to(torch.float32), affine, target_affine, target_shape, padding="fov")
        parts.append(part)
    return torch.cat(parts, dim=1).numpy()


def _value_text(values: Sequence[int | float]) -> str:
    """Label values as they are (a whole float as an int), the first ten of them."""
    shown = [int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**53 else v for v in values[:10]]
    return f"{shown}" + (f" (and {len(values) - 10} more)" if len(values) > 10 else "")


def _segment_numbers(array: np.ndarray, labels: Sequence[Label], name: str | None = None) -> np.ndarray:
    """A 3-D label map's values as segment numbers (``labels[n - 1].value`` -> n, 0 -> 0), uint8 or uint16.

    Time and memory follow the prediction, not its largest value: values
    outside the labels' range are refused before any table is built, and a
    table serves only label values below 2**16; larger ones are looked up by
    binary search. A floating map (MONAI's SaveImage writes float32; a scaled
    int16 NIfTI loads as float64) must hold whole numbers.

    Raises
    ------
    ConfigError
        If a value is not a whole number (within 1e-3): probabilities or
        logits, not label values; or if the labels do not name a nonzero value.
    """
    where = f"{name}: " if name else ""
    if array.dtype.kind == "f":
        rounded = np.rint(array)
        if not np.all(np.abs(array - rounded) <= 1e-3):  # NaN fails too
            raise ConfigError(
                f"{where}a 3-D prediction must be integer label values, got {array.dtype} values that are "
                "not whole numbers; give probabilities as (C, i, j, k)",
                path=name,
            )
        array = rounded
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    dtype = np.uint16 if len(labels) > 255 else np.uint8
    numbered = {0: 0} | {label.value: n for n, label in enumerate(labels, start=1)}  # label values are >= 1
    high = max(numbered)

    def refuse() -> ConfigError:  # np.unique's sort only to name the values
        unknown = [v for v in np.unique(array).tolist() if v not in numbered]
        return ConfigError(
            f"{where}the prediction holds label values {_value_text(unknown)} that labels= (the CLI's --label) does not name",
            path=name,
        )

    # .item(): Python numbers compare exactly, whatever the dtype (uint64 past int64, float past 2**63)
    if array.size and (array.min().item() < 0 or array.max().item() > high):
        raise refuse()
    if high == len(labels):  # values 1..count (distinct, >= 1): the values are the segment numbers, no lookup
        return array.astype(dtype, copy=False)
    if high < 1 << 16:  # a table of at most 64 Ki entries, indexed by the values themselves
        index = array if array.dtype.kind in "iu" else array.astype(np.intp)  # whole, in [0, high]: exact
        named = np.zeros(high + 1, dtype=bool)
        named[list(numbered)] = True
        if not named[index].all():
            raise refuse()
        lut = np.zeros(high + 1, dtype=dtype)
        lut[list(numbered)] = list(numbered.values())
        return lut[index]
    keys = np.array(sorted(numbered), dtype=np.int64)
    values = array.astype(np.int64, copy=False) if array.dtype.kind == "u" else array  # in [0, high]: fits int64
    at = np.minimum(np.searchsorted(keys, values), keys.size - 1)
    if not np.all(keys[at] == values):
        raise refuse()
    return np.array([numbered[k] for k in keys.tolist()], dtype=dtype)[at]


def _present(channels: np.ndarray, soft: bool, threshold: float) -> list[bool]:
    """Per channel, whether it labels a voxel: a probability at or above ``threshold``, or any nonzero value."""
    return [bool(np.any(channel >= threshold) if soft else np.any(channel)) for channel in channels]


def _centre(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """RAS+ mm of the centre of a grid's field of view."""
    return (affine @ np.append((np.asarray(shape, dtype=np.float64) - 1) / 2, 1.0))[:3]


def _check_landed(
    before: Sequence[bool], after: Sequence[bool], labels: Sequence[Label], affine: np.ndarray, shape: Sequence[int], grid: SourceGrid
) -> None:
    """Refuse a prediction none of whose labelled voxels lands on the source grid; log a label that vanished alone.

    ``before`` and ``after`` say, per label, whether it labels a voxel in the
    prediction and on the source grid.

    Raises
    ------
    SegReferenceError
        If some label had voxels and none is left on the source grid (a
        wrong affine, an LPS one given for RAS+): the SEG or RTSTRUCT would be empty.
    """
    if any(before) and not any(after):
        name = str(getattr(grid.datasets[0], "filename", ""))
        ours = _centre(affine, shape)
        theirs = np.mean([_centre(plane, (1,) + grid.shape[1:]) for plane in grid.planes], axis=0)
        raise SegReferenceError(
            f"{name}: none of the prediction's labelled voxels lands on the source series' grid (the prediction's field of "
            f"view is centred at ({ours[0]:.0f}, {ours[1]:.0f}, {ours[2]:.0f}) mm RAS+, the source's at ({theirs[0]:.0f}, "
            f"{theirs[1]:.0f}, {theirs[2]:.0f})); check the prediction's affine: indices to RAS+ mm (an LPS affine "
            "flips x and y), in the source's patient coordinates",
            path=name,
        )
    for label, was, now in zip(labels, before, after):
        if was and not now:
            _log.warning(
                "label %r: none of its voxels lands on the source series' grid (outside it, or between its slices); it is written empty",
                label.name,
            )


def to_source_grid(
    array: np.ndarray,
    affine: np.ndarray,
    grid: SourceGrid,
    labels: Sequence[Label],
    kind: str,
    threshold: float = 0.5,
    *,
    name: str | None = None,
) -> np.ndarray:
    """The prediction as highdicom's pixel array on the source grid.

    Parameters
    ----------
    array, affine
        The prediction (:func:`load_prediction`): a label map ``(i, j, k)``
        of label values (any integer type, or floating-point values that are
        all whole numbers), or channels ``(C, i, j, k)``, one per label in
        the order of ``labels`` (sorted by label value, see
        :func:`dicomml.config.parse_labels`), with optionally one more
        channel first = background; either probabilities (floating) or
        multi-hot (integer / bool). One integer channel, or one channel for
        several labels, is a label map (MONAI's ``(1, i, j, k)``, float after
        ``AsDiscrete(argmax=True)``).
    grid
        The source grid.
    labels
        The label map, sorted by value; segment ``n`` is ``labels[n - 1]``.
    kind
        ``"binary"``, ``"fractional"`` or ``"labelmap"``.
    threshold
        Probabilities at or above it are in a segment (``"binary"``, and
        ``"labelmap"`` without a background channel).
    name
        The file the prediction was read from (:func:`prediction_file`), named in errors.

    Returns
    -------
    numpy.ndarray
        ``(slices, rows, columns)`` uint8/uint16 segment numbers for
        ``"labelmap"`` and for a label-map prediction written ``"binary"``;
        otherwise ``(slices, rows, columns, segments)``: uint8 (binary) or
        float32 in [0, 1] (fractional). For ``"labelmap"`` from channels,
        multi-hot channels and probabilities without a background channel
        are each thresholded and merged as ``mode: label_map`` merges
        annotations: where labels overlap the higher value wins
        (:func:`dicomml.seg.labelmap.overlay_channels`); probabilities with
        a background channel first are argmaxed.

    Raises
    ------
    ConfigError
        If the channels do not match the labels, a 3-D label map holds
        values the labels do not name or that are not whole numbers.
    SegReferenceError
        If the prediction labels voxels but none lands on the source grid
        (check its affine). A label whose voxels all miss the grid while
        others land is written empty, with a warning on this module's logger.
    """
    from dicomml.seg.labelmap import overlay_channels

    where = f"{name}: " if name else ""
    count = len(labels)
    if array.ndim == 4 and array.shape[0] == 1 and (array.dtype.kind in "biu" or count > 1):
        array = array[0]  # MONAI's (1, i, j, k) label map (float after AsDiscrete(argmax=True)): one channel cannot be 2+ labels
    if array.ndim == 3:
        # segment numbers in highdicom's unsigned type (a model's argmax is int64, a NIfTI label map often int16)
        stacked = _segment_numbers(array, labels, name)[None]
        moved = _resampled(stacked, affine, grid, labels=True)
        numbers = moved[0]
        if moved is not stacked:  # resampled: see that the labels land on the grid
            before = [box is not None for box in find_objects(stacked[0], max_label=count)]
            after = [box is not None for box in find_objects(numbers, max_label=count)]
            _check_landed(before, after, labels, affine, array.shape, grid)
        if kind == "fractional":
            return np.stack([numbers == n for n in range(1, count + 1)], axis=-1).astype(np.float32)
        return numbers
    if array.shape[0] not in (count, count + 1):
        raise ConfigError(
            f"{where}the prediction has {array.shape[0]} channels for {count} labels; "
            f"expected {count}, or {count + 1} with background first",
            path=name,
        )
    background = array.shape[0] == count + 1
    soft = array.dtype.kind == "f"
    moved = _resampled(array, affine, grid, labels=not soft)
    if moved is not array:
        first = 1 if background else 0
        _check_landed(
            _present(array[first:], soft, threshold), _present(moved[first:], soft, threshold), labels, affine, array.shape[1:], grid
        )
    if kind == "labelmap":
        if background and soft:  # a softmax: the most probable class, background included
            return np.argmax(moved, axis=0).astype(np.uint16 if count > 255 else np.uint8)
        on = moved[1:] if background else moved
        # labels are sorted by value, so segment numbers rank as their values: the higher value wins
        return overlay_channels(on >= threshold if soft else on, range(1, count + 1), np.uint16 if count > 255 else np.uint8)
    channels = np.moveaxis(moved[1:] if background else moved, 0, -1)
    if kind == "fractional":
        return np.clip(channels, 0.0, 1.0).astype(np.float32)
    return (channels >= threshold).astype(np.uint8) if soft else (channels != 0).astype(np.uint8)


def check_frame_of_reference(grid: SourceGrid) -> None:
    """Refuse a source without a Frame of Reference UID: a SEG and an RTSTRUCT place their masks in it (Type 1).

    Raises
    ------
    SegReferenceError
        If the source's (0020,0052) Frame of Reference UID is absent or empty.
    """
    first = grid.datasets[0]
    if not str(first.get("FrameOfReferenceUID", "") or "").strip():
        name = str(getattr(first, "filename", ""))
        raise SegReferenceError(
            f"{name}: the source has no (0020,0052) Frame Of Reference UID, which a SEG or RTSTRUCT must name to place "
            "its masks in patient space; give every file of the series one and the same Frame Of Reference UID (pydicom "
            "can) and write back again",
            path=name,
            tag="(0020,0052)",
        )


def prepare(
    prediction: Prediction,
    source: Any,
    labels: Labels,
    manifest: Manifest | str | os.PathLike[str] | None,
    affine: Any,
    remote: Remote | None = None,
) -> tuple[tuple[Label, ...], np.ndarray, np.ndarray, SourceGrid]:
    """The common start of a write-back: the label map (sorted by value), the prediction and its affine, the source grid.

    Raises
    ------
    ConfigError
        If the labels are empty or unreadable, or the prediction cannot be read.
    SegReferenceError
        If the source is not one stack of planes of one series, or has no
        Frame of Reference UID.
    """
    chosen = parse_labels(labels)
    if not chosen:
        raise ConfigError("labels= (the CLI's --label) is empty; name at least one label")
    array, found = load_prediction(prediction, affine)
    grid = source_grid(source, manifest=manifest, remote=remote)
    check_frame_of_reference(grid)
    return chosen, array, found, grid


def _coded(code: str, meaning: str) -> hd.sr.CodedConcept:
    scheme, value = code.split(":")
    return hd.sr.CodedConcept(value, scheme, meaning)


def segment_descriptions(labels: Sequence[Label], algorithm: hd.AlgorithmIdentificationSequence) -> list[hd.seg.SegmentDescription]:
    """highdicom segment descriptions of a label map: label, property code, colour, algorithm."""
    out = []
    for number, label in enumerate(labels, start=1):
        kind = _coded(label.codes[0], label.name) if label.codes else _TISSUE
        out.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label.name,
                segmented_property_category=_ANATOMY,
                segmented_property_type=kind,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                display_color=hd.color.CIELabColor.from_rgb(*label.color) if label.color else None,  # type: ignore[call-arg]
            )
        )
    return out


class _Segmentation(hd.seg.Segmentation):
    """highdicom's Segmentation, told which planes of a label map each segment spans.

    For a BINARY SEG of a label map, highdicom compares every plane with every
    segment number (planes x segments passes over a whole plane) and omits the
    frames that come out empty. Each segment's span of planes comes from one
    pass here (``find_objects``), so a plane outside it gives an empty frame
    without the comparison, which highdicom omits as before; every other frame
    is highdicom's own.
    """

    def __init__(self, *, pixel_array: np.ndarray, segmentation_type: str, **kwargs: Any) -> None:
        self._spans: dict[int, tuple[int, int]] = {}
        self._layout = (0, 1, 0)
        if segmentation_type == "BINARY" and pixel_array.ndim == 3 and pixel_array.dtype.kind in "bu" and pixel_array.any():
            boxes = find_objects(pixel_array.view(np.uint8) if pixel_array.dtype == np.bool_ else pixel_array)
            self._spans = {n: (box[0].start, box[0].stop) for n, box in enumerate(boxes, start=1) if box is not None}
            # highdicom hands the hook pixel_array[plane] views, not indices: a view's address gives its plane
            self._layout = (pixel_array.__array_interface__["data"][0], pixel_array.strides[0], pixel_array.shape[0])
        super().__init__(pixel_array=pixel_array, segmentation_type=segmentation_type, **kwargs)

    def _get_segment_pixel_array(self, pixel_array: np.ndarray, segment_number: int, **kwargs: Any) -> np.ndarray:  # type: ignore[override]
        if self._spans and pixel_array.ndim == 2:
            start, stride, count = self._layout
            plane, offset = divmod(pixel_array.__array_interface__["data"][0] - start, stride)
            low, high = self._spans.get(segment_number, (0, 0))
            if offset == 0 and 0 <= plane < count and not low <= plane < high:
                return _NO_PIXELS  # empty: highdicom omits the frame (omit_empty_frames; the label map is not all empty)
        return hd.seg.Segmentation._get_segment_pixel_array(pixel_array, segment_number, **kwargs)


_NO_PIXELS = np.zeros(0, np.uint8)


def write_seg(
    prediction: Prediction,
    source: Any,
    labels: Labels,
    out: str | os.PathLike[str],
    *,
    kind: str = "binary",
    manifest: Manifest | str | os.PathLike[str] | None = None,
    affine: Any = None,
    threshold: float = 0.5,
    algorithm: str = "dicomml",
    algorithm_version: str = "0",
    series_description: str = "Segmentation",
    series_number: int = 300,
    remote: Remote | None = None,
) -> Path:
    """Write a prediction as a DICOM SEG on its source series' exact grid.

    Parameters
    ----------
    prediction
        A label map ``(i, j, k)`` of label values (integers, or floats that
        are all whole numbers), or channels ``(C, i, j, k)``: probabilities
        or multi-hot, one channel per label **sorted by label value** (the
        order of a Dataset's channels), optionally with a background channel
        first; on any grid: a numpy array or tensor with ``affine=``, a
        :class:`dicomml.Volume`, a MONAI MetaTensor or a NIfTI file (see
        :func:`load_prediction`).
    source
        The series it was computed from: a ``series_key`` with
        ``manifest=``, a folder (files that are not DICOM images are
        skipped), or its files (single-frame images, or one enhanced
        multi-frame image; the SEG references its frames by number).
    labels
        The label map: ``{name: value}``, channel names, or
        :class:`dicomml.config.Label` objects (with codes and colours); each
        name and each value once. Segment ``n`` is the ``n``-th label by
        value: ``{"spleen": 3, "liver": 1}`` makes channel 0 and segment 1
        ``liver``, channel 1 and segment 2 ``spleen``.
    out
        Path of the SEG file to write.
    kind
        ``"binary"``, ``"fractional"`` (probabilities, 8-bit) or
        ``"labelmap"`` (one segment per voxel: where multi-hot channels or
        thresholded probabilities overlap the higher label value wins;
        probabilities with a background channel are argmaxed).
    manifest
        The manifest ``source`` is a key of.
    affine
        4x4 affine (indices to RAS+ mm) of a plain array or tensor.
    threshold
        Binarization of probabilities for ``"binary"`` (and ``"labelmap"``
        without a background channel).
    algorithm, algorithm_version
        The algorithm identification written in every segment.
    series_description, series_number
        Of the new SEG series.
    remote
        How to reach source URLs (storage options, credentials): a
        :class:`dicomml.sources.Remote`; default: the manifest's.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ConfigError
        For an unknown ``kind``, labels that repeat a name or value or do
        not fit the prediction, or a prediction without an affine.
    SegReferenceError
        If the source is not one stack of planes of one series (a Siemens
        mosaic is not), has no Frame of Reference UID, or the prediction's
        labelled voxels all fall outside it (a wrong affine).

    Examples
    --------
    >>> dicomml.write_seg(probabilities, key, {"liver": 1}, "liver.dcm", manifest="manifest/",
    ...                   affine=affine)  # doctest: +SKIP
    PosixPath('liver.dcm')
    """
    if kind not in _KINDS:
        raise ConfigError(f"kind={kind!r}; expected one of {', '.join(_KINDS)}")
    chosen, array, found, grid = prepare(prediction, source, labels, manifest, affine, remote)
    pixels = to_source_grid(array, found, grid, chosen, kind, threshold, name=prediction_file(prediction))
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm, family=codes.cid7162.ArtificialIntelligence, version=algorithm_version
    )
    first = grid.datasets[0]
    try:
        with warnings.catch_warnings():
            # highdicom's person-name check quotes the source's PatientName: identity must not reach logs
            warnings.filterwarnings("ignore", message=r".*unlikely to represent the intended person name", category=UserWarning)
            seg = _Segmentation(
                source_images=list(grid.datasets),
                pixel_array=grid.in_frame_order(pixels),
                segmentation_type=kind.upper(),
                segment_descriptions=segment_descriptions(chosen, algorithm_id),
                series_instance_uid=hd.UID(),
                series_number=series_number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="dicomml",
                manufacturer_model_name=algorithm,
                software_versions=algorithm_version,
                device_serial_number="0",
                series_description=series_description,
            )
    except (ValueError, TypeError, AttributeError) as exc:
        raise SegReferenceError(
            f"{getattr(first, 'filename', source)}: highdicom cannot encode the SEG ({exc})",
            path=str(getattr(first, "filename", "")),
        ) from exc
    hold_text(seg, [series_description, algorithm, algorithm_version, *(d.SegmentLabel for d in seg.SegmentSequence)])
    path = Path(out)
    with atomic_output(path) as tmp:
        seg.save_as(tmp)
    return path
