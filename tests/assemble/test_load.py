"""load_files / load_series behaviour on synthetic series written with pydicom and on real files."""

from __future__ import annotations

import json
import os

import fsspec
import numpy as np
import pydicom
import pytest

import dicomml
from dicomml.assemble import load_files, load_series
from dicomml.dicom.synthetic import write_series, write_slice
from dicomml.errors import (
    DuplicateSliceError,
    GantryTiltError,
    GeometryError,
    InconsistentGeometryError,
    InvalidDicomFileError,
    ManifestError,
    MixedSeriesError,
    ResourceLimitError,
    SeriesNotFoundError,
    SliceGapError,
    UnsupportedTransferSyntaxError,
)
from dicomml.geometry import LPS_TO_RAS

RNG = np.random.default_rng(7)


def _volume(n=5, rows=6, cols=7, high=4000):
    return RNG.integers(0, high, size=(n, rows, cols)).astype(np.uint16)


def test_sort_uses_slice_normal_not_instance_number_or_file_name(tmp_path):
    vol = _volume()
    files = write_series(tmp_path, vol, spacing=2.5, shuffle=3)
    # InstanceNumber and names are shuffled against position; reading order is reversed too.
    v = load_files(files[::-1])
    np.testing.assert_array_equal(v.array, vol.astype(np.int32) - 1024)
    expected = LPS_TO_RAS @ np.array([[0, 0, 1, 0], [0, 1, 0, 0], [2.5, 0, 0, 0], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(v.affine, expected)
    assert v.orientation == "SPL" and v.axes == ()


def test_ct_rescale_gives_int16_hu_exactly(tmp_path):
    vol = _volume(high=4096)
    v = load_files(write_series(tmp_path, vol))
    assert v.array.dtype == np.int16
    np.testing.assert_array_equal(v.array, vol.astype(np.int32) - 1024)
    assert v.meta["rescale_intercept"] == -1024.0 and v.meta["rescale_type"] == "HU"


def test_values_beyond_int16_are_promoted_not_wrapped(tmp_path):
    vol = _volume(n=2)
    vol[0, 0, 0] = 65535
    v = load_files(write_series(tmp_path, vol))
    assert v.array.dtype == np.int32
    assert v.array[0, 0, 0] == 65535 - 1024


def test_fractional_slope_gives_float32(tmp_path):
    vol = _volume(n=3)
    v = load_files(write_series(tmp_path, vol, modality="MR", rescale=(0.5, 1.25)))
    assert v.array.dtype == np.float32
    np.testing.assert_allclose(v.array, vol * 0.5 + 1.25)


def test_requested_float32_decodes_and_rescales_in_one_pass(tmp_path):
    vol = _volume(n=3)
    v = load_files(write_series(tmp_path, vol), dtype=np.float32)
    assert v.array.dtype == np.float32
    np.testing.assert_array_equal(v.array, vol.astype(np.float32) - 1024)


def test_repeated_positions_become_time_axis_in_temporal_order(tmp_path):
    vol = _volume(n=6)  # 2 time points x 3 positions
    uid = pydicom.uid.generate_uid()
    files = []
    for t in range(2):
        for z in range(3):
            files.append(
                write_slice(
                    tmp_path / f"t{t}z{z}.dcm",
                    vol[t * 3 + z],
                    position=(0, 0, 3.0 * z),
                    series_uid=uid,
                    instance=100 - (t * 3 + z),  # InstanceNumber runs backwards in time
                    modality="MR",
                    rescale=None,
                    extra={"TemporalPositionIdentifier": t + 1},
                )
            )
    v = load_files(files)
    assert v.axes == ("time",) and v.array.shape == (2, 3, 6, 7)
    np.testing.assert_array_equal(v.array.reshape(6, 6, 7), vol)
    assert v.array.dtype == np.int16  # no rescale, values fit


def test_two_series_raise_mixed_series_error_naming_both(tmp_path):
    a = write_series(tmp_path / "a", _volume(n=2))
    b = write_series(tmp_path / "b", _volume(n=2), orientation=(0, 1, 0, 0, 0, -1))
    with pytest.raises(MixedSeriesError) as info:
        load_files(a + b)
    message = str(info.value)
    assert "2 volume groups" in message and "IM00000.dcm" in message and "orientation" in message


def test_missing_slice_raises_gap_error(tmp_path):
    files = write_series(tmp_path, _volume(n=4), positions=np.array([[0, 0, z] for z in (0.0, 5.0, 10.0, 20.0)]))
    with pytest.raises(SliceGapError, match="1 slice"):
        load_files(files)


def test_gap_resample_interpolates_linearly_along_the_normal(tmp_path):
    vol = np.stack([np.full((4, 4), v, np.uint16) for v in (1000, 1100, 1200, 1400)])
    files = write_series(tmp_path, vol, positions=np.array([[0, 0, z] for z in (0.0, 5.0, 10.0, 20.0)]))
    v = load_files(files, on_irregular="resample")
    assert v.array.shape == (5, 4, 4) and v.array.dtype == np.float32
    np.testing.assert_allclose(v.array[:, 0, 0], [-24, 76, 176, 276, 376])
    assert v.spacing[0] == pytest.approx(5.0)
    assert v.meta["irregularities"] and "missing" in v.meta["irregularities"][0]


def test_gap_keep_records_the_irregularity(tmp_path):
    files = write_series(tmp_path, _volume(n=4), positions=np.array([[0, 0, z] for z in (0.0, 5.0, 10.0, 20.0)]))
    v = load_files(files, on_irregular="keep")
    assert v.array.shape[0] == 4 and "missing" in v.meta["irregularities"][0]


def test_unequal_repeats_raise_duplicate_slice_error(tmp_path):
    positions = np.array([[0, 0, z] for z in (0.0, 2.0, 2.0, 4.0)])
    files = write_series(tmp_path, _volume(n=4), positions=positions)
    with pytest.raises(DuplicateSliceError, match="unequal"):
        load_files(files)
    with pytest.raises(DuplicateSliceError):
        load_files(files, on_irregular="resample")
    assert load_files(files, on_irregular="keep").array.shape[0] == 4


def test_same_file_twice_is_a_duplicate(tmp_path):
    files = write_series(tmp_path, _volume(n=3))
    with pytest.raises(DuplicateSliceError, match="IM00001.dcm"):
        load_files(files + files[1:2])


def test_tilted_positions_raise_gantry_tilt_error(tmp_path):
    positions = np.array([[0, 0.5 * k, 2.0 * k] for k in range(4)])
    files = write_series(tmp_path, _volume(n=4), positions=positions)
    with pytest.raises(GantryTiltError, match="deg"):
        load_files(files)


def test_varying_pixel_spacing_raises_inconsistent_geometry(tmp_path):
    files = write_series(tmp_path / "a", _volume(n=3))
    ds = pydicom.dcmread(files[1])
    ds.PixelSpacing = [1.2, 1.2]
    ds.save_as(files[1])
    with pytest.raises(InconsistentGeometryError, match="PixelSpacing"):
        load_files(files)


def test_unknown_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="on_irregular"):
        load_files(write_series(tmp_path, _volume(n=2)), on_irregular="ignore")


@pytest.mark.parametrize(
    ("name", "uid"),
    [("liver_deflate.dcm", "1.2.840.10008.1.2.8.1"), ("liver_rle.dcm", "1.2.840.10008.1.2.5")],
)
def test_undecodable_pixel_data_names_file_and_uid(data_dir, name, uid):
    path = data_dir / "pydicom-data/data_store/data" / name
    with pytest.raises(UnsupportedTransferSyntaxError) as info:
        load_files([path])
    assert info.value.path == str(path) and uid in str(info.value)


def test_every_transfer_syntax_of_one_mosaic_gives_the_same_volume(data_dir):
    reference = load_files([data_dir / "dcm_qa_ts/In/1.dcm"])
    assert reference.array.shape == (35, 64, 64)
    for n in range(2, 10):
        other = load_files([data_dir / f"dcm_qa_ts/In/{n}.dcm"])
        np.testing.assert_array_equal(other.array, reference.array, err_msg=f"{n}.dcm")
        np.testing.assert_allclose(other.affine, reference.affine)


def test_fsspec_urls_load_like_local_files(tmp_path):
    vol = _volume(n=3)
    files = write_series(tmp_path, vol)
    memory = fsspec.filesystem("memory")
    urls = []
    for f in files:
        url = f"memory://assemble-test/{f.name}"
        with memory.open(url, "wb") as out:
            out.write(f.read_bytes())
        urls.append(url)
    try:
        v = load_files(urls)
    finally:
        memory.rm("memory://assemble-test", recursive=True)
    np.testing.assert_array_equal(v.array, load_files(files).array)
    assert v.meta["source_files"] == urls


def test_meta_is_json_and_complete(data_dir):
    v = load_files(sorted((data_dir / "dcmqi/data/segmentations/ct-3slice").glob("*.dcm")))
    meta = json.loads(json.dumps(v.meta))
    for key in (
        "series_uid",
        "series_key",
        "modality",
        "sop_class",
        "rescale_slope",
        "rescale_intercept",
        "rescale_type",
        "window_center",
        "window_width",
        "voi_lut_function",
        "source_files",
        "sop_instance_uids",
        "frame_of_reference_uid",
        "irregularities",
        "orientation",
    ):
        assert key in meta
    assert meta["modality"] == "CT" and len(meta["source_files"]) == 3 and meta["orientation"] == v.orientation
    first = pydicom.dcmread(meta["source_files"][0], stop_before_pixels=True)
    assert meta["sop_instance_uids"][0] == first.SOPInstanceUID
    assert float(first.ImagePositionPatient[2]) == pytest.approx(v.affine[2, 3])


def test_a_file_rewritten_after_indexing_is_refused_until_indexed_again(tmp_path):
    """Its rows and cache key describe what it held when indexed: a Dataset would cache the new pixels under the old key."""
    vol = _volume(n=4)
    paths = write_series(tmp_path / "dicom" / "ct", vol)
    manifest = dicomml.index(tmp_path / "dicom", tmp_path / "manifest", workers=1, progress=False)
    (key,) = manifest.series["series_key"].tolist()
    ds = pydicom.dcmread(paths[1])
    ds.RescaleIntercept = -1000  # still a valid file: only the manifest can tell
    ds.save_as(paths[1])
    with pytest.raises(ManifestError, match=f"^{paths[1]}: changed since it was indexed"):
        load_series(manifest, key)
    again = dicomml.index(tmp_path / "dicom", tmp_path / "manifest", workers=1, progress=False)
    (key,) = again.series["series_key"].tolist()
    assert load_series(again, key).array[1].tolist() == (vol[1].astype(np.int32) - 1000).tolist()


def test_load_series_reads_the_manifest_group(tmp_path):
    vol = _volume(n=4)
    write_series(tmp_path / "dicom" / "ct", vol, shuffle=1)
    manifest = dicomml.index(tmp_path / "dicom", tmp_path / "manifest", workers=1, progress=False)
    keys = manifest.series["series_key"].tolist()
    assert len(keys) == 1, (keys, manifest.errors)
    (key,) = keys
    v = load_series(tmp_path / "manifest", key)
    np.testing.assert_array_equal(v.array, vol.astype(np.int32) - 1024)
    assert v.meta["series_key"] == key
    assert load_files(v.meta["source_files"]).meta["series_key"] == key  # same rule, same folder form
    with pytest.raises(SeriesNotFoundError):
        load_series(manifest, "0000000000000000")
    with pytest.raises(ResourceLimitError, match="max_voxels="):
        load_series(manifest, key, max_voxels=vol.size - 1)


def test_decoding_threads_follow_the_process_budget(monkeypatch):
    from dicomml.assemble.load import MAX_WORKERS, _threads

    cores = min(MAX_WORKERS, os.cpu_count() or 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the library reads no environment: only its argument counts
    assert _threads(remote=False, compressed=True, budget=1) == 1  # a Dask worker's, torchrun's
    assert _threads(remote=True, compressed=False, budget=1) == MAX_WORKERS  # waits on the network, not a core
    assert _threads(remote=False, compressed=True, budget=64) == cores
    assert _threads(remote=False, compressed=True) == cores
    assert _threads(remote=False, compressed=False) == 1  # a read and a copy: the calling thread


def test_max_voxels_refuses_a_volume_past_it_naming_a_file_and_the_default_passes(tmp_path):
    files = write_series(tmp_path, _volume(n=5, rows=6, cols=7))
    assert load_files(files).array.shape == (5, 6, 7)  # DEFAULT_MAX_VOXELS
    assert load_files(files, max_voxels=5 * 6 * 7).array.shape == (5, 6, 7)  # the ceiling itself is allowed
    with pytest.raises(ResourceLimitError, match=r"5x6x7 voxels exceeds the limit of 100; .*max_voxels=") as info:
        load_files(files, max_voxels=100)
    assert any(os.path.basename(str(f)) in str(info.value) for f in files)


def test_max_voxels_bounds_the_resampled_grid_too(tmp_path):
    files = write_series(tmp_path, _volume(n=4), positions=np.array([[0, 0, z] for z in (0.0, 5.0, 10.0, 20.0)]))
    assert load_files(files, on_irregular="resample", max_voxels=5 * 6 * 7).array.shape == (5, 6, 7)
    with pytest.raises(ResourceLimitError, match="resampling to equidistant slices of 5 mm"):
        load_files(files, on_irregular="resample", max_voxels=4 * 6 * 7)  # the stack fits, the grid does not


@pytest.mark.parametrize(("slope", "dtype", "refused"), [(1e308, None, "float64"), (1e36, np.float32, "float32"), (1e36, None, None)])
def test_a_rescale_that_overflows_the_output_type_is_refused_naming_the_file(tmp_path, slope, dtype, refused):
    """Finite header values whose product with the stored values is infinite gave a volume of infinities."""
    files = write_series(tmp_path, np.full((4, 6, 5), 1000, np.int16))
    ds = pydicom.dcmread(files[2])
    ds.RescaleSlope = slope
    ds.save_as(files[2])
    if refused is None:
        assert np.isfinite(load_files(files, dtype=dtype).array).all()
        return
    with pytest.raises(InvalidDicomFileError, match=rf"^{files[2]}: \(0028,1053\) RescaleSlope .* past {refused} \(to infinity\)"):
        load_files(files, dtype=dtype)


@pytest.mark.parametrize("thickness", ["inf", "1e308"])
def test_a_single_slice_with_an_impossible_thickness_is_refused_in_one_line(tmp_path, thickness):
    (path,) = write_series(tmp_path, np.zeros((1, 6, 5), np.int16))
    ds = pydicom.dcmread(path)
    ds.SliceThickness = thickness
    ds.save_as(path)
    with pytest.raises(GeometryError, match=rf"^{path}: \(0018,0050\) SliceThickness .* is outside .* mm; [^\n]*$"):
        load_files([path])


def test_a_window_that_does_not_parse_is_refused_naming_the_file_and_tag(tmp_path):
    """As the index and load_image refuse it: the ValueError named no file."""
    files = write_series(tmp_path, np.zeros((3, 6, 5), np.int16))
    for path in files:
        ds = pydicom.dcmread(path)
        ds.WindowCenter, ds.WindowWidth = "97531", "86420"
        ds.save_as(path)
        path.write_bytes(path.read_bytes().replace(b"97531 ", b"abc   "))  # pydicom writes no junk
    with pytest.raises(InvalidDicomFileError, match=r"\(0028,1050\)"):
        load_files(files)


def test_window_is_the_middle_slices_where_slices_carry_their_own(data_dir):
    """Siemens MR writes a window per slice; the first (an edge slice's, 4 / 9) would wash a picture out."""
    folder = data_dir / "dcm_qa_decubitus/In/HFDR/2_t1_fl2d_sag"
    volume = load_files(sorted(folder.iterdir()))
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in volume.meta["source_files"]]  # array order
    middle = headers[len(headers) // 2]
    assert float(headers[0].WindowWidth) != float(middle.WindowWidth)  # the series does carry per-slice windows
    assert volume.meta["window_center"] == [float(middle.WindowCenter)]
    assert volume.meta["window_width"] == [float(middle.WindowWidth)]
