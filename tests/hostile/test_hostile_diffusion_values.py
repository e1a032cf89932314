"""Malformed diffusion values and acquisition date-times of an Enhanced MR: a one-line error naming the file and
the tag, never the value where it could be a name; legal DTs with no time of day load."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

import dicomml
from dicomml.assemble import load_files
from dicomml.dicom.frames import frame_table
from dicomml.dicom.synthetic import one_item, write_enhanced_mr
from dicomml.errors import InvalidDicomFileError

SECRET = "LEAKNAME^Secret"
#: (volume, slice) of each frame, in an order no scanner writes: assembly matches frames to volumes by their values.
SHUFFLED = [(1, 2), (3, 0), (0, 1), (2, 2), (1, 0), (0, 0), (3, 2), (2, 1), (1, 1), (0, 2), (3, 1), (2, 0)]
B_VALUES = [0.0, 1000.0, 0.0, 1000.0]
GRADIENTS = [None, [1.0, 0.0, 0.0], None, [0.0, 1.0, 0.0]]

FrameHook = Callable[[int, Dataset], None]


def _diffusion(b_value: object, gradient: object) -> DicomSequence:
    """An MR Diffusion item; a DataElement is stored as given (a wrong VR, a name)."""
    item = Dataset()
    if isinstance(b_value, DataElement):
        item.add(b_value)
    elif b_value is not None:
        item.DiffusionBValue = b_value
    if isinstance(gradient, DataElement):
        holder = Dataset()
        holder.add(gradient)
        item.DiffusionGradientDirectionSequence = DicomSequence([holder])
    elif gradient is not None:
        item.DiffusionGradientDirectionSequence = one_item(DiffusionGradientOrientation=gradient)
    return DicomSequence([item])


def _write(
    path: Path, hook: FrameHook | None = None, frames: list[tuple[int, int]] = SHUFFLED, top: dict[str, object] | None = None
) -> Path:
    """An Enhanced MR DWI of 3 slices x 4 volumes (b = 0, 1000 x, 0, 1000 y) of a planted patient;
    ``hook(volume, frame)`` edits a frame's groups."""

    def groups(volume: int, frame: Dataset) -> None:
        frame.MRDiffusionSequence = _diffusion(B_VALUES[volume], GRADIENTS[volume])
        if hook is not None:
            hook(volume, frame)

    return write_enhanced_mr(path, frames, groups, {"PatientName": SECRET, "PatientID": "LEAKID9876", **(top or {})})


def _on_volume_1(b_value: object = 1000.0, gradient: object = (1.0, 0.0, 0.0)) -> FrameHook:
    """Volume 1's frames carry this b-value and gradient; the other volumes keep theirs."""

    def hook(volume: int, frame: Dataset) -> None:
        if volume == 1:
            frame.MRDiffusionSequence = _diffusion(b_value, list(gradient) if isinstance(gradient, tuple) else gradient)

    return hook


def _as_ds(path: Path, tag: int) -> Path:
    """The file with ``tag``'s LO elements re-labelled DS: a DS element holding text, as a broken writer leaves it."""
    key = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"LO"
    data = path.read_bytes()
    assert key in data
    path.write_bytes(data.replace(key, key[:4] + b"DS"))
    return path


def _refused(path: Path, tag: str) -> str:
    """The message of the one-line InvalidDicomFileError that loading ``path`` raises, checked to name it and ``tag``."""
    with pytest.raises(InvalidDicomFileError) as caught:
        load_files([path])
    message = str(caught.value)
    assert message.startswith(f"{path}: {tag} "), message
    assert "\n" not in message and "<dataset>" not in message
    assert "LEAK" not in message and "Secret" not in message and "\\x01" not in message, message
    assert caught.value.path == str(path) and caught.value.tag == tag
    return message


@pytest.mark.parametrize(
    "element",
    [DataElement(0x00189089, "LO", SECRET), DataElement(0x00189089, "OB", b"\x01" * 13)],
    ids=["name", "bytes"],
)
def test_a_gradient_holding_text_or_bytes_is_refused_without_showing_it(tmp_path, element):
    message = _refused(_write(tmp_path / "g.dcm", _on_volume_1(gradient=element)), "(0018,9089)")
    assert "not shown" in message


def test_a_b_value_holding_a_name_is_refused_without_showing_it(tmp_path):
    path = _write(tmp_path / "b.dcm", _on_volume_1(b_value=DataElement(0x00189087, "LO", SECRET)))
    assert "not shown" in _refused(path, "(0018,9087)")


@pytest.mark.parametrize("gradient", [(1.0,), (1.0, 0.0), (1.0, 0.0, 0.0, 0.0)], ids=len)
def test_a_gradient_of_other_than_three_values_is_refused_naming_file_and_tag(tmp_path, gradient):
    message = _refused(_write(tmp_path / "g.dcm", _on_volume_1(gradient=gradient)), "(0018,9089)")
    assert "expected 3 finite numbers" in message


