"""A study sample is a fixed channel contract: the config, not the series, says how many channels a role gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydicom.uid import generate_uid

import dicomml
from dicomml.assemble import load_files
from dicomml.assemble.volumes import select_volumes
from dicomml.config import VolumeSelection
from dicomml.dicom.synthetic import write_slice
from dicomml.errors import ConfigError
from dicomml.study import Role, StudyConfig, resample_roles, role_volume
from dicomml.testing.studies import SeriesGrid, write_study

#: b = 0, then b = 1000 along three directions: a DWI before the scanner's trace image.
B_VALUES = [0.0, 1000.0, 1000.0, 1000.0]
GRADIENTS = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]


def _write_dwi(folder, study_uid, frame, shape=(4, 16, 16), spacing=4.0):
    """A DWI series on the same grid as write_study's SeriesGrid(shape, spacing): volume v is 100 * (v + 1)."""
    grid = SeriesGrid("dwi", shape=shape, spacing=(spacing,) * 3, number=9)
    uid = generate_uid()
    for v, (b, g) in enumerate(zip(B_VALUES, GRADIENTS)):
        for k, position in enumerate(grid.positions()):
            write_slice(
                folder / f"dwi{v}_{k}.dcm",
                np.full(shape[1:], 100 * (v + 1), np.uint16),
                position=tuple(position),
                series_uid=uid,
                instance=shape[0] * v + k + 1,
                modality="MR",
                rescale=None,
                pixel_spacing=(spacing, spacing),
                extra={
                    "StudyInstanceUID": study_uid,
                    "FrameOfReferenceUID": frame,
                    "PatientID": "DWI",
                    "SeriesNumber": 9,
                    "SeriesDescription": "dwi",
                    "DiffusionBValue": b,
                    "DiffusionGradientOrientation": list(g),
                },
            )


@pytest.fixture(scope="module")
def dwi_cohort(tmp_path_factory):
    """Study A: t2 and a DWI (b = 0, three directions at b = 1000); study B: t2 only."""
    root = tmp_path_factory.mktemp("dwi_cohort")
    small = {"shape": (4, 16, 16), "spacing": (4.0, 4.0, 4.0)}
    for name, with_dwi, study in (("A", True, "1.2.826.0.1.3680043.8.498.21"), ("B", False, "1.2.826.0.1.3680043.8.498.22")):
        frame = generate_uid()
        write_study(root / "dicom" / name, [SeriesGrid("t2", **small)], study_uid=study, frame_of_reference_uid=frame)
        if with_dwi:
            (root / "dicom" / name / "dwi").mkdir()
            _write_dwi(root / "dicom" / name / "dwi", study, frame)
    return dicomml.index(str(root / "dicom"), str(root / "manifest"), workers=1, progress=False)


def _study(roles, **more):
    data = {"name": "mr", "roles": {"t2": {"where": "series_description = 't2'"}, **roles}, "reference": "t2", "missing": "empty"}
    return StudyConfig.from_dict({**data, "deterministic": {"dtype": "float32", "spacing": None}, **more})


def _dwi_volume(tmp_path):
    """A 3D reference and the DWI on its grid, in its frame of reference."""
    study, frame = generate_uid(), generate_uid()
    files = write_study(
        tmp_path / "ref", [SeriesGrid("ref", shape=(4, 16, 16), spacing=(4.0, 4.0, 4.0))], study_uid=study, frame_of_reference_uid=frame
    )
    (tmp_path / "dwi").mkdir()
    _write_dwi(tmp_path / "dwi", study, frame)
    return load_files(files["ref"]), load_files(sorted((tmp_path / "dwi").iterdir()))


def test_every_sample_of_a_study_dataset_has_the_same_channels_present_or_missing(dwi_cohort, tmp_path):
    config = _study(
        {
            "b0": {"where": "series_description = 'dwi'", "volumes": {"by": "b_value", "values": [0]}},
            "b1000": {"where": "series_description = 'dwi'", "volumes": {"by": "b_value", "values": [1000], "reduce": "mean"}},
        }
    )
    studies = dicomml.StudyDataset(dwi_cohort, config, tmp_path / "cache")
    samples = [studies[i] for i in range(len(studies))]
    assert [s["meta"]["role_present"]["b0"] for s in samples] == [True, False]
    assert [s["meta"]["channels"] for s in samples] == [["t2", "b0", "b1000"]] * 2
    batch = torch.utils.data.default_collate(samples)
    assert batch["image"].shape == (2, 3, 16, 16, 4)
    np.testing.assert_allclose(batch["image"][0, 1:, 8, 8, 2], [100.0, 300.0])  # b0; the mean of the three directions
    assert not batch["image"][1, 1:].any()


def test_a_b_value_matching_several_directions_is_refused_for_that_study_naming_them(dwi_cohort, tmp_path):
    """The guide's two channels {by: b_value, values: [0, 1000]} on a DWI of three directions: not five channels."""
    config = _study({"dwi": {"where": "series_description = 'dwi'", "volumes": {"by": "b_value", "values": [0, 1000]}}})
    assert config.roles[1].channels == 2
    studies = dicomml.StudyDataset(dwi_cohort, config, tmp_path / "cache")
    message = r"study role dwi \(series \w+\): .* gives 2 channels, but b=1000 matches 3 volumes \(3 gradient directions\); .*reduce: mean"
    with pytest.raises(ConfigError, match=message) as caught:
        studies[0]
    assert "\n" not in str(caught.value) and caught.value.series_uid
    missing = studies[1]  # the study without the DWI: two zero channels, under the names a present one would have
    assert missing["meta"]["channels"] == ["t2", "dwi/0", "dwi/1"] and not missing["image"][1:].any()
    # the preprocessing run records it as the study's failure, as it does a FrameOfReferenceError
    report = dicomml.preprocess(dwi_cohort, config, tmp_path / "run", workers=0, progress=False)
    failed = report.table.sort_values("series_key")
    assert failed["status"].tolist() == ["failed", "done"] or failed["status"].tolist() == ["done", "failed"]
    row = failed[failed["status"] == "failed"].iloc[0]
    assert row["error_type"] == "ConfigError" and "b=1000 matches 3 volumes" in row["message"]


