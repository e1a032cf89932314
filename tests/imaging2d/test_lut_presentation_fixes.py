"""Inversion within the VOI output range, the P-value range, VOI indices past the tables, the tag of a bad window.

Oracles: highdicom's ``Image.get_frame(..., apply_presentation_lut=True)`` (MONOCHROME1 inverted within the
VOI output range, PS3.3 C.11.6) and pydicom's ``apply_voi_lut`` / ``apply_presentation_lut``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import highdicom
import numpy as np
import pydicom
import pytest
from imaging2d_refs import pydicom_test_files
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_presentation_lut, apply_voi_lut
from pydicom.sequence import Sequence

from dicomml.errors import InvalidDicomFileError
from dicomml.imaging2d import ImageConfig, load_image
from dicomml.imaging2d.prepare import prepare_image
from dicomml.imaging2d.synthetic import write_image2d

_FULL = ImageConfig(size=None, resize="none", dtype="float32")


def _test_file(name: str) -> Path:
    """A file shipped with pydicom or pydicom-data, by name."""
    return next(p for p in pydicom_test_files() if p.name == name)


def _highdicom(path: Path, output_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """highdicom's display values: the header's VOI mapped to ``output_range``, MONOCHROME1 inverted within it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = highdicom.Image.from_file(path)
        return image.get_frame(1, apply_voi_transform=None, voi_output_range=output_range, apply_presentation_lut=True)


@pytest.mark.parametrize("name", ["RG1_UNCI.dcm", "RG3_UNCR.dcm"])
def test_real_monochrome1_cr_prepares_as_highdicom_presents_it(name: str) -> None:
    """NEMA WG04 CRs: inverted against the image's own maximum they came out 0.12 (RG1) and 0.04 (RG3) too dark."""
    planes, meta = prepare_image(str(_test_file(name)), _FULL)
    assert meta["inverted"] == "MONOCHROME1" and meta["voi"] == "window"
    np.testing.assert_allclose(planes[0].numpy(), _highdicom(_test_file(name)), rtol=0, atol=2e-6)