@pytest.mark.parametrize(
    ("make", "tag"),
    [
        (lambda: _on_volume_1(b_value=DataElement(0x00189087, "LO", "LEAKNAME")), 0x00189087),
        (lambda: _on_volume_1(gradient=DataElement(0x00189089, "LO", "1\\x\\LEAKID9876")), 0x00189089),
    ],
    ids=["b_value", "gradient"],
)
def test_a_malformed_ds_inside_a_functional_group_names_the_file(tmp_path, make, tag):
    path = _as_ds(_write(tmp_path / "ds.dcm", make()), tag)
    _refused(path, f"({tag >> 16:04X},{tag & 0xFFFF:04X})")


def test_a_malformed_window_inside_a_functional_group_names_the_file(tmp_path):
    def hook(volume: int, frame: Dataset) -> None:
        voi = Dataset()
        voi.add(DataElement(0x00281050, "LO", "LEAKNAME"))
        frame.FrameVOILUTSequence = DicomSequence([voi])

    _refused(_as_ds(_write(tmp_path / "w.dcm", hook), 0x00281050), "(0028,1050)")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=repr)
def test_a_non_finite_b_value_is_refused(tmp_path, bad):
    _refused(_write(tmp_path / "b.dcm", _on_volume_1(b_value=bad)), "(0018,9087)")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=repr)
def test_a_non_finite_gradient_component_is_refused(tmp_path, bad):
    _refused(_write(tmp_path / "g.dcm", _on_volume_1(gradient=(bad, 0.0, 0.0))), "(0018,9089)")


def test_a_huge_b_value_and_an_absent_one_stay_separate_volumes(tmp_path):
    # numpy's round took 1e308 to inf, the stand-in of an absent value: the two volumes' frames were mixed
    def hook(volume: int, frame: Dataset) -> None:
        frame.MRDiffusionSequence = _diffusion(1e308 if volume == 0 else None, None)

    # slice 0 holds volume 0 first, slice 1 volume 1 first: time order alone would mix them
    volume = load_files([_write(tmp_path / "huge.dcm", hook, frames=[(0, 0), (1, 0), (1, 1), (0, 1)])])
    held = volume.array[:, :, 0, 0].astype(int) // 100 - 1
    assert held.tolist() == [[0, 0], [1, 1]]
    assert volume.meta["volumes"]["b_value"] == [1e308, None]


@pytest.mark.parametrize("value", ["2024", "202401", "20240101", "20240101+0100"])
@pytest.mark.parametrize("keyword", ["FrameAcquisitionDateTime", "AcquisitionDateTime"])
def test_a_date_time_with_no_time_of_day_is_midnight(tmp_path, keyword, value):
    def hook(volume: int, frame: Dataset) -> None:
        if keyword == "AcquisitionDateTime":
            del frame.FrameContentSequence[0].FrameAcquisitionDateTime
        else:
            frame.FrameContentSequence[0].FrameAcquisitionDateTime = value

    path = _write(tmp_path / "dt.dcm", hook, top={"AcquisitionDateTime": value} if keyword == "AcquisitionDateTime" else None)
    table = frame_table(pydicom.dcmread(path, stop_before_pixels=True))
    assert np.all(table.temporal == 738886 * 86400.0)  # 2024-01-01 00:00:00, days since 0001-01-01
    assert load_files([path]).axes == ("diffusion",)


@pytest.mark.filterwarnings("ignore:Invalid value for VR DT")
@pytest.mark.parametrize("value", ["20241399", "2024139910", "20241", "2024-01-01", "LEAKNAME"])
def test_an_impossible_date_time_is_refused_in_one_line(tmp_path, value):
    def hook(volume: int, frame: Dataset) -> None:
        frame.FrameContentSequence[0].FrameAcquisitionDateTime = value

    _refused(_write(tmp_path / "dt.dcm", hook), "(0018,9074)")


def test_the_indexer_names_the_file_of_a_malformed_functional_group_value(tmp_path):
    def text_window(volume: int, frame: Dataset) -> None:
        frame.FrameVOILUTSequence = one_item(WindowWidth=400)
        frame.FrameVOILUTSequence[0].add_new(0x00281050, "LO", "LEAKNAME")  # a Window Center that is no number

    (tmp_path / "src").mkdir()
    path = _write(tmp_path / "src" / "dwi.dcm", text_window)
    manifest = dicomml.index(tmp_path / "src", tmp_path / "m", workers=1, progress=False)
    (message,) = manifest.errors.message
    assert message.startswith(f"{path}: (0028,1050) WindowCenter") and "<dataset>" not in message and "LEAK" not in message
