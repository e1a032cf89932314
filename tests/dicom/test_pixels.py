"""decode_into: the uncompressed fast path agrees with pydicom's decoder; errors are typed."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.pixels import pixel_array

from dicomml.dicom import frame_table
from dicomml.dicom.pixels import decode_into, native_stack, stored_dtype
from dicomml.dicom.synthetic import write_slice
from dicomml.errors import InvalidDicomFileError, UnsupportedTransferSyntaxError


def _decode(ds, dtype=None, rescale=False):
    table = frame_table(ds)
    out = np.empty((len(table), table.rows, table.columns), dtype or stored_dtype(ds))
    decode_into(ds, table, range(len(table)), out, range(len(table)), rescale=rescale)
    return out


@pytest.mark.parametrize(
    "name",
    [
        "dcm_qa_12bit/In/12bitUnsigned.dcm",
        "dcm_qa_12bit/In/12bitUnsigned_0x0F0F.dcm",  # garbage above BitsStored
        "dcm_qa_12bit/In/12bitSigned_0x0F0F.dcm",  # signed 12-bit with garbage bits
        "pydicom-data/data_store/data/693_UNCR.dcm",
        "dcm_qa_xa30/In/5_anat-T1w_acq-tfl/0001_1.3.12.2.1107.5.2.43.67093.2022071112080825794102791.dcm",
    ],
)
def test_native_fast_path_equals_pydicom(data_dir, name):
    ds = pydicom.dcmread(data_dir / name)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    expected = pixel_array(ds).reshape(n_frames, ds.Rows, ds.Columns)
    ours = native_stack(ds, n_frames)
    assert ours is not None
    np.testing.assert_array_equal(ours, expected)
    assert ours.dtype == expected.dtype


def test_signed_12_bit_is_sign_extended(tmp_path):
    raw = np.array([[0x0800, 0x07FF], [0xFFFF, 0xF123]], dtype=np.uint16)  # -2048, 2047, -1, 0x123
    path = write_slice(tmp_path / "s.dcm", raw.view(np.int16), position=(0, 0, 0), series_uid="1.2.3")
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = 12, 11
    np.testing.assert_array_equal(_decode(ds)[0], [[-2048, 2047], [-1, 0x123]])
    np.testing.assert_array_equal(_decode(ds)[0], pixel_array(ds))


def test_float_output_applies_rescale_while_writing(tmp_path):
    raw = np.arange(12, dtype=np.uint16).reshape(3, 4)
    path = write_slice(tmp_path / "r.dcm", raw, position=(0, 0, 0), series_uid="1.2.3", rescale=(0.25, -3.0))
    out = _decode(pydicom.dcmread(path), np.float32, rescale=True)
    np.testing.assert_allclose(out[0], raw * 0.25 - 3.0)


def test_truncated_pixel_data_is_an_invalid_file(tmp_path):
    path = write_slice(tmp_path / "t.dcm", np.zeros((8, 8), np.uint16), position=(0, 0, 0), series_uid="1.2.3")
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:20]
    with pytest.raises((InvalidDicomFileError, UnsupportedTransferSyntaxError)) as info:
        _decode(ds)
    assert info.value.path == str(path)


def test_colour_images_are_refused(data_dir):
    ds = pydicom.dcmread(data_dir / "pydicom-data/data_store/data/JPGLosslessP14SV1_1s_1f_8b.dcm", stop_before_pixels=True)
    ds.SamplesPerPixel = 3
    with pytest.raises(InvalidDicomFileError, match="Samples per Pixel"):
        stored_dtype(ds)
