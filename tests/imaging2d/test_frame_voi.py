"""Enhanced XA and US multi-frame images: each frame through its own functional groups' rescale and window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from dicomml.imaging2d import ImageConfig, load_image
from dicomml.imaging2d.prepare import prepare_image
from dicomml.imaging2d.synthetic import write_image2d

_ENHANCED = {"XA": "1.2.840.10008.5.1.4.1.1.12.1.1", "US": "1.2.840.10008.5.1.4.1.1.6.2"}
#: Per frame: (center, width, function) of its Frame VOI LUT item; frame 3 repeats frame 0.
_WINDOWS = [(900.0, 1800.0, "LINEAR"), (2000.0, 1000.0, "LINEAR_EXACT"), (1500.0, 3000.0, "SIGMOID"), (900.0, 1800.0, "LINEAR")]
#: Shared rescale, and frame 2's own (a per-frame item overrides the shared one).
_SHARED_RESCALE, _FRAME2_RESCALE = (2.0, -1024.0), (1.0, 0.0)


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _write_enhanced(path: Path, modality: str) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(3)
    stored = rng.integers(0, 4096, size=(len(_WINDOWS), 24, 20), dtype=np.uint16)
    per_frame = []
    for i, (center, width, function) in enumerate(_WINDOWS):
        groups = _item(FrameVOILUTSequence=Sequence([_item(WindowCenter=center, WindowWidth=width, VOILUTFunction=function)]))
        if i == 2:
            slope, intercept = _FRAME2_RESCALE
            groups.PixelValueTransformationSequence = Sequence([_item(RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US")])
        per_frame.append(groups)
    slope, intercept = _SHARED_RESCALE
    shared = _item(PixelValueTransformationSequence=Sequence([_item(RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US")]))
    write_image2d(
        path,
        stored,
        modality=modality,
        bits_stored=12,
        extra={
            "SOPClassUID": _ENHANCED[modality],
            "SharedFunctionalGroupsSequence": Sequence([shared]),
            "PerFrameFunctionalGroupsSequence": Sequence(per_frame),
        },
    )
    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPClassUID = _ENHANCED[modality]
    ds.save_as(path, enforce_file_format=True)
    return path, stored


def _pydicom_frame(stored: np.ndarray, index: int) -> np.ndarray:
    """pydicom's functions on one frame, given that frame's rescale and window as top-level attributes."""
    header = Dataset()
    header.PhotometricInterpretation, header.BitsStored, header.BitsAllocated, header.PixelRepresentation = "MONOCHROME2", 12, 16, 0
    header.RescaleSlope, header.RescaleIntercept = _FRAME2_RESCALE if index == 2 else _SHARED_RESCALE
    header.WindowCenter, header.WindowWidth, header.VOILUTFunction = _WINDOWS[index]
    return apply_voi_lut(apply_modality_lut(stored[index], header), header)


@pytest.mark.parametrize("modality", sorted(_ENHANCED))
def test_each_frame_takes_its_own_window_as_pydicom_does(tmp_path: Path, modality: str) -> None:
    path, stored = _write_enhanced(tmp_path / f"enhanced_{modality}.dcm", modality)
    image = load_image(path, dtype=np.float64)
    assert image.pixels.shape == stored.shape
    for i in range(len(_WINDOWS)):
        np.testing.assert_array_equal(image.pixels[i], _pydicom_frame(stored, i))
    assert image.meta["frame_windows"] == [[c, w] for c, w, _ in _WINDOWS]
    assert image.meta["voi"] == "window"
    # frames 0 and 1 differ only by their window: the per-frame path must not take frame 0's for all
    assert not np.array_equal(image.pixels[1], apply_voi_lut(apply_modality_lut(stored[1], _frame0_header()), _frame0_header()))


def _frame0_header() -> Dataset:
    header = Dataset()
    header.PhotometricInterpretation, header.BitsStored, header.BitsAllocated, header.PixelRepresentation = "MONOCHROME2", 12, 16, 0
    header.RescaleSlope, header.RescaleIntercept = _SHARED_RESCALE
    header.WindowCenter, header.WindowWidth, header.VOILUTFunction = _WINDOWS[0]
    return header


def test_sample_of_an_enhanced_cine_scales_every_frame_into_one_range(tmp_path: Path) -> None:
    path, stored = _write_enhanced(tmp_path / "enhanced_xa.dcm", "XA")
    planes, meta = prepare_image(path, ImageConfig(size=None, resize="none", dtype="float32"))
    low, high = meta["output_range"]
    expected = np.stack([_pydicom_frame(stored, i) for i in range(len(_WINDOWS))])
    assert meta["layout"] == "THW" and planes.shape == stored.shape
    np.testing.assert_allclose(planes.numpy(), (expected - low) / (high - low), rtol=0, atol=1e-6)
    assert 0.0 <= float(planes.min()) and float(planes.max()) <= 1.0


def _lut(first: int, bits: int, values: np.ndarray) -> Dataset:
    """A VOI LUT Sequence item: LUT Descriptor (entries, first mapped value, bits) and its data."""
    item = _item(LUTDescriptor=[len(values), first, bits], LUTExplanation="frame table")
    item.add_new(0x00283006, "OW", np.asarray(values).astype("<u2").tobytes())
    return item


#: Frames 1 and 2 carry their own VOI LUT table in their Frame VOI LUT item; frames 0 and 3 take the shared window.
_TABLES = {
    1: _lut(0, 16, np.round(65535 * np.sqrt(np.arange(4096) / 4095)).astype(np.uint16)),
    2: _lut(1000, 12, np.arange(2048)[::-1] * 2),  # values below 1000 take the first entry, above 3047 the last
}
_SHARED_WINDOW = (1500.0, 2500.0)


def _write_enhanced_tables(path: Path) -> tuple[Path, np.ndarray]:
    stored = np.random.default_rng(4).integers(0, 4096, size=(4, 24, 20), dtype=np.uint16)
    per_frame = [
        _item(FrameVOILUTSequence=Sequence([_item(VOILUTSequence=Sequence([_TABLES[i]]))])) if i in _TABLES else Dataset() for i in range(4)
    ]
    center, width = _SHARED_WINDOW
    shared = _item(
        FrameVOILUTSequence=Sequence([_item(WindowCenter=center, WindowWidth=width)]),
        PixelValueTransformationSequence=Sequence([_item(RescaleSlope=1.0, RescaleIntercept=0.0, RescaleType="US")]),
    )
    write_image2d(
        path,
        stored,
        modality="XA",
        bits_stored=12,
        extra={
            "SOPClassUID": _ENHANCED["XA"],
            "SharedFunctionalGroupsSequence": Sequence([shared]),
            "PerFrameFunctionalGroupsSequence": Sequence(per_frame),
        },
    )
    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPClassUID = _ENHANCED["XA"]
    ds.save_as(path, enforce_file_format=True)
    return path, stored


def test_a_frame_with_its_own_voi_lut_table_is_mapped_through_it_as_pydicom_does(tmp_path: Path) -> None:
    """A frame's Frame VOI LUT item replaces the shared one whole (PS3.3 C.7.6.16): its table, not the shared window."""
    path, stored = _write_enhanced_tables(tmp_path / "tables.dcm")
    image = load_image(path, dtype=np.float64)
    for i in range(len(stored)):
        header = Dataset()
        header.file_meta = FileMetaDataset()
        header.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # the byte order of the OW table
        header.PhotometricInterpretation, header.BitsStored, header.BitsAllocated, header.PixelRepresentation = "MONOCHROME2", 12, 16, 0
        header.RescaleSlope, header.RescaleIntercept = 1.0, 0.0
        if i in _TABLES:
            header.VOILUTSequence = Sequence([_TABLES[i]])
        else:
            header.WindowCenter, header.WindowWidth = _SHARED_WINDOW
        np.testing.assert_array_equal(image.pixels[i], apply_voi_lut(apply_modality_lut(stored[i], header), header), err_msg=f"frame {i}")
    assert image.meta["frame_windows"] == [list(_SHARED_WINDOW), None, None, list(_SHARED_WINDOW)]
    # the tables are not windows: frame 1 through the shared window would differ
    windowed = Dataset()
    windowed.PhotometricInterpretation, windowed.BitsStored, windowed.BitsAllocated, windowed.PixelRepresentation = "MONOCHROME2", 12, 16, 0
    windowed.WindowCenter, windowed.WindowWidth = _SHARED_WINDOW
    assert not np.array_equal(image.pixels[1], apply_voi_lut(stored[1].astype(np.float64), windowed))
