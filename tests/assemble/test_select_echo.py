"""Selection by echo or b-value of a 3D volume: the manifest holds each echo as a series of its own, so a 3D volume
of another echo than the one asked is refused, not passed through; and the values' order is kept."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

import dicomml
from dicomml.assemble.volumes import apply_selection, matching_volumes, select_volumes, volume_values
from dicomml.config import PipelineConfig, VolumeSelection
from dicomml.dicom.synthetic import write_slice
from dicomml.errors import ConfigError
from dicomml.volume import Volume


def _three_d(**own: float) -> Volume:
    """A 3D volume with its own header values (what assembly records of a 3D volume)."""
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    return Volume(array, np.eye(4), (), {"series_key": "k2", "series_uid": "1.2.3", **own})


def _four_d() -> Volume:
    array = np.stack([np.full((2, 3, 4), v, np.int16) for v in range(4)])
    table = {"b_value": [0.0, 1000.0, 1000.0, 2000.0], "echo_number": [1.0, 2.0, 3.0, 4.0]}
    return Volume(array, np.eye(4), ("diffusion",), {"volumes": table, "series_key": "s"})


def test_a_3d_volume_of_another_echo_is_refused_with_the_where_that_picks_the_echo():
    with pytest.raises(ConfigError) as caught:
        select_volumes(_three_d(echo_number=1.0), "echo", [2])
    message = str(caught.value)
    assert message.startswith("series k2 is echo 1 (EchoNumbers), not volumes.echo [2]")
    assert "each echo as a series of its own" in message and "\n" not in message
    assert 'where: "series_key IN (SELECT series_key FROM instances WHERE echo_number = 2)"' in message
    assert caught.value.series_uid == "1.2.3"
    with pytest.raises(ConfigError, match=r"echo_number IN \(2, 3\)"):
        apply_selection(_three_d(echo_number=1.0), VolumeSelection("echo", (2.0, 3.0)))


def test_a_3d_volume_of_the_echo_asked_or_of_no_known_echo_passes_unchanged():
    volume = _three_d(echo_number=2.0)
    assert select_volumes(volume, "echo", [2]) is volume
    assert select_volumes(volume, "echo", [1, 2]) is volume
    unknown = _three_d()
    assert select_volumes(unknown, "echo", [2]) is unknown
    assert select_volumes(unknown, "b_value", [1000]) is unknown
    assert select_volumes(volume, "index", [0]) is volume  # only echo and b-value are the volume's own


def test_a_3d_volume_of_another_b_value_is_refused():
    with pytest.raises(ConfigError, match=r"series k2 is one volume of b = 0 s/mm², not volumes.b_value \[1000\]"):
        select_volumes(_three_d(b_value=0.0), "b_value", [1000])
    volume = _three_d(b_value=1000.4)
    assert select_volumes(volume, "b_value", [1000]) is volume


def test_a_volume_kept_by_an_earlier_selection_knows_its_echo_from_its_table():
    second = select_volumes(_four_d(), "index", [1])
    assert second.axes == () and matching_volumes(second, "echo", [2, 3]) == [[0], []]
    with pytest.raises(ConfigError, match="is echo 2"):
        select_volumes(second, "echo", [3])


def test_echo_and_b_value_keep_the_order_of_the_values():
    out = select_volumes(_four_d(), "b_value", [2000, 0])
    assert out.meta["volume_indices"] == [3, 0] and out.meta["volumes"]["b_value"] == [2000.0, 0.0]
    np.testing.assert_array_equal(out.array[:, 0, 0, 0], [3, 0])
    assert select_volumes(_four_d(), "echo", [4, 2, 2]).meta["volume_indices"] == [3, 1]
    assert matching_volumes(_four_d(), "b_value", [1000, 500]) == [[1, 2], []]
    assert matching_volumes(_four_d(), "index", [0]) is None


def test_volume_values_reads_a_files_echo_number_and_b_value(tmp_path):
    pixels = np.zeros((4, 4), np.uint16)
    extra = {"EchoNumbers": 2, "DiffusionBValue": 1000.0}
    path = write_slice(tmp_path / "a.dcm", pixels, position=(0, 0, 0), series_uid="1.2.3", modality="MR", rescale=None, extra=extra)
    assert volume_values(pydicom.dcmread(path), 0) == {"echo_number": 2.0, "b_value": 1000.0}
    plain = write_slice(tmp_path / "b.dcm", pixels, position=(0, 0, 0), series_uid="1.2.4", modality="MR", rescale=None)
    assert volume_values(pydicom.dcmread(plain), 0) == {}


@pytest.fixture(scope="module")
def multi_echo(tmp_path_factory):
    """One series of three echoes (echo e has value 100 * e), indexed: three volume groups."""
    root = tmp_path_factory.mktemp("multi_echo")
    (root / "dicom").mkdir()
    uid, extra = generate_uid(), {"SeriesNumber": 5, "SeriesDescription": "me_gre", "StudyInstanceUID": generate_uid()}
    for e in (1, 2, 3):
        for k in range(4):
            write_slice(
                root / "dicom" / f"e{e}_{k}.dcm",
                np.full((8, 8), 100 * e, np.uint16),
                position=(0.0, 0.0, 2.0 * k),
                series_uid=uid,
                instance=4 * (e - 1) + k + 1,
                modality="MR",
                rescale=None,
                extra={**extra, "EchoNumbers": e, "EchoTime": 10.0 * e},
            )
    return dicomml.index(str(root / "dicom"), str(root / "manifest"), workers=1, progress=False)


def test_by_echo_through_the_manifest_refuses_the_other_echoes_and_where_picks_the_echo(multi_echo, tmp_path):
    assert len(multi_echo.series) == 3
    config = PipelineConfig.from_dict({"name": "e2", "deterministic": {"dtype": "float32", "volumes": {"by": "echo", "values": [2]}}})
    echoes = {}
    for key in multi_echo.series["series_key"]:
        volume = dicomml.load_series(multi_echo, key)
        echoes[volume.meta["echo_number"]] = key
    everything = dicomml.SeriesDataset(multi_echo, config, tmp_path / "a", series_keys=[echoes[1.0], echoes[2.0]])
    with pytest.raises(ConfigError, match=r"is echo 1 \(EchoNumbers\), not volumes.echo \[2\]: the manifest holds each echo"):
        everything[0]
    assert float(everything[1]["image"][0, 0, 0, 0]) == 200.0
    where = "series_key IN (SELECT series_key FROM instances WHERE echo_number = 2)"  # what the message says to use
    picked = dicomml.SeriesDataset(multi_echo, config, tmp_path / "b", where=where)
    assert len(picked) == 1 and float(picked[0]["image"][0, 0, 0, 0]) == 200.0