def test_a_range_longer_than_the_series_and_a_4d_series_without_volumes_are_refused(tmp_path):
    ref, dwi = _dwi_volume(tmp_path)
    ranged = _study({"dwi": {"where": "true", "volumes": {"by": "range", "values": [0, 10]}}})
    assert ranged.roles[1].channels == 10
    with pytest.raises(ConfigError, match=r"gives 10 channels, but the series keeps 4 volumes \(indices \[0, 1, 2, 3\]\)"):
        resample_roles({"t2": ref, "dwi": role_volume(dwi, ranged.roles[1])}, [], ranged)
    plain = _study({"dwi": {"where": "true"}})
    assert plain.roles[1].channels == 1
    with pytest.raises(ConfigError, match="the role takes one volume, but the series has 4 volumes along its diffusion axis"):
        resample_roles({"t2": ref, "dwi": role_volume(dwi, plain.roles[1])}, [], plain)
    # the reference role is held to its channels too
    as_reference = _study({"dwi": {"where": "true"}}, reference="dwi")
    with pytest.raises(ConfigError, match="study role dwi"):
        resample_roles({"t2": ref, "dwi": role_volume(dwi, as_reference.roles[1])}, [], as_reference)


def test_channels_follow_the_config_order_and_are_named_by_their_place_in_the_role(tmp_path):
    ref, dwi = _dwi_volume(tmp_path)
    by_index = _study({"dwi": {"where": "true", "volumes": {"by": "index", "values": [3, 0]}}})
    sample = resample_roles({"t2": ref, "dwi": role_volume(dwi, by_index.roles[1])}, [], by_index)
    missing = resample_roles({"t2": ref, "dwi": None}, [], by_index)
    assert sample.channel_names == missing.channel_names == ["t2", "dwi/0", "dwi/1"]
    assert [c["volume_index"] for c in sample.roles["dwi"]["channels"]] == [3, 0]
    np.testing.assert_allclose(sample.image[1:, 8, 8, 2], [400.0, 100.0])
    # b-values in the order the config gives them, not the series': b = 0 and one direction, asked b = 1000 first
    two = select_volumes(dwi, "index", [0, 2])
    trace_first = _study({"dwi": {"where": "true", "volumes": {"by": "b_value", "values": [1000, 0]}}})
    flipped = resample_roles({"t2": ref, "dwi": role_volume(two, trace_first.roles[1])}, [], trace_first)
    assert [c["b_value"] for c in flipped.roles["dwi"]["channels"]] == [1000.0, 0.0]
    np.testing.assert_allclose(flipped.image[1:, 8, 8, 2], [300.0, 100.0])


def test_a_reduced_role_is_refused_when_one_of_its_values_matches_nothing(tmp_path):
    ref, dwi = _dwi_volume(tmp_path)
    config = _study({"dwi": {"where": "true", "volumes": {"by": "b_value", "values": [1000, 2000], "reduce": "mean"}}})
    with pytest.raises(ConfigError, match="b=2000 matches none of the series' volumes"):
        resample_roles({"t2": ref, "dwi": role_volume(dwi, config.roles[1])}, [], config)


@pytest.mark.parametrize(
    ("volumes", "channels"),
    [
        (VolumeSelection(), 1),
        (VolumeSelection("all", (), "mean"), 1),
        (VolumeSelection("b_value", (0.0, 1000.0)), 2),
        (VolumeSelection("b_value", (0.0, 1000.0), "mean"), 1),
        (VolumeSelection("index", (0.0, 2.0, 4.0)), 3),
        (VolumeSelection("range", (0.0, 10.0)), 10),
        (VolumeSelection("range", (1.0, 10.0, 3.0)), 3),
        (VolumeSelection("range", (-3.0, -1.0)), 2),
    ],
)
def test_role_channels_are_decided_by_the_config(volumes, channels):
    assert Role("dwi", "true", volumes=volumes).channels == channels


@pytest.mark.parametrize(
    ("volumes", "message"),
    [
        ({"by": "all"}, r"roles\.dwi\.volumes: by: all keeps as many volumes as each series has"),
        ("all", r"roles\.dwi\.volumes: by: all"),
        ({"by": "range", "values": [0, -1]}, r"roles\.dwi\.volumes: range \[0, -1\] keeps as many volumes as each series allows"),
        ({"by": "range", "values": [5, 2]}, r"roles\.dwi\.volumes: range \[5, 2\] keeps no volume"),
        ({"by": "range", "values": [0, 4, 0]}, r"roles\.dwi\.volumes\.range \[0\.0, 4\.0, 0\.0\]: .*step other than 0"),
        ({"by": "index", "values": [1.5]}, r"roles\.dwi\.volumes\.index \[1\.5\]: give whole numbers"),
    ],
)
def test_a_role_selection_without_a_fixed_count_is_a_config_error(volumes, message):
    with pytest.raises(ConfigError, match=message):
        _study({"dwi": {"where": "true", "volumes": volumes}})


def test_by_all_with_a_reduction_and_a_role_without_volumes_stay_valid():
    config = _study({"dwi": {"where": "true", "volumes": {"by": "all", "reduce": "mean"}}, "t1": {"where": "true"}})
    assert [r.channels for r in config.roles] == [1, 1, 1]
