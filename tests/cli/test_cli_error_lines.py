"""More CLI failures said in one line naming the file or URL concerned: an output URL (which the writers would take
for a local folder named ``s3:``), a missing dicomweb-client, an empty --url-list, label values of a prediction file
that --label does not name, and --mask-output without --mask."""

from __future__ import annotations

import sys

import nibabel as nib
import numpy as np
import pytest

import dicomml
from dicomml.cli.main import main
from dicomml.sample import write_sample_study


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """The sample study's CT folder and a prediction on its grid holding labels 1 and 2."""
    root = tmp_path_factory.mktemp("error-lines")
    study = write_sample_study(root / "dicom")
    volume = dicomml.load_files(study.ct)
    labels = np.zeros(volume.spatial_shape, dtype=np.uint8)
    labels[30:50, 20:40, 20:40] = 1
    labels[35:45, 25:35, 25:35] = 2
    nib.save(nib.Nifti1Image(labels, volume.affine), root / "prediction.nii.gz")
    return study.ct[0].parent, root / "prediction.nii.gz"


def _line(argv: list[str], capsys, status: int = 1) -> str:
    """Run the CLI here; it must exit ``status`` with one line on stderr (the last, for a usage error), returned."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == status, err
    if status == 1:
        assert "\n" not in err
    return err.splitlines()[-1]


def _outputs(tmp_path):
    manifest, prediction = tmp_path / "manifest", tmp_path / "p.nii.gz"
    manifest.mkdir()
    prediction.write_bytes(b"")
    source = ["--source", str(tmp_path), "--label", "liver=1"]
    return [
        (["export", str(manifest), "k", "-o"], "-o/--output", "s3://bucket/x.nii.gz"),
        (["export", str(manifest), "k", "-o", "x.nii.gz", "--mask", "m", "--mask-output"], "--mask-output", "gs://bucket/x_mask.nii.gz"),
        (["show", str(manifest), "k", "-o"], "-o/--output", "s3://bucket/x.png"),
        (["info", str(manifest), "--plot"], "--plot", "s3://bucket/x.png"),
        (["write-seg", str(prediction), *source, "-o"], "-o/--output", "s3://bucket/x.dcm"),
        (["write-rtstruct", str(prediction), *source, "-o"], "-o/--output", "file:///tmp/x.dcm"),
        (["index", str(tmp_path), "-o"], "-o/--out", "s3://bucket/manifest"),
        (["sample-data"], "DIRECTORY", "s3://bucket/sample"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_an_output_url_is_refused_in_one_line_and_nothing_is_written_locally(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv, option, url = _outputs(tmp_path)[case]
    line = _line([*argv, url], capsys)
    assert (
        line
        == f"dicomml: error: {url}: {option} must be a local path, not a URL; write it here, then copy it (aws s3 cp, gcloud storage cp)"
    )
    assert not any(path.name.endswith(":") for path in tmp_path.iterdir())  # no ./s3: or ./gs: folder


def test_a_missing_dicomweb_client_is_its_own_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dicomweb_client", None)
    url = "dicomweb+https://pacs.example.org/dicom-web"
    line = _line(["index", url, "-o", str(tmp_path / "m"), "--quiet"], capsys)
    assert line == f"dicomml: error: {url}: DICOMweb sources need dicomweb-client, which is not installed; pip install 'dicomml[dicomweb]'"


def test_an_empty_url_list_is_named(tmp_path, capsys):
    (tmp_path / "urls.txt").write_text("")
    line = _line(["index", "--url-list", str(tmp_path / "urls.txt"), "-o", str(tmp_path / "m"), "--quiet"], capsys)
    assert line.startswith(f"dicomml: error: {tmp_path / 'urls.txt'}: no DICOM file found: no files at all")


@pytest.mark.parametrize("command", ["write-seg", "write-rtstruct"])
def test_label_values_that_label_does_not_name_name_the_prediction_file(ct, command, tmp_path, capsys):
    folder, prediction = ct
    argv = [command, str(prediction), "--source", str(folder), "--label", "liver=1", "-o", str(tmp_path / "x.dcm")]
    line = _line([*argv, *(["--kind", "fractional"] if command == "write-seg" else [])], capsys)
    assert line == f"dicomml: error: {prediction}: the prediction holds label values [2] that labels= (the CLI's --label) does not name"
    assert not (tmp_path / "x.dcm").exists()


def test_mask_output_without_mask_is_a_usage_error(tmp_path, capsys):
    manifest = tmp_path / "manifest"
    manifest.mkdir()
    line = _line(["export", str(manifest), "k", "-o", str(tmp_path / "x.nii.gz"), "--mask-output", str(tmp_path / "m.nii.gz")], capsys, 2)
    assert line == "Error: --mask-output names the file of --mask ANNOTATION_KEY; give --mask too, or drop --mask-output"
    assert not (tmp_path / "x.nii.gz").exists()


def test_a_labels_file_with_a_repeated_key_is_one_line(ct, tmp_path, capsys):
    folder, prediction = ct
    (tmp_path / "labels.yaml").write_text("labels:\n  liver: 1\n  liver: 2\n")
    argv = ["write-seg", str(prediction), "--source", str(folder), "--label", str(tmp_path / "labels.yaml"), "-o", str(tmp_path / "x.dcm")]
    line = _line(argv, capsys)
    assert line.startswith(f"dicomml: error: {tmp_path / 'labels.yaml'}: line 3, column 3: key 'liver' repeats the one at line 2")


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "labels:\n"])
def test_a_labels_file_with_no_labels_is_one_line(ct, text, tmp_path, capsys):
    folder, prediction = ct
    (tmp_path / "labels.yaml").write_text(text)
    argv = ["write-seg", str(prediction), "--source", str(folder), "--label", str(tmp_path / "labels.yaml"), "-o", str(tmp_path / "x.dcm")]
    assert "labels= (the CLI's --label) is empty" in _line(argv, capsys)  # a bare `labels:` too, not "labels[labels]..."
