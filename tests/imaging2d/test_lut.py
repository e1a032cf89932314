"""Display values equal pydicom's own LUT and colour functions, file by file."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import highdicom
import numpy as np
import pydicom
import pytest
from imaging2d_refs import pydicom_test_files
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.pixels.processing import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    convert_color_space,
)
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from dicomml.errors import InvalidDicomFileError
from dicomml.imaging2d import load_image
from dicomml.imaging2d.synthetic import write_image2d

_IMAGES = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")


#: Files whose header dicomml rejects where pydicom guesses (checked in test_malformed_headers_are_one_line_errors).
_MALFORMED = {"badVR.dcm": r"\(0028,0008\) NumberOfFrames is not a number \(2 characters, not shown\), expected a number"}


def _cases() -> list[Path]:
    """Test files that are images pydicom itself decodes (not SEG bit masks, not the deliberately broken ones)."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in pydicom_test_files():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:
                continue
            if str(ds.get("PhotometricInterpretation", "")) not in _IMAGES or ds.get("Modality") == "SEG":
                continue
            if int(ds.get("BitsAllocated") or 0) == 1 or path.name in _MALFORMED:
                continue
            out.append(path)
    return out


def _inverse(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """highdicom's inversion (PS3.3 C.11.6), within the VOI output range rather than the image's own
    (pydicom's apply_presentation_lut): a window's [y_min, y_max] as pydicom's apply_windowing sets them,
    else the range of the LUTs over every stored value."""
    bits = int(ds.BitsStored)
    ends = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if ds.PixelRepresentation == 1 else [0, 2**bits - 1])
    if "WindowWidth" in ds and not ds.get("VOILUTSequence"):
        low, high = ends * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    else:
        every = apply_voi_lut(apply_modality_lut(np.arange(ends[0], ends[1] + 1), ds), ds)
        low, high = every.min(), every.max()
    return low + high - arr


def frame_dataset(ds: Dataset, index: int) -> Dataset:
    """``ds`` with frame ``index``'s Pixel Value Transformation and Frame VOI LUT items (shared, then
    per-frame) set at the top level, where pydicom's functions read them (PS3.3 C.7.6.16)."""
    out = copy.deepcopy(ds)
    shared = ds.get("SharedFunctionalGroupsSequence") or [Dataset()]
    own = (ds.get("PerFrameFunctionalGroupsSequence") or [])[index : index + 1] or [Dataset()]
    for groups in (shared[0], own[0]):
        for name in ("PixelValueTransformationSequence", "FrameVOILUTSequence"):
            for element in groups.get(name, [Dataset()])[0]:
                out[element.tag] = element
    return out


def pydicom_display(ds: Dataset) -> np.ndarray:
    """The reference: pydicom's functions in PS3.3's order, frames first; frames of an enhanced
    image with their own functional groups' rescale and window each through its own header."""
    photometric = ds.PhotometricInterpretation
    frames = int(ds.get("NumberOfFrames") or 1)
    if photometric in _IMAGES[:2] and ("SharedFunctionalGroupsSequence" in ds or "PerFrameFunctionalGroupsSequence" in ds):
        stored = pixel_array(ds).reshape(frames, ds.Rows, ds.Columns)
        planes = []
        for i in range(frames):
            header = frame_dataset(ds, i)
            plane = apply_voi_lut(apply_modality_lut(stored[i], header), header)
            inverse = photometric == "MONOCHROME1" or ds.get("PresentationLUTShape") == "INVERSE"
            planes.append(_inverse(plane, header) if inverse else plane)
        return np.stack(planes)
    if photometric == "PALETTE COLOR":
        out = apply_color_lut(pixel_array(ds, as_rgb=False), ds)[..., :3]
    elif photometric in ("YBR_FULL", "YBR_FULL_422") and not ds.file_meta.TransferSyntaxUID.is_compressed:
        out = convert_color_space(pixel_array(ds, as_rgb=False), photometric, "RGB")
    elif photometric in _IMAGES[2:]:
        out = pixel_array(ds)  # the decoder's own YBR/ICT/RCT to RGB
    else:
        out = apply_voi_lut(apply_modality_lut(pixel_array(ds), ds), ds)
        if photometric == "MONOCHROME1" or ds.get("PresentationLUTShape") == "INVERSE":
            out = _inverse(out, ds)
    return out if frames > 1 else out[np.newaxis]


def _readable(path: Path) -> Dataset | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        try:
            pixel_array(ds)
        except Exception:
            return None  # broken on purpose (truncated, mismatched): pydicom has no values to compare
    return ds


