"""Which volume each frame of a 4D series goes to: an enhanced frame's own cardiac delay and diffusion values,
the acquisition date across midnight; and a selection by echo of an Enhanced MR volume, which has no echo number."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from dicomml.assemble import load_files
from dicomml.assemble.volumes import select_volumes
from dicomml.dicom.frames import frame_table
from dicomml.dicom.synthetic import one_item, write_enhanced_mr, write_slice
from dicomml.errors import ConfigError, MixedSeriesError
from dicomml.testing import data_root

SLICES = 3
#: Frames of 3 slices x 4 volumes in the order a scanner never writes them (volume, slice).
SHUFFLED = [(1, 2), (3, 0), (0, 1), (2, 2), (1, 0), (0, 0), (3, 2), (2, 1), (1, 1), (0, 2), (3, 1), (2, 0)]


def _write_enhanced(path: Path, frames: Sequence[tuple[int, int]], per_frame: dict[str, object] | None = None, **per_volume: list) -> Path:
    """An Enhanced MR object holding ``frames`` (volume, slice), :func:`write_enhanced_mr`'s.

    ``per_volume`` gives each volume's ``trigger`` (NominalCardiacTriggerDelayTime, ms), ``b_value``
    and ``gradient``; ``per_frame`` sets elements on every frame's groups.
    """

    def groups(volume: int, frame: Dataset) -> None:
        if "trigger" in per_volume:
            frame.CardiacSynchronizationSequence = one_item(NominalCardiacTriggerDelayTime=float(per_volume["trigger"][volume]))
        if "b_value" in per_volume:
            b = float(per_volume["b_value"][volume])
            diffusion = one_item(DiffusionBValue=b, DiffusionDirectionality="DIRECTIONAL" if b else "NONE")
            if b:
                diffusion[0].DiffusionGradientDirectionSequence = one_item(DiffusionGradientOrientation=per_volume["gradient"][volume])
            frame.MRDiffusionSequence = diffusion
        for keyword, value in (per_frame or {}).items():
            setattr(frame, keyword, value)

    return write_enhanced_mr(path, frames, groups)


def _held(array: np.ndarray) -> np.ndarray:
    """(volume, slice) -> the volume whose frame the array holds there."""
    return array[:, :, 0, 0].astype(int) // 100 - 1


def test_enhanced_cine_without_temporal_index_is_ordered_by_each_frames_trigger_delay(tmp_path):
    path = _write_enhanced(tmp_path / "cine.dcm", SHUFFLED, trigger=[0, 50, 100, 150])
    volume = load_files([path])
    assert volume.axes == ("phase",)
    assert _held(volume.array).tolist() == [[v] * SLICES for v in range(4)]
    assert volume.meta["volumes"]["trigger_time"] == [0.0, 50.0, 100.0, 150.0]


def test_enhanced_dwi_stored_in_any_order_keeps_one_b_value_and_gradient_per_volume(tmp_path):
    b_values = [0, 1000, 0, 1000]
    gradients = [None, [1.0, 0.0, 0.0], None, [0.0, 1.0, 0.0]]
    volume = load_files([_write_enhanced(tmp_path / "dwi.dcm", SHUFFLED, b_value=b_values, gradient=gradients)])
    # the two b = 0 volumes are alike in every header value: which one a slice comes from cannot matter
    direction = np.array(["b0", "x", "b0", "y"])[_held(volume.array)]
    assert all(len(set(row)) == 1 for row in direction.tolist()), direction
    table = volume.meta["volumes"]
    assert volume.axes == ("diffusion",)
    assert table["b_value"] == [0.0 if row[0] == "b0" else 1000.0 for row in direction.tolist()]
    # along the array axes (slice, row, column): the column index moves along LPS x, the row index along LPS y
    expected = {"b0": [0.0, 0.0, 0.0], "x": [0.0, 0.0, 1.0], "y": [0.0, 1.0, 0.0]}
    assert table["gradient"] == [expected[row[0]] for row in direction.tolist()]


def test_enhanced_dwi_in_acquisition_order_keeps_that_order(tmp_path):
    natural = [(v, k) for v in range(4) for k in range(SLICES)]
    gradients = [None, [1.0, 0.0, 0.0], None, [0.0, 1.0, 0.0]]
    volume = load_files([_write_enhanced(tmp_path / "dwi.dcm", natural, b_value=[0, 1000, 0, 1000], gradient=gradients)])
    assert _held(volume.array).tolist() == [[v] * SLICES for v in range(4)]
    assert volume.meta["volumes"]["b_value"] == [0.0, 1000.0, 0.0, 1000.0]


def test_corpus_enhanced_dwi_shuffled_without_temporal_index_gives_dcm2niix_volumes(tmp_path):
    """Canon's enhanced DWI (40 slices x 13 volumes) with its frames shuffled, TemporalPositionIndex removed and one
    acquisition time: each volume is one of dcm2niix's, with its b-value."""
    ds = pydicom.dcmread(data_root() / "dcm_qa_canon_61/In/enh/8000.dcm")
    frames = ds.pixel_array
    order = np.random.default_rng(7).permutation(len(frames))
    groups = [ds.PerFrameFunctionalGroupsSequence[i] for i in order]
    for group in groups:
        content = group.FrameContentSequence[0]
        del content.TemporalPositionIndex
        content.FrameAcquisitionDateTime = "20211006155631.000"
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(groups)
    ds.PixelData = np.ascontiguousarray(frames[order]).tobytes()
    ds.save_as(tmp_path / "shuffled.dcm")
    volume = load_files([tmp_path / "shuffled.dcm"])
    stem = data_root() / "dcm_qa_canon_61/Ref/8000_DTI_PA-ALL_20d_enh"
    image = nib.load(f"{stem}.nii.gz")
    reference = np.asarray(image.dataobj)
    ours = apply_orientation(np.moveaxis(volume.array, 0, -1), ornt_transform(io_orientation(volume.affine), io_orientation(image.affine)))
    theirs = [[u for u in range(reference.shape[3]) if np.array_equal(ours[..., t], reference[..., u])] for t in range(ours.shape[3])]
    assert sorted(sum(theirs, [])) == list(range(reference.shape[3])), theirs
    bval = np.loadtxt(f"{stem}.bval")
    assert volume.meta["volumes"]["b_value"] == [bval[u] for (u,) in theirs]


