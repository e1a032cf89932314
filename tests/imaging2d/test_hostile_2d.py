"""Malformed headers of 2D images: one-line dicomml errors naming the file and the tag, never NaN, inf or empty images."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

import dicomml
from dicomml.dicom.synthetic import write_slice
from dicomml.errors import InvalidDicomFileError
from dicomml.imaging2d import load_image
from dicomml.imaging2d.synthetic import write_image2d

_TAGS = {
    "Rows": ("US", 0x00280010),
    "Columns": ("US", 0x00280011),
    "BitsStored": ("US", 0x00280101),
    "RescaleIntercept": ("DS", 0x00281052),
    "RescaleSlope": ("DS", 0x00281053),
    "WindowCenter": ("DS", 0x00281050),
    "WindowWidth": ("DS", 0x00281051),
}


def _image(path: Path, bits_stored: int = 12) -> Path:
    """A DX with a rescale and a window, all valid."""
    stored = np.random.default_rng(0).integers(0, 4096, (40, 32)).astype(np.uint16)
    extra = {"RescaleSlope": 1.0, "RescaleIntercept": -1024.0, "WindowCenter": 1000.0, "WindowWidth": 2000.0}
    return write_image2d(path, stored, bits_stored=bits_stored, extra=extra)


def _with_raw(path: Path, keyword: str, value: bytes) -> Path:
    """Rewrite ``path`` with ``keyword``'s value replaced by raw bytes pydicom would not write itself."""
    ds = pydicom.dcmread(path)
    vr, tag = _TAGS[keyword]
    ds[tag] = RawDataElement(BaseTag(tag), vr, len(value), value, 0, False, True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _assert_names(exc: pytest.ExceptionInfo[InvalidDicomFileError], path: Path, tag: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    assert tag in message
    assert exc.value.path == str(path)


@pytest.mark.parametrize(
    ("keyword", "value", "tag"),
    [
        ("RescaleSlope", b"abc ", "(0028,1053)"),
        ("RescaleSlope", b"NaN ", "(0028,1053)"),
        ("RescaleSlope", b"Inf ", "(0028,1053)"),
        ("RescaleIntercept", b"abc ", "(0028,1052)"),
        ("RescaleIntercept", b"NaN ", "(0028,1052)"),
        ("RescaleIntercept", b"-Inf", "(0028,1052)"),
        ("WindowCenter", b"abc ", "(0028,1050)"),
        ("WindowCenter", b"NaN ", "(0028,1050)"),
        ("WindowCenter", b"Inf ", "(0028,1050)"),
    ],
)
def test_malformed_rescale_or_window_is_one_line_error_naming_file_and_tag(tmp_path: Path, keyword: str, value: bytes, tag: str) -> None:
    path = _with_raw(_image(tmp_path / "x.dcm"), keyword, value)
    with pytest.raises(InvalidDicomFileError) as exc:
        load_image(path)
    _assert_names(exc, path, tag)


@pytest.mark.parametrize(("keyword", "default"), [("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)])
def test_an_empty_rescale_value_reads_as_absent_as_the_3d_load_and_the_index_read_it(tmp_path: Path, keyword: str, default: float) -> None:
    empty = load_image(_with_raw(_image(tmp_path / "x.dcm"), keyword, b""), voi="none").pixels
    ds = pydicom.dcmread(_image(tmp_path / "y.dcm"))
    setattr(ds, keyword, default)
    ds.save_as(tmp_path / "y.dcm")
    np.testing.assert_array_equal(empty, load_image(tmp_path / "y.dcm", voi="none").pixels)


def test_rescale_slope_that_overflows_the_display_values_is_refused(tmp_path: Path) -> None:
    path = _with_raw(_image(tmp_path / "x.dcm"), "RescaleSlope", b"1e308 ")
    with pytest.raises(InvalidDicomFileError) as exc:
        load_image(path, voi="none")
    _assert_names(exc, path, "(0028,1053)")


@pytest.mark.parametrize(("keyword", "value"), [("Rows", struct.pack("<H", 0)), ("Columns", struct.pack("<H", 0)), ("Rows", b"")])
def test_zero_or_empty_rows_or_columns_is_refused_not_an_empty_image(tmp_path: Path, keyword: str, value: bytes) -> None:
    path = _with_raw(_image(tmp_path / "x.dcm"), keyword, value)
    with pytest.raises(InvalidDicomFileError) as exc:
        load_image(path)
    _assert_names(exc, path, "(0028,0010)")


def test_bits_stored_zero_is_refused_not_a_constant_image(tmp_path: Path) -> None:
    path = _with_raw(_image(tmp_path / "x.dcm", bits_stored=16), "BitsStored", struct.pack("<H", 0))  # High Bit 15
    with pytest.raises(InvalidDicomFileError) as exc:
        load_image(path)
    _assert_names(exc, path, "(0028,0101)")


def _multi_valued_transfer_syntax(path: Path) -> Path:
    """Rewrite the file meta's Transfer Syntax UID as two values (pydicom would not write this)."""
    data = path.read_bytes()
    old = b"1.2.840.10008.1.2.1\x00"
    start = data.index(old)
    (length,) = struct.unpack_from("<H", data, start - 2)
    new = b"1.2.840.10008.1.2.1\\1.2.840.10008.1.2\x00"
    data = data[: start - 2] + struct.pack("<H", len(new)) + new + data[start + length :]
    (group_length,) = struct.unpack_from("<L", data, 140)  # (0002,0000) File Meta Information Group Length
    path.write_bytes(data[:140] + struct.pack("<L", group_length + len(new) - length) + data[144:])
    return path


def test_multi_valued_transfer_syntax_is_refused_by_the_2d_and_3d_loads(tmp_path: Path) -> None:
    image = _multi_valued_transfer_syntax(_image(tmp_path / "dx.dcm"))
    with pytest.raises(InvalidDicomFileError) as exc:
        load_image(image)
    _assert_names(exc, image, "(0002,0010)")
    ct = write_slice(tmp_path / "ct.dcm", np.zeros((8, 8), np.int16), position=(0, 0, 0), series_uid=pydicom.uid.generate_uid())
    ct = _multi_valued_transfer_syntax(ct)
    with pytest.raises(InvalidDicomFileError) as exc:
        dicomml.load_files([str(ct)])
    _assert_names(exc, ct, "(0002,0010)")


def test_fragment_length_past_the_pixel_data_is_refused_not_decoded(tmp_path: Path, data_dir: Path) -> None:
    data = (data_dir / "pydicom-data/data_store/data/JPEG-LL.dcm").read_bytes()
    table = data.rfind(b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff") + 12  # the Basic Offset Table item
    (table_length,) = struct.unpack_from("<L", data, table + 4)
    fragment = table + 8 + table_length  # the first fragment, one of several of the one frame
    path = tmp_path / "x.dcm"
    path.write_bytes(data[: fragment + 4] + struct.pack("<L", 0x7FFFFFF0) + data[fragment + 8 :])
    with pytest.raises(InvalidDicomFileError) as exc:
        load_image(path)
    _assert_names(exc, path, "(7FE0,0010)")


@pytest.mark.parametrize("window", [(float("nan"), 400.0), (40.0, float("inf")), (40.0, 0.0)])
def test_a_window_given_by_the_caller_is_checked_as_the_callers_mistake(tmp_path, window):
    """A NaN window passed in was reported as the header's rescale overflowing."""
    from dicomml.errors import ConfigError
    from dicomml.imaging2d.synthetic import write_image2d

    path = write_image2d(tmp_path / "dx.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    with pytest.raises(ConfigError, match=r"^load_image\(voi\[[01]\]=.*\): voi\[[01]\] must be a finite number"):
        load_image(path, voi=window)


@pytest.mark.parametrize("frames", [-5, 3])
def test_a_number_of_frames_the_pixel_data_cannot_hold_is_refused_as_the_3d_load_refuses_it(tmp_path, frames):
    from dicomml.imaging2d.synthetic import write_image2d

    path = write_image2d(tmp_path / "dx.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = frames
    ds.save_as(path)
    with pytest.raises(InvalidDicomFileError, match=rf"^{path}: \(0028,0008\) Number ?[Oo]f ?Frames"):
        load_image(path)