@pytest.mark.parametrize("path", _cases(), ids=lambda p: p.name)
def test_display_values_equal_pydicoms_functions(path: Path) -> None:
    ds = _readable(path)
    if ds is None:
        with pytest.raises((InvalidDicomFileError, NotImplementedError)):
            load_image(path)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pydicom_display(ds)
        ours = load_image(path, dtype=np.float64)
    assert ours.pixels.shape == expected.shape
    np.testing.assert_array_equal(ours.pixels, expected)
    assert ours.meta["photometric_interpretation"] == ds.PhotometricInterpretation


@pytest.mark.parametrize("name", sorted(_MALFORMED))
def test_malformed_headers_are_one_line_errors(name: str) -> None:
    path = pydicom.data.get_testdata_file(name, download=False)
    with pytest.raises(InvalidDicomFileError, match=_MALFORMED[name]):
        load_image(path)


def test_every_photometric_interpretation_and_lut_case_is_covered() -> None:
    seen = set()
    for path in _cases():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        seen.add(ds.PhotometricInterpretation)
        seen |= {k for k in ("ModalityLUTSequence", "VOILUTSequence", "WindowCenter", "RescaleSlope") if k in ds}
    assert set(_IMAGES) <= seen
    assert {"ModalityLUTSequence", "VOILUTSequence", "WindowCenter", "RescaleSlope"} <= seen


def test_float32_values_are_pydicoms_rounded() -> None:
    path = pydicom.data.get_testdata_file("RG1_UNCI.dcm", download=False)
    exact = load_image(path, dtype=np.float64).pixels
    single = load_image(path).pixels
    assert single.dtype == np.float32
    # the table holds pydicom's values rounded to float32; the inversion then rounds once more
    np.testing.assert_allclose(single, exact, rtol=0, atol=2 * float(np.spacing(np.float32(exact.max()))))


def _voi_lut_item(descriptor: list[int], data: np.ndarray) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = descriptor
    item.LUTExplanation = "GE DX VOI LUT"
    item.add_new(0x00283006, "OW", data.astype("<u2").tobytes())
    return item


def _dx_headers(**more: object) -> dict[str, object]:
    headers: dict[str, object] = {
        "ImagerPixelSpacing": [0.139, 0.139],
        "ViewPosition": "PA",
        "BodyPartExamined": "CHEST",
        "RescaleSlope": 1,
        "RescaleIntercept": 0,
        "RescaleType": "US",
    }
    headers.update(more)
    return headers


def test_monochrome1_dx_with_voi_lut_table_and_masked_high_bits(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    stored = rng.integers(0, 4096, (96, 80)).astype(np.uint16)
    garbage = stored | (rng.integers(0, 16, stored.shape).astype(np.uint16) << 12)  # overlay bits above Bits Stored
    table = (np.sqrt(np.arange(4096)) * 1000).astype(np.uint16)  # a non-linear table, like a vendor's
    path = write_image2d(
        tmp_path / "dx.dcm",
        garbage,
        modality="DX",
        photometric="MONOCHROME1",
        bits_stored=12,
        extra=_dx_headers(
            PresentationLUTShape="INVERSE",
            VOILUTSequence=Sequence([_voi_lut_item([4096, 0, 16], table)]),
            WindowCenter=2047,
            WindowWidth=4096,
        ),
    )
    ds = pydicom.dcmread(path)
    image = load_image(path, dtype=np.float64)
    np.testing.assert_array_equal(image.pixels, pydicom_display(ds))
    np.testing.assert_array_equal(image.pixels[0], table.max() - table[stored].astype(float))  # masked, table, inverted
    assert image.meta["inverted"] == "MONOCHROME1"
    assert image.meta["voi"] == "table"
    assert load_image(path, voi=1 - 1).meta["voi"] == "table"


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_windows_and_functions_equal_pydicom(tmp_path: Path, function: str) -> None:
    rng = np.random.default_rng(4)
    stored = rng.integers(-2000, 3000, (64, 48)).astype(np.int16)
    path = write_image2d(
        tmp_path / "w.dcm",
        stored,
        modality="CR",
        extra=_dx_headers(
            RescaleSlope=0.5, RescaleIntercept=-100, WindowCenter=[300, 40], WindowWidth=[1500, 400], VOILUTFunction=function
        ),
    )
    ds = pydicom.dcmread(path)
    for index in (0, 1):
        expected = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=index)
        np.testing.assert_array_equal(load_image(path, voi=index, dtype=np.float64).pixels[0], expected)
    preset = Dataset()
    for keyword in ("PhotometricInterpretation", "BitsStored", "PixelRepresentation", "RescaleSlope", "RescaleIntercept"):
        preset[keyword] = ds[keyword]
    preset.WindowCenter, preset.WindowWidth = 40, 80
    expected = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), preset)
    np.testing.assert_array_equal(load_image(path, voi=(40, 80), dtype=np.float64).pixels[0], expected)
    np.testing.assert_array_equal(load_image(path, voi="none", dtype=np.float64).pixels[0], apply_modality_lut(ds.pixel_array, ds))


