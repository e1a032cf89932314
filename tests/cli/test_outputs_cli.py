"""Every command that writes a file, when the write fails for real (RLIMIT_FSIZE in the child, as a full disk
would): exit 1, one line naming the file, and neither the file nor a temporary fragment left behind."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

import dicomml
from dicomml.export import save_nifti
from dicomml.sample import write_sample_study

# Files of at most LIMIT bytes; SIGXFSZ ignored, so a longer write fails with EFBIG ("File too large").
_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
from dicomml.cli.main import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    write_sample_study(root / "dicom")
    manifest = dicomml.index(root / "dicom", root / "manifest", workers=1, salt="outputs", progress=False)
    ct = manifest.series.set_index("modality").loc["CT", "series_key"]
    volume = dicomml.load_series(manifest, ct)
    prediction = root / "prediction.nii.gz"
    nib.save(nib.Nifti1Image((volume.array > 0).astype(np.uint8), volume.affine), prediction)
    return root, ct, prediction


@pytest.mark.parametrize("command", ["export", "show", "write-seg", "write-rtstruct", "info --plot", "sample-data"])
def test_a_failed_write_is_one_line_and_leaves_nothing(study, tmp_path, command):
    root, ct, prediction = study
    out = tmp_path / "out" / {"export": "ct.nii.gz", "show": "ct.png", "info --plot": "cohort.png"}.get(command, "x.dcm")
    manifest = str(root / "manifest")
    args = {
        "export": ["export", manifest, ct, "-o", str(out)],
        "show": ["show", manifest, ct, "-o", str(out)],
        "write-seg": ["write-seg", str(prediction), "--manifest", manifest, "--series", ct, "--label", "body=1", "-o", str(out)],
        "write-rtstruct": ["write-rtstruct", str(prediction), "--manifest", manifest, "--series", ct, "--label", "body=1", "-o", str(out)],
        "info --plot": ["info", manifest, "--plot", str(out)],
        "sample-data": ["sample-data", str(tmp_path / "out")],
    }[command]
    result = subprocess.run([sys.executable, "-c", _LIMITED, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("dicomml: error: ") and ": cannot be written (File too large)" in line
    left = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert not left, left  # the file that failed is not there half-written, nor its temporary


def test_outputs_are_written_whole_when_they_fit(study, tmp_path):
    root, ct, _ = study
    out = tmp_path / "ct.nii.gz"
    save_nifti(dicomml.load_series(dicomml.Manifest(root / "manifest"), ct), out)
    assert nib.load(out).shape == (128, 128, 80) and [p.name for p in tmp_path.iterdir()] == ["ct.nii.gz"]