def test_positions_holding_different_b_values_are_refused_in_one_line_or_kept_as_irregular(tmp_path):
    frames = [(v, k) for v in range(2) for k in range(SLICES)]
    # the second slice holds b = 500 where the others hold b = 1000
    path = tmp_path / "odd.dcm"
    _write_enhanced(path, frames, b_value=[0, 1000], gradient=[None, [1.0, 0.0, 0.0]])
    ds = pydicom.dcmread(path)
    ds.PerFrameFunctionalGroupsSequence[4].MRDiffusionSequence[0].DiffusionBValue = 500.0
    ds.save_as(path)
    with pytest.raises(MixedSeriesError) as caught:
        load_files([path])
    message = str(caught.value)
    assert "\n" not in message and message.startswith("series ")
    assert "differ in their b-values and gradients" in message and "no volume has one b-value and gradient at every slice" in message
    kept = load_files([path], on_irregular="keep")
    assert any("b-values and gradients" in problem for problem in kept.meta["irregularities"])


def test_a_time_series_across_midnight_is_ordered_by_date_and_time(tmp_path):
    stamps = [("20240101", "235940"), ("20240101", "235950"), ("20240102", "000000"), ("20240102", "000010")]
    uid = generate_uid()
    paths = []
    for v, (date, time) in enumerate(stamps):
        for k in range(2):
            paths.append(
                write_slice(
                    tmp_path / f"{v}_{k}.dcm",
                    np.full((4, 4), 100 * (v + 1) + k, np.uint16),
                    position=(0, 0, 3.0 * k),
                    series_uid=uid,
                    instance=v * 2 + k + 1,
                    modality="MR",
                    rescale=None,
                    extra={"AcquisitionDate": date, "AcquisitionTime": time},
                )
            )
    volume = load_files(paths[::-1])
    assert _held(volume.array).tolist() == [[v, v] for v in range(4)]
    assert volume.meta["volumes"]["acquisition_time"] == [86380.0, 86390.0, 0.0, 10.0]


def test_the_temporal_key_counts_the_date_of_a_datetime_and_of_acquisition_time():
    classic = Dataset()
    classic.Rows = classic.Columns = 4
    classic.AcquisitionDate, classic.AcquisitionTime = "20240102", "000010"
    enhanced = Dataset()
    enhanced.Rows = enhanced.Columns = 4
    enhanced.AcquisitionDateTime = "20240101235950"
    enhanced.SharedFunctionalGroupsSequence = DicomSequence([Dataset()])
    after, before = frame_table(classic).temporal[0], frame_table(enhanced).temporal[0]
    assert after - before == 20.0


def test_an_enhanced_echo_of_unknown_number_is_refused_under_volumes_echo(tmp_path):
    path = _write_enhanced(
        tmp_path / "echo2.dcm", [(0, k) for k in range(SLICES)], per_frame={"MREchoSequence": one_item(EffectiveEchoTime=12.46)}
    )
    volume = load_files([path])
    with pytest.raises(ConfigError) as caught:
        select_volumes(volume, "echo", [2])
    message = str(caught.value)
    assert "\n" not in message and "echo number is unknown" in message and "echo time 12.46 ms" in message
    assert "round(echo_time, 2)" in message
    assert volume.meta["echo_time"] == 12.46 and "echo_number" not in volume.meta
    assert select_volumes(volume, "b_value", [0]) is volume  # an echo's number is what is missing, not its b-value