def test_presentation_lut_shape_inverse_on_monochrome2(tmp_path: Path) -> None:
    stored = np.arange(64 * 32, dtype=np.uint16).reshape(64, 32)
    path = write_image2d(tmp_path / "inv.dcm", stored, modality="MG", bits_stored=12, extra={"PresentationLUTShape": "INVERSE"})
    image = load_image(path, dtype=np.float64)
    expected = highdicom.Image.from_file(path).get_frame(1, apply_presentation_lut=True)  # 4095 - value, not 2047 - value
    np.testing.assert_array_equal(image.pixels[0], expected)
    assert image.meta["inverted"] == "INVERSE"


def test_missing_window_index_is_a_one_line_error(tmp_path: Path) -> None:
    path = write_image2d(tmp_path / "one.dcm", np.zeros((8, 8), np.uint16), extra={"WindowCenter": 10, "WindowWidth": 20})
    with pytest.raises(InvalidDicomFileError, match=r"one\.dcm: VOI 3 asked for, but the header has 0 VOI LUT table\(s\) and 1 window"):
        load_image(path, voi=3)


def test_cine_frames_and_frame_times(tmp_path: Path) -> None:
    frames = np.random.default_rng(5).integers(0, 255, (6, 32, 40, 3)).astype(np.uint8)
    path = write_image2d(tmp_path / "cine.dcm", frames, modality="US", photometric="RGB", extra={"FrameTime": 33.3})
    image = load_image(path)
    assert image.pixels.shape == (6, 32, 40, 3) and image.is_colour
    np.testing.assert_array_equal(image.pixels, frames)
    np.testing.assert_allclose(image.meta["frame_times_ms"], np.arange(6) * 33.3)
    assert image.meta["spacing_missing"] and image.meta["spacing_source"] == "none"


def test_compressed_grey_equals_uncompressed(tmp_path: Path) -> None:
    from pydicom.uid import JPEG2000Lossless

    stored = np.random.default_rng(6).integers(0, 4096, (120, 100)).astype(np.uint16)
    plain = write_image2d(tmp_path / "a.dcm", stored, modality="MG", bits_stored=12, transfer_syntax=ExplicitVRLittleEndian)
    j2k = write_image2d(tmp_path / "b.dcm", stored, modality="MG", bits_stored=12, transfer_syntax=JPEG2000Lossless)
    np.testing.assert_array_equal(load_image(plain).pixels, load_image(j2k).pixels)


def test_reduced_decode_is_a_coarser_level_of_the_same_image(tmp_path: Path) -> None:
    import openjpeg
    from pydicom.encaps import generate_frames
    from pydicom.uid import JPEG2000Lossless

    from dicomml.imaging2d.j2k import decomposition_levels

    y, x = np.mgrid[:400, :320]
    stored = (2000 + 1000 * np.sin(x / 40.0) * np.cos(y / 50.0)).astype(np.uint16)
    path = write_image2d(
        tmp_path / "mg.dcm",
        stored,
        modality="MG",
        bits_stored=12,
        transfer_syntax=JPEG2000Lossless,
        extra={"ImagerPixelSpacing": [0.1, 0.1], "WindowCenter": 2000, "WindowWidth": 2400},
    )
    codestream = next(generate_frames(pydicom.dcmread(path).PixelData, number_of_frames=1))
    assert decomposition_levels(codestream) == 5  # OpenJPEG's default, as the encoder wrote it
    assert openjpeg.get_parameters(codestream)["precision"] == 12
    full = load_image(path)
    coarse = load_image(path, reduce_to=(100, 100))  # letterboxed: 100 x 80, so level 2 (100 x 80) is the coarsest
    assert coarse.meta["decode_level"] == 2 and coarse.pixels.shape == (1, 100, 80)
    np.testing.assert_allclose(coarse.meta["spacing"], [0.4, 0.4])
    window = 4095.0
    # On a smooth image the wavelet low-pass is the image at every 4th pixel (its filter is centred there, not on 4x4 boxes).
    difference = np.abs(coarse.pixels[0] - full.pixels[0][::4, ::4])
    assert difference.mean() < 0.001 * window and difference.max() < 0.01 * window
    assert load_image(path, reduce_to=(400, 320)).meta["decode_level"] == 0


