"""Properties of the indexer's header walk on arbitrary and mutated bytes (Hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomml.errors import InvalidDicomFileError
from dicomml.indexer.header import NeedMoreBytes, read_header

SOURCES = [
    "dcmqi/data/segmentations/24x38x3/image/IMG0001.dcm",  # implicit VR
    "pydicom-data/data_store/data/emri_small.dcm",  # explicit VR, 10 frames
    "pydicom-data/data_store/data/emri_small_RLE.dcm",  # encapsulated
    "dcm_qa_ts/In/1.dcm",  # Siemens mosaic, private sequences
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _walk(data: bytes):
    """read_header over all of ``data``: a Header, or one of its two documented exceptions."""
    try:
        return read_header(data, len(data), "f.dcm", lambda offset, n: data[offset : offset + n])
    except InvalidDicomFileError as exc:
        assert str(exc).startswith("f.dcm: ") and "\n" not in str(exc)
        return None


def _check_bounds(header, data: bytes) -> None:
    for tag, (_, start, end, _) in header.elements.items():
        assert 0 <= start <= end <= len(header.buf), (hex(tag), start, end)
    if header.pixel_length is not None and header.pixel_items is None:
        assert header.pixel_length <= len(data)


@pytest.fixture(scope="module")
def originals(data_dir: Path) -> list[bytes]:
    return [(data_dir / s).read_bytes() for s in SOURCES]


@SETTINGS
@given(prefix=st.sampled_from([b"", b"\0" * 128 + b"DICM"]), body=st.binary(max_size=2048))
def test_arbitrary_bytes_give_a_header_or_a_typed_error(prefix: bytes, body: bytes):
    data = prefix + body
    try:
        header = _walk(data)
    except NeedMoreBytes:
        pytest.fail("the whole file was given: the walk must not ask for more")
    if header is not None:
        _check_bounds(header, data)


@SETTINGS
@given(data=st.data())
def test_mutated_real_files_give_a_header_or_a_typed_error(originals, data):
    original = bytearray(originals[data.draw(st.integers(0, len(originals) - 1))])
    for _ in range(data.draw(st.integers(1, 12))):
        at = data.draw(st.integers(128, len(original) - 1))
        original[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(132, len(original)))
    mutated = bytes(original[:cut])
    header = _walk(mutated)
    if header is not None:
        _check_bounds(header, mutated)


@SETTINGS
@given(data=st.data())
def test_a_prefix_walk_agrees_with_the_whole_file_walk(originals, data):
    """Asking for more bytes (NeedMoreBytes) and walking again gives what one walk of the whole file gives."""
    whole = originals[data.draw(st.integers(0, len(originals) - 1))]
    buf = whole[: data.draw(st.integers(132, len(whole)))]
    while True:
        try:
            header = read_header(buf, len(whole), "f.dcm", lambda offset, n: whole[offset : offset + n])
            break
        except NeedMoreBytes as more:
            assert int(more.args[0]) > len(buf)
            buf = whole[: max(int(more.args[0]), 2 * len(buf))]
    reference = read_header(whole, len(whole), "f.dcm")
    assert header.elements.keys() == reference.elements.keys()
    assert {t: header.value(t) for t in header.elements} == {t: reference.value(t) for t in reference.elements}


def test_the_walk_finds_what_pydicom_finds(originals):
    for data in originals:
        header = read_header(data, len(data), "f.dcm", lambda offset, n, data=data: data[offset : offset + n])
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), stop_before_pixels=True)
        assert set(header.elements) == {int(t) for t in ds.keys()}
