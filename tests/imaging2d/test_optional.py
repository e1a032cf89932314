"""2D imaging without its optional packages: Pillow (reduced JPEG 2000 decoding) and highdicom (SEG masks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from pydicom.uid import JPEG2000Lossless

from dicomml.imaging2d.synthetic import write_image2d


def test_without_pillow_only_reduced_decoding_needs_the_extra(tmp_path: Path) -> None:
    path = write_image2d(
        tmp_path / "mg.dcm", np.full((256, 200), 900, np.uint16), modality="MG", bits_stored=12, transfer_syntax=JPEG2000Lossless
    )
    code = (
        "import sys\nsys.modules['PIL'] = None\nsys.modules['PIL.Image'] = None\n"
        "from dicomml.imaging2d import load_image\nfrom dicomml.errors import MissingDependencyError\n"
        f"print(load_image({str(path)!r}).pixels.shape)\n"
        "try:\n"
        f"    load_image({str(path)!r}, reduce_to=(64, 64))\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    shape, message = result.stdout.strip().split("\n")
    assert shape == "(1, 256, 200)"
    assert message.startswith("reduced JPEG 2000 decoding (ImageConfig(reduced_decode=True)) needs PIL") and "dicomml[imaging2d]" in message
