"""An RLE segment that decodes to more bytes than its frame holds: one padding byte is read as the standard's
other decoders read it, a scrambled codestream is a corrupt file (pydicom's own decoder warns and keeps the bytes)."""

from __future__ import annotations

import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_fragmented_frames
from pydicom.pixels import pixel_array
from pydicom.uid import RLELossless

from dicomml.dicom.io import read_dataset
from dicomml.dicom.pixels import decode_pixels
from dicomml.errors import InvalidDicomFileError

CT = get_testdata_file("CT_small.dcm")


def _rle_with(tmp_path: Path, name: str, change) -> Path:
    """CT_small (128 x 128, 16 bits: two segments) RLE-encoded, its codestream changed by ``change``."""
    ds = pydicom.dcmread(CT)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    frame = b"".join(next(generate_fragmented_frames(ds.PixelData)))
    ds.PixelData = encapsulate([change(frame)])
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


def _padded(frame: bytes) -> bytes:
    return frame + b"\x00\x00"  # a literal run of one byte after the last segment: decodes to one byte more


def _scrambled(frame: bytes) -> bytes:
    """The low-byte segment's runs rewritten: it decodes to thousands of bytes more than the frame holds."""
    second = struct.unpack("<2I", frame[4:12])[1]
    body = bytes((b * 7 + 13) & 0xFF for b in frame[second:])
    return frame[:second] + body


def test_one_padding_byte_decodes_to_the_pixels(tmp_path):
    path = _rle_with(tmp_path, "padded.dcm", _padded)
    np.testing.assert_array_equal(decode_pixels(read_dataset(path, pixels=True)), pydicom.dcmread(CT).pixel_array)


def test_a_segment_decoding_past_its_frame_is_a_corrupt_file(tmp_path):
    path = _rle_with(tmp_path, "scrambled.dcm", _scrambled)
    with pytest.warns(UserWarning, match="non-conformant padding"):  # pydicom's decoder keeps the bytes and says so
        kept = pixel_array(pydicom.dcmread(path), decoding_plugin="pydicom")
    assert not np.array_equal(kept, pydicom.dcmread(CT).pixel_array)
    with pytest.raises(InvalidDicomFileError, match=rf"^{path}: decoding \(7FE0,0010\) Pixel Data failed .*corrupt"):
        decode_pixels(read_dataset(path, pixels=True))


def test_each_thread_gets_its_own_decoders_doubts(tmp_path):
    good, bad = _rle_with(tmp_path, "padded.dcm", _padded), _rle_with(tmp_path, "scrambled.dcm", _scrambled)

    def outcome(path: Path) -> str:
        try:
            decode_pixels(read_dataset(path, pixels=True))
        except InvalidDicomFileError:
            return "corrupt"
        return "decoded"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(outcome, [good, bad] * 20))
    assert outcomes == ["decoded", "corrupt"] * 20


def test_a_short_segment_names_each_decoders_reason_on_the_one_line(tmp_path):
    path = _rle_with(tmp_path, "short.dcm", lambda frame: frame[: len(frame) // 3 // 2 * 2])
    with pytest.raises(InvalidDicomFileError) as caught:
        decode_pixels(read_dataset(path, pixels=True))
    message = str(caught.value)
    assert "\n" not in message and "plugins: pydicom: The amount of decoded RLE segment data doesn't match" in message