def test_window_wider_than_the_stored_range_scales_monochrome2_as_highdicom(tmp_path: Path) -> None:
    """RG3's window (550/1024 over 10 bits) reaches past the stored values: the range is the window's own."""
    ds = pydicom.dcmread(_test_file("RG3_UNCR.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.save_as(tmp_path / "rg3_m2.dcm")
    planes, meta = prepare_image(str(tmp_path / "rg3_m2.dcm"), _FULL)
    assert meta["output_range"] == [0.0, 1023.0]
    np.testing.assert_allclose(planes[0].numpy(), _highdicom(tmp_path / "rg3_m2.dcm"), rtol=0, atol=2e-6)


@pytest.mark.parametrize(("low", "high"), [(0, 4095), (1000, 2000)])
def test_a_stored_value_shows_the_same_whatever_the_image_holds(tmp_path: Path, low: int, high: int) -> None:
    stored = np.random.default_rng(0).integers(low, high + 1, (64, 48)).astype(np.uint16)
    path = write_image2d(
        tmp_path / "cr.dcm",
        stored,
        modality="CR",
        photometric="MONOCHROME1",
        bits_stored=12,
        extra={"WindowCenter": 2048, "WindowWidth": 4096, "ImagerPixelSpacing": [0.15, 0.15]},
    )
    image = load_image(path, dtype=np.float64)
    np.testing.assert_allclose(image.pixels[0], _highdicom(path, (0.0, 4095.0)), rtol=0, atol=1e-9)
    assert image.meta["output_range"] == [0.0, 4095.0]


@pytest.mark.parametrize("extra", [{"RescaleSlope": 1, "RescaleIntercept": -1000}, {"WindowCenter": 150000, "WindowWidth": 100000}])
def test_32_bit_monochrome1_is_inverted_within_the_voi_range(tmp_path: Path, extra: dict[str, float]) -> None:
    stored = np.random.default_rng(1).integers(100000, 200000, (20, 30)).astype(np.uint32)
    path = write_image2d(tmp_path / "m1.dcm", stored, modality="OT", photometric="MONOCHROME1", bits_stored=20, extra=extra)
    image = load_image(path, dtype=np.float64)
    np.testing.assert_allclose(image.pixels[0], _highdicom(path, (0.0, 2.0**20 - 1)), rtol=1e-12)


def test_presentation_lut_sequence_output_range_is_its_p_values(tmp_path: Path) -> None:
    """An 8-bit Presentation LUT gives P-values 0-255; scaled by the VOI range 0-4095 they came out at most 0.062."""
    stored = np.random.default_rng(2).integers(0, 4096, (40, 30)).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.add_new(0x00283006, "US", list(range(256)))
    extra = {"WindowCenter": 2048, "WindowWidth": 4096, "PresentationLUTSequence": Sequence([item])}
    path = write_image2d(tmp_path / "plut.dcm", stored, modality="DX", bits_stored=12, extra=extra)
    planes, meta = prepare_image(str(path), _FULL)
    ds = pydicom.dcmread(path)
    p_values = apply_presentation_lut(apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds), ds)
    assert meta["output_range"] == [0.0, 255.0] and meta["inverted"] is None
    np.testing.assert_allclose(planes[0].numpy(), p_values / 255.0, rtol=0, atol=1e-6)


def _table_and_two_windows(tmp_path: Path) -> Path:
    """pydicom's vlut_04.dcm (one VOI LUT table) given two windows as well, as a modality may write them."""
    ds = pydicom.dcmread(_test_file("vlut_04.dcm"))
    ds.WindowCenter, ds.WindowWidth = [128, 60], [200, 40]
    ds.WindowCenterWidthExplanation = ["SOFT", "HARD"]
    ds.save_as(tmp_path / "vlut_windows.dcm")
    return tmp_path / "vlut_windows.dcm"


def test_voi_index_counts_the_tables_then_the_windows(tmp_path: Path) -> None:
    """pydicom reaches a header's windows only past its table (``prefer_lut=False``): voi=1 and 2 are them."""
    path = _table_and_two_windows(tmp_path)
    ds = pydicom.dcmread(path)
    modality = apply_modality_lut(ds.pixel_array, ds)
    expected = [
        apply_voi_lut(modality, ds, index=0),
        apply_voi_lut(modality, ds, index=0, prefer_lut=False),
        apply_voi_lut(modality, ds, index=1, prefer_lut=False),
    ]
    for voi, reference in enumerate(expected):
        image = load_image(path, voi=voi, dtype=np.float64)
        np.testing.assert_array_equal(image.pixels[0], reference)
        assert image.meta["voi_index"] == voi
    assert [load_image(path, voi=voi).meta.get("window") for voi in (0, 1, 2)] == [None, [128.0, 200.0], [60.0, 40.0]]


@pytest.mark.parametrize("voi", [3])  # -1 is the caller's mistake, a ConfigError: tests/imaging2d/test_load_image_options.py
def test_voi_index_past_the_tables_and_windows_is_a_one_line_error(tmp_path: Path, voi: int) -> None:
    path = _table_and_two_windows(tmp_path)
    with pytest.raises(InvalidDicomFileError, match=r"1 VOI LUT table\(s\) and 2 window\(s\); pick an index below 3") as caught:
        load_image(path, voi=voi)
    assert "\n" not in str(caught.value) and caught.value.tag == "(0028,3010)"


def test_a_zero_window_width_names_the_window_width(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_test_file("RG3_UNCR.dcm"))
    ds.WindowWidth = 0
    ds.save_as(tmp_path / "width0.dcm")
    with pytest.raises(ValueError, match=r"\(0028,1051\) Window Width"):
        apply_voi_lut(ds.pixel_array, ds)  # pydicom rejects it too, naming the element
    with pytest.raises(InvalidDicomFileError, match=r"width0\.dcm: .*\(0028,1051\) Window Width") as caught:
        load_image(tmp_path / "width0.dcm")
    assert caught.value.tag == "(0028,1051)"
