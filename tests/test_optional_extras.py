"""Optional parts (the [seg], [viz], [lightning], [monai] extras): the core imports without them, and
a feature that needs one fails with one line naming the extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import dicomml
from dicomml.dicom.synthetic import write_series

#: Makes these modules unimportable in the child process, as if not installed.
_BLOCK = "import sys\nfor m in {modules!r}: sys.modules[m] = None\n"
_OPTIONAL = ["highdicom", "matplotlib", "monai", "lightning"]


def _python(code: str, *, blocked: list[str]) -> subprocess.CompletedProcess[str]:
    script = _BLOCK.format(modules=blocked) + code
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


def _cli(args: list[str], *, blocked: list[str]) -> subprocess.CompletedProcess[str]:
    return _python(f"from dicomml.cli.main import main\nmain({args!r})", blocked=blocked)


def test_core_imports_and_rtstruct_work_without_the_optional_packages():
    code = (
        "import dicomml, dicomml.seg, dicomml.data, dicomml.transforms, dicomml.viz, dicomml.cli.main\n"
        "from dicomml.seg import rtstruct_to_grid, load_mask\n"
        "try:\n"
        "    dicomml.seg.seg_to_grid\n"
        "except dicomml.errors.MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    result = _python(code, blocked=_OPTIONAL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("DICOM SEG masks (dicomml.seg) needs highdicom, which is not installed")
    assert result.stdout.rstrip().endswith("pip install 'dicomml[seg]'")


def test_show_without_matplotlib_is_one_line_naming_viz(tmp_path: Path):
    write_series(tmp_path / "dicom", np.zeros((3, 8, 8), np.int16))
    manifest = dicomml.index(str(tmp_path / "dicom"), str(tmp_path / "m"), workers=1, progress=False)
    key = manifest.series["series_key"].item()
    result = _cli(["show", str(tmp_path / "m"), key, "-o", str(tmp_path / "x.png")], blocked=["matplotlib"])
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.rstrip().endswith("pip install 'dicomml[viz]'")
    assert result.stderr.startswith("dicomml: error: pictures (dicomml.viz, dicomml show) needs matplotlib")


def test_sample_data_without_highdicom_is_one_line_naming_seg(tmp_path: Path):
    result = _cli(["sample-data", str(tmp_path / "s")], blocked=["highdicom"])
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "needs highdicom" in result.stderr and result.stderr.rstrip().endswith("pip install 'dicomml[seg]'")


def test_datamodule_and_metatensors_name_their_extras():
    code = (
        "import torch, dicomml.errors as e\n"
        "from dicomml.transforms import to_metatensor\n"
        "for call in (lambda: __import__('dicomml.data').data.DataModule, lambda: to_metatensor(torch.zeros(1, 2, 2, 2))):\n"
        "    try:\n"
        "        call()\n"
        "    except e.MissingDependencyError as exc:\n"
        "        print(str(exc).rsplit(' ', 1)[-1])\n"
    )
    result = _python(code, blocked=["lightning", "monai"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["'dicomml[lightning]'", "'dicomml[monai]'"]