def test_reduced_decode_of_an_odd_sized_image_takes_the_finest_level_pillow_decodes(tmp_path: Path) -> None:
    """Pillow fails levels 2 and up of a 257 x 193 codestream ("broken data stream"): the OSError escaped."""
    from pydicom.uid import JPEG2000Lossless

    stored = np.random.default_rng(3).integers(0, 4096, (257, 193)).astype(np.uint16)
    path = write_image2d(tmp_path / "mg.dcm", stored, modality="MG", bits_stored=12, transfer_syntax=JPEG2000Lossless)
    coarse = load_image(path, reduce_to=(32, 32))
    assert coarse.meta["decode_level"] == 1 and coarse.pixels.shape == (1, 129, 97)


@pytest.mark.parametrize("signed", [False, True])
def test_gather_over_many_blocks_and_threads_equals_pydicom(tmp_path: Path, signed: bool) -> None:
    rng = np.random.default_rng(8)
    low, high = (-2048, 2048) if signed else (0, 4096)
    stored = rng.integers(low, high, (700, 560)).astype(np.int16 if signed else np.uint16)  # several gather blocks
    path = write_image2d(
        tmp_path / "dx.dcm",
        stored,
        modality="DX",
        photometric="MONOCHROME1",
        bits_stored=12,
        extra=_dx_headers(RescaleSlope=2, RescaleIntercept=-100, WindowCenter=500, WindowWidth=3000),
    )
    ds = pydicom.dcmread(path)
    expected = pydicom_display(ds)
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(load_image(path, dtype=np.float64, threads=threads).pixels, expected)


@pytest.mark.parametrize("name", ["parametric_map_float.dcm", "parametric_map_double_float.dcm"])
def test_parametric_maps_of_float_pixel_data_load_as_pydicom_reads_them(data_dir: Path, name: str) -> None:
    """The index sends a Parametric Map to the 2D readers; its pixels are (7FE0,0008/0009) Float Pixel Data."""
    path = data_dir / "pydicom-data/data_store/data" / name
    image = load_image(path)
    np.testing.assert_allclose(image.pixels[0], pixel_array(pydicom.dcmread(path)), rtol=1e-6)


@pytest.mark.parametrize("case", ["intercept", "signed"])
def test_an_inverted_image_is_scaled_by_its_range_after_the_inversion(tmp_path: Path, case: str) -> None:
    """MONOCHROME1 with a rescale intercept or signed pixels: the range before the inversion put the prepared
    image in [0.25, 1.25] or [0.5, 1.5], clipped in the cache."""
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    from dicomml.imaging2d import ImageConfig
    from dicomml.imaging2d.prepare import prepare_image

    stored = np.random.default_rng(0).integers(0, 4096, (64, 48)).astype(np.uint16)
    stored.flat[:2] = 0, 4095
    if case == "signed":
        stored = (stored.astype(np.int32) - 2048).astype(np.int16)
    extra = {"RescaleSlope": 1, "RescaleIntercept": -1024} if case == "intercept" else {}
    path = write_image2d(tmp_path / "cr.dcm", stored, modality="CR", photometric="MONOCHROME1", bits_stored=12, extra=extra)
    planes, _ = prepare_image(path, ImageConfig(size=None, resize="none", dtype="float32"))
    ds = pydicom.dcmread(path)
    shown = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    shown = shown.max() - shown
    np.testing.assert_allclose(planes[0].numpy(), (shown - shown.min()) / (shown.max() - shown.min()), atol=1e-5)


def test_colour_of_12_bits_in_16_is_scaled_by_its_full_scale(tmp_path: Path) -> None:
    """RGB with Bits Stored 12 was divided by 65535: full-scale red came out 0.0625."""
    from dicomml.imaging2d import ImageConfig
    from dicomml.imaging2d.prepare import prepare_image

    rgb = np.zeros((20, 30, 3), np.uint16)
    rgb[..., 0], rgb[..., 1] = 4095, 2048
    path = write_image2d(tmp_path / "rgb.dcm", rgb, modality="OT", photometric="RGB", bits_stored=12)
    planes, meta = prepare_image(path, ImageConfig(size=None, resize="none", dtype="float32"))
    assert meta["output_range"] == [0.0, 4095.0]
    np.testing.assert_allclose(planes[:3, 0, 0].numpy(), [1.0, 2048 / 4095, 0.0], rtol=1e-6)


