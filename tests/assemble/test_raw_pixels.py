"""Uncompressed little-endian files are read by offset, from the indexer's header walk: the values equal
pydicom's decoder bit for bit, anything else goes through pydicom, and a file that lies or is cut short
still gives a typed error naming it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from dicomml.assemble import load_files
from dicomml.assemble.load import _read_headers
from dicomml.dicom.synthetic import write_slice
from dicomml.errors import InvalidDicomFileError


def _series(folder: Path, stack: np.ndarray, *, extra: dict | None = None, rescale=(1.0, -1024.0)) -> list[Path]:
    """Slices of ``stack`` with its own bytes as Pixel Data (write_slice writes 16 bits)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, plane in enumerate(stack):
        path = write_slice(
            folder / f"{i:03d}.dcm", plane, position=(0.0, 0.0, 2.5 * i), series_uid="1.2.3.4", instance=i + 1, rescale=rescale, extra=extra
        )
        if plane.dtype.itemsize != 2:
            ds = pydicom.dcmread(path)
            ds.PixelData = plane.astype(plane.dtype.newbyteorder("<")).tobytes()
            ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _pydicom_stack(paths: list[Path]) -> np.ndarray:
    """The oracle: pydicom's own decoder, slices in position order, rescale in float64."""
    datasets = sorted((pydicom.dcmread(p) for p in paths), key=lambda ds: float(ds.ImagePositionPatient[2]))
    return np.stack([ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0)) for ds in datasets])


@pytest.mark.parametrize(
    ("dtype", "bits_stored", "signed"),
    [(np.uint16, 16, False), (np.uint16, 12, False), (np.int16, 12, True), (np.uint8, 8, False), (np.int32, 32, True)],
)
def test_raw_read_equals_pydicom_for_each_bit_layout(tmp_path, dtype, bits_stored, signed):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(bits_stored)
    # every bit set somewhere, including those above BitsStored that pydicom masks or sign-extends away
    stack = rng.integers(max(info.min, -(2**30)), min(info.max, 2**30), size=(4, 9, 11), endpoint=True).astype(dtype)
    bits = 8 * np.dtype(dtype).itemsize
    extra = {"BitsAllocated": bits, "BitsStored": bits_stored, "HighBit": bits_stored - 1, "PixelRepresentation": int(signed)}
    paths = _series(tmp_path, stack, extra=extra, rescale=(2.0, -7.0))
    assert all(s.span is not None for s in _read_headers([str(p) for p in paths], None, "float"))
    expected = _pydicom_stack(paths)
    np.testing.assert_array_equal(load_files(paths).array, expected)
    np.testing.assert_array_equal(load_files(paths, dtype=np.float64).array, expected)


def test_implicit_vr_reads_raw_and_equals_pydicom(tmp_path):
    stack = np.random.default_rng(1).integers(0, 4096, size=(3, 8, 8), dtype=np.uint16)
    paths = _series(tmp_path, stack)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(p, enforce_file_format=True)
    assert all(s.span is not None for s in _read_headers([str(p) for p in paths], None, "float"))
    np.testing.assert_array_equal(load_files(paths, dtype=np.float32).array, _pydicom_stack(paths).astype(np.float32))


@pytest.mark.parametrize("name", ["emri_small_RLE.dcm", "emri_small_big_endian.dcm"])
def test_other_encodings_go_through_pydicom_and_agree(data_dir, name):
    folder = data_dir / "pydicom-data/data_store/data"
    [source] = _read_headers([str(folder / name)], None, "float")
    assert source.span is None
    [native] = _read_headers([str(folder / "emri_small.dcm")], None, "float")
    assert native.span is not None
    np.testing.assert_array_equal(
        load_files([folder / name], on_irregular="keep").array, load_files([folder / "emri_small.dcm"], on_irregular="keep").array
    )


def test_enhanced_frame_subset_reads_only_those_frames(data_dir):
    path = data_dir / "pydicom-data/data_store/data/emri_small.dcm"  # native multi-frame MR
    ds = pydicom.dcmread(path)
    [source] = _read_headers([str(path)], [[2, 5]], "float")
    assert source.span is not None
    volume = load_files([path], frames=[[2, 5]], on_irregular="keep", dtype=np.float64)
    expected = ds.pixel_array[[1, 4]].astype(np.float64)
    assert sorted(map(bytes, volume.array.astype(np.float64))) == sorted(map(bytes, expected))


def test_pixel_data_cut_short_is_a_typed_error_naming_the_file(tmp_path):
    stack = np.random.default_rng(3).integers(0, 4096, size=(3, 8, 8), dtype=np.uint16)
    paths = _series(tmp_path, stack)
    with open(paths[1], "r+b") as f:
        f.truncate(os.path.getsize(paths[1]) - 10)
    with pytest.raises(InvalidDicomFileError, match="001.dcm"):
        load_files(paths)


def test_file_shrinking_after_its_header_was_read_is_a_typed_error(tmp_path):
    from dicomml.assemble.load import _assemble, _single_group

    stack = np.random.default_rng(4).integers(0, 4096, size=(3, 8, 8), dtype=np.uint16)
    paths = _series(tmp_path, stack)
    sources = _read_headers([str(p) for p in paths], None, "float")
    with open(paths[2], "r+b") as f:
        f.truncate(os.path.getsize(paths[2]) - 10)
    with pytest.raises(InvalidDicomFileError, match=r"002\.dcm.*\(7FE0,0010\)"):
        _assemble(sources, "raise", None, None, series_key=_single_group(sources), max_voxels=2**20)


def test_a_frame_count_lie_is_refused_as_before(tmp_path):
    stack = np.random.default_rng(5).integers(0, 4096, size=(1, 8, 8), dtype=np.uint16)
    [path] = _series(tmp_path, stack, extra={"NumberOfFrames": 3})
    with pytest.raises(InvalidDicomFileError, match=r"\(0028,0008\).*needs at least"):
        load_files([path])
