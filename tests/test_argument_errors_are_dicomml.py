"""A wrong argument to a public function is a dicomml error too (README: every error dicomml raises is a DicomMLError
that also inherits the builtin), so one ``except DicomMLError`` catches what a user's call gets wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dicomml import Volume
from dicomml.cache import Cache
from dicomml.data import collate
from dicomml.errors import DicomMLError
from dicomml.imaging2d.orientation import ProjectionHeader, display_flips
from dicomml.imaging2d.resize import placement
from dicomml.transforms.functional import znormalize
from dicomml.viz.image2d import render_images

CALLS: dict[str, Callable[[Path], Any]] = {
    "Volume, affine not 4x4": lambda tmp: Volume(np.zeros((2, 2, 2)), np.eye(3)),
    "Volume, axes not named": lambda tmp: Volume(np.zeros((2, 2, 2, 2)), np.eye(4)),
    "znormalize, mean without std": lambda tmp: znormalize(torch.zeros(1, 2, 2, 2), mean=[0.0]),
    "placement, unknown mode": lambda tmp: placement(10, 10, (5, 5), mode="crop"),
    "display_flips, unknown convention": lambda tmp: display_flips(ProjectionHeader("R", "CC", None, None), "knee"),
    "render_images, nothing": lambda tmp: render_images([]),
    "collate, shapes differ": lambda tmp: collate([{"image": torch.zeros(1, 2)}, {"image": torch.zeros(1, 3)}]),
    "Cache.put, mask of another grid": lambda tmp: Cache(tmp).put("k", np.zeros((2, 2, 2)), np.eye(4), mask=np.zeros((1, 3, 3, 3))),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_a_wrong_argument_is_a_dicomml_error_and_a_value_error(name: str, tmp_path: Path) -> None:
    with pytest.raises(DicomMLError) as raised:
        CALLS[name](tmp_path)
    assert isinstance(raised.value, ValueError) and "\n" not in str(raised.value)