def _codestream_wider_than_bits_stored(tmp_path: Path, syntax: str, signed: bool) -> Path:
    """An OT image whose codestream carries 16 bits under a header saying Bits Stored 12."""
    values = np.linspace(0, 60000, 40 * 37).reshape(40, 37)
    stored = (values - 30000).astype(np.int16) if signed else values.astype(np.uint16)
    geometry = {"ImagePositionPatient": [0, 0, 0], "ImageOrientationPatient": [1, 0, 0, 0, 1, 0], "PixelSpacing": [1, 1]}
    path = write_image2d(tmp_path / "ot.dcm", stored, modality="OT", transfer_syntax=syntax, extra=geometry)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.save_as(path)
    return path


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80"], ids=["jpeg2000", "jpeg-ls"])
def test_codestream_precision_above_bits_stored_gives_pydicoms_and_the_3d_loads_values(tmp_path: Path, syntax: str, signed: bool) -> None:
    """The table had 2**BitsStored entries: the 16-bit values wrapped (1379 of 1480 pixels off by up to 57344), signed ones clipped."""
    import dicomml

    path = _codestream_wider_than_bits_stored(tmp_path, syntax, signed)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    assert np.abs(expected).max() > 4095  # pydicom keeps the codestream's 16 bits (PS3.5 8.2: the codestream rules)
    image = load_image(path, voi="none", dtype=np.float64)
    np.testing.assert_array_equal(image.pixels[0], expected)
    np.testing.assert_array_equal(image.pixels[0], dicomml.load_files([path]).array[0])
    # scaled as the same image uncompressed would be: by the values Bits Stored allows
    assert image.meta["output_range"] == ([-2048.0, 2047.0] if signed else [0.0, 4095.0])


def test_big_endian_16_bit_colour_comes_out_in_native_byte_order(tmp_path: Path) -> None:
    """A '>u2' RGB array reached torch.from_numpy, which raised an untyped ValueError in prepare_image."""
    from pydicom.uid import ExplicitVRBigEndian

    from dicomml.imaging2d import ImageConfig
    from dicomml.imaging2d.prepare import prepare_image

    rgb = (np.arange(20 * 30 * 3).reshape(20, 30, 3) * 37 % 65536).astype(np.uint16)
    path = write_image2d(tmp_path / "rgb.dcm", rgb, modality="OT", photometric="RGB")
    ds = pydicom.dcmread(path)
    ds.PixelData = rgb.astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    image = load_image(path)
    assert image.pixels.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(image.pixels[0], pydicom.dcmread(path).pixel_array)
    planes, _ = prepare_image(path, ImageConfig(size=None, resize="none", dtype="float32"))
    np.testing.assert_allclose(planes.numpy(), rgb.transpose(2, 0, 1) / 65535.0, rtol=1e-6)


