"""Philips' private floating-point scaling: FP = (PV * RS + RI) / (RS * SS), Chenevert et al. 2014
(PMC3998685), the formula dcm2niix applies by default; checked on classic files written here
(the corpus' classic Philips series has RS * SS = 1, so it cannot tell the two scalings apart)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

import dicomml
from dicomml.config import PipelineConfig
from dicomml.dicom.synthetic import write_series
from dicomml.errors import ConfigError

RS, RI, SS = 1.42857, -12.5, 0.0077  # 1 / (RS * SS) ~ 90.9: an fMRI-like factor


def _philips_series(folder, *, manufacturer="Philips Medical Systems", implicit=False):
    stored = np.arange(3 * 6 * 5, dtype=np.uint16).reshape(3, 6, 5) * 37
    files = write_series(folder, stored, series_uid="1.2.826.0.1.3680043.8.498.1", modality="MR", rescale=(RS, RI))
    for path in files:
        ds = pydicom.dcmread(path)
        ds.Manufacturer = manufacturer
        block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
        block.add_new(0x0E, "FL", SS)
        if implicit:  # without its private creator, nothing says the element's VR: it reads as raw bytes
            del ds[0x20050010]
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
    return files, stored


def _expected_fp(files):
    pv = np.stack([pydicom.dcmread(f).pixel_array.astype(np.float64) for f in files])
    return (pv * RS + RI) / (RS * SS), pv * RS + RI


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_float_scaling_is_the_philips_formula_and_display_the_standard_rescale(tmp_path, implicit):
    files, _ = _philips_series(tmp_path / "s", implicit=implicit)
    fp, dv = _expected_fp(files)
    if implicit:
        assert pydicom.dcmread(files[0])[0x2005100E].VR == "UN"
    as_float = dicomml.load_files(files)
    as_display = dicomml.load_files(files, philips_scaling="display")
    np.testing.assert_allclose(as_float.array, fp, rtol=1e-6)
    np.testing.assert_allclose(as_display.array, dv, rtol=1e-6)
    assert as_float.meta["rescale_slope"] == pytest.approx(1 / SS)


def test_other_manufacturers_keep_the_standard_rescale(tmp_path):
    files, _ = _philips_series(tmp_path / "s", manufacturer="SIEMENS")
    _, dv = _expected_fp(files)
    np.testing.assert_allclose(dicomml.load_files(files).array, dv, rtol=1e-6)


def test_manifest_records_the_scale_slope_and_the_config_chooses(tmp_path):
    _philips_series(tmp_path / "s")
    manifest = dicomml.index(str(tmp_path / "s"), str(tmp_path / "m"), workers=1, progress=False)
    assert manifest.instances["philips_scale_slope"].tolist() == pytest.approx([SS] * 3)
    display = PipelineConfig.from_dict({"name": "d", "deterministic": {"philips_scaling": "display", "dtype": "float32"}})
    assert display.cache_hash() != PipelineConfig.from_dict({"name": "f", "deterministic": {"dtype": "float32"}}).cache_hash()
    with pytest.raises(ConfigError, match="philips_scaling 'precise' is not one of display, float"):
        PipelineConfig.from_dict({"name": "x", "deterministic": {"philips_scaling": "precise"}})
    with pytest.raises(ConfigError, match="philips_scaling='dv' is not one of"):
        dicomml.load_series(manifest, manifest.series["series_key"].item(), philips_scaling="dv")  # type: ignore[arg-type]
