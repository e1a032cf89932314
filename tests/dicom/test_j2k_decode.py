"""Grey JPEG 2000 frames decoded by imagecodecs on several threads equal pydicom's decoders bit for bit;
corrupt codestreams are typed errors naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import pixel_array
from pydicom.uid import JPEG2000Lossless

from dicomml.dicom.pixels import _j2k_grey, decode_pixels
from dicomml.errors import InvalidDicomFileError
from dicomml.imaging2d import load_image
from dicomml.imaging2d.synthetic import write_image2d

#: pydicom's grey JPEG 2000 test files (lossless and lossy, 10 to 16 bits, signed, MONOCHROME1, 10 frames, a JPEG 2000
#: file with an UN element) that the threaded path decodes, and one whose codestream is unsigned while the header says
#: signed (pydicom corrects it, so its plugins decode it).
THREADED = [
    "MR2_J2KI.dcm",
    "MR2_J2KR.dcm",
    "RG1_J2KI.dcm",
    "RG1_J2KR.dcm",
    "RG3_J2KI.dcm",
    "RG3_J2KR.dcm",
    "693_J2KI.dcm",
    "693_J2KR.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "explicit_VR-UN.dcm",
    "JPEG2000.dcm",
    "MR_small_jp2klossless.dcm",
]
BY_PYDICOM = ["J2K_pixelrep_mismatch.dcm", "US1_J2KR.dcm", "GDCMJ2K_TextGBR.dcm"]


@pytest.mark.parametrize("name", THREADED + BY_PYDICOM)
def test_decoded_frames_equal_pydicoms_plugins(name: str) -> None:
    ds = pydicom.dcmread(get_testdata_file(name, download=False))
    assert (_j2k_grey(ds, None, 2) is not None) == (name in THREADED)
    ours = decode_pixels(ds, threads=2)
    for plugin in ("pylibjpeg", "gdcm"):
        expected = pixel_array(ds, decoding_plugin=plugin)
        assert ours.dtype == expected.dtype and ours.shape == expected.shape, plugin
        np.testing.assert_array_equal(ours, expected, err_msg=plugin)
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        np.testing.assert_array_equal(
            decode_pixels(ds, frames - 1, threads=2), pixel_array(ds, index=frames - 1, decoding_plugin="pylibjpeg")
        )


def test_16_bit_lossless_mammogram_equals_pydicom_and_the_stored_values(tmp_path: Path) -> None:
    stored = np.random.default_rng(21).integers(0, 65536, (700, 560)).astype(np.uint16)
    stored[100:400, 50:300] = np.arange(250, dtype=np.uint16) * 260  # smooth part next to noise: several code-blocks differ
    path = write_image2d(tmp_path / "mg.dcm", stored, modality="MG", bits_stored=16, transfer_syntax=JPEG2000Lossless)
    ds = pydicom.dcmread(path)
    assert _j2k_grey(ds, None, 2) is not None
    np.testing.assert_array_equal(decode_pixels(ds, threads=2), stored)
    for plugin in ("pylibjpeg", "gdcm"):
        np.testing.assert_array_equal(decode_pixels(ds, threads=2), pixel_array(ds, decoding_plugin=plugin))
    np.testing.assert_array_equal(load_image(path, threads=2, voi="none").pixels[0], stored.astype(np.float32))
    np.testing.assert_array_equal(load_image(path, threads=2).pixels, load_image(path, threads=1).pixels)


@pytest.mark.parametrize("cut", [0.5, 0.98])
def test_truncated_codestream_is_an_invalid_file_naming_it(tmp_path: Path, cut: float) -> None:
    stored = np.random.default_rng(3).integers(0, 4096, (300, 240)).astype(np.uint16)
    path = write_image2d(tmp_path / "mg.dcm", stored, modality="MG", bits_stored=12, transfer_syntax=JPEG2000Lossless)
    ds = pydicom.dcmread(path)
    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([codestream[: int(len(codestream) * cut)]])
    ds.save_as(path)
    with pytest.raises(InvalidDicomFileError) as info:
        load_image(path, threads=2)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