@pytest.mark.parametrize("entry_bits", [8, 16])
def test_palette_is_scaled_by_the_bits_of_its_entries(tmp_path: Path, entry_bits: int) -> None:
    """8-bit entries kept in 16-bit words come out uint16 from apply_color_lut: dividing by 65535 made white 0.0039."""
    from dicomml.imaging2d import ImageConfig
    from dicomml.imaging2d.prepare import prepare_image

    top = 2**entry_bits - 1
    index = (np.arange(20 * 30).reshape(20, 30) % 256).astype(np.uint8)
    tables = {}
    for colour in ("Red", "Green", "Blue"):
        tables[f"{colour}PaletteColorLookupTableDescriptor"] = [256, 0, entry_bits]
        tables[f"{colour}PaletteColorLookupTableData"] = (np.arange(256) * top // 255).astype("<u2").tobytes()
    path = write_image2d(tmp_path / "us.dcm", index, modality="US", photometric="PALETTE COLOR", extra=tables)
    image = load_image(path)
    np.testing.assert_array_equal(image.pixels[0], apply_color_lut(index, pydicom.dcmread(path)))
    assert image.meta["output_range"] == [0.0, float(top)]
    planes, _ = prepare_image(path, ImageConfig(size=None, resize="none", dtype="float32"))
    assert float(planes.max()) == 1.0


def _one_bit(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2") -> Path:
    """A grey image of 1 bit allocated and stored (pixels packed eight to a byte)."""
    from pydicom.pixels import pack_bits

    write_image2d(path, pixels.astype(np.uint8), photometric=photometric)
    ds = pydicom.dcmread(path)
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelData = pack_bits(pixels.astype(np.uint8))
    ds.save_as(path)
    return path


@pytest.mark.parametrize("bits", [1, 16, 32])
def test_output_range_is_the_stored_range_at_every_bit_depth(tmp_path: Path, bits: int) -> None:
    """32-bit (and 1-bit) images were scaled by their own min and max: stored 1000 and 2000 became 0 and 1."""
    stored = np.zeros((4, 6), np.uint8 if bits == 1 else f"u{bits // 8}")
    stored[:, 3:] = 1 if bits == 1 else 2000
    stored[:, :3] = 0 if bits == 1 else 1000
    path = _one_bit(tmp_path / "b.dcm", stored) if bits == 1 else write_image2d(tmp_path / "g.dcm", stored, modality="OT")
    image = load_image(path, voi="none")
    assert image.meta["output_range"] == [0.0, float(np.float32(2**bits - 1))]
    np.testing.assert_array_equal(image.pixels[0], stored)


def test_a_windowed_32_bit_image_reports_the_windows_output_range(tmp_path: Path) -> None:
    """The range was the data's extent, not the window's [y_min, y_max] as for 8- and 16-bit images."""
    stored = np.full((4, 6), 1200, np.uint32)
    stored[:, 3:] = 1400
    path = write_image2d(tmp_path / "g.dcm", stored, modality="OT", extra={"WindowCenter": 1500, "WindowWidth": 1000})
    ds = pydicom.dcmread(path)
    image = load_image(path, dtype=np.float64)
    np.testing.assert_array_equal(image.pixels[0], apply_voi_lut(ds.pixel_array, ds))
    with np.errstate(over="ignore", invalid="ignore"):
        assert image.meta["output_range"] == apply_voi_lut(np.array([-np.inf, np.inf]), ds).tolist()  # pydicom's y_min, y_max


@pytest.mark.parametrize("sequence", ["VOILUTSequence", "ModalityLUTSequence"])
def test_a_32_bit_image_through_a_lut_table_is_scaled_by_the_tables_entries(tmp_path: Path, sequence: str) -> None:
    """Its range spans every entry the table can give, not the two the image happens to reach."""
    stored = np.full((4, 6), 1000, np.uint32)
    stored[:, 3:] = 2000
    table = _voi_lut_item([3, 999, 16], np.array([5, 70, 9]))
    path = write_image2d(tmp_path / "g.dcm", stored, modality="OT", extra={sequence: Sequence([table])})
    ds = pydicom.dcmread(path)
    image = load_image(path)
    apply = apply_voi_lut if sequence == "VOILUTSequence" else apply_modality_lut
    np.testing.assert_array_equal(image.pixels[0], apply(stored, ds))
    assert image.meta["output_range"] == [5.0, 70.0]


def test_palette_entries_of_neither_8_nor_16_bits_are_a_one_line_error(tmp_path: Path) -> None:
    """pydicom's apply_color_lut raised a raw TypeError ("data type 'uint12' not understood")."""
    tables = {}
    for colour in ("Red", "Green", "Blue"):
        tables[f"{colour}PaletteColorLookupTableDescriptor"] = [4, 0, 12]
        tables[f"{colour}PaletteColorLookupTableData"] = np.arange(4, dtype="<u2").tobytes()
    index = (np.arange(20).reshape(4, 5) % 4).astype(np.uint8)
    path = write_image2d(tmp_path / "us.dcm", index, modality="US", photometric="PALETTE COLOR", extra=tables)
    with pytest.raises(InvalidDicomFileError, match=r"\(0028,1201\).*uint12"):
        load_image(path)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_a_constant_one_bit_image_keeps_its_value(tmp_path: Path, photometric: str) -> None:
    """A 1x1 1-bit image got the range [1, 1], and its sample was zeroed."""
    from dicomml.imaging2d import ImageConfig
    from dicomml.imaging2d.prepare import prepare_image

    path = _one_bit(tmp_path / "b.dcm", np.ones((1, 1)), photometric)
    planes, meta = prepare_image(path, ImageConfig(size=None, resize="none", dtype="float32"))
    assert meta["output_range"] == [0.0, 1.0]
    assert float(planes[0, 0, 0]) == (1.0 if photometric == "MONOCHROME2" else 0.0)
