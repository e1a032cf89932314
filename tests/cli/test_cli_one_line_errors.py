"""The CLI's failures: each is one `dicomml: error:` line (exit 1), never a traceback,
never `aborted` for what was not Ctrl-C, and nothing written before everything is checked."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

import dicomml
from dicomml.cli.main import main
from dicomml.sample import write_sample_study
from dicomml.testing.cache import corrupt_chunk


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("defects")
    write_sample_study(root / "dicom")
    manifest = dicomml.index(root / "dicom", root / "manifest", workers=1, salt="defects", progress=False)
    ct = manifest.series.set_index("modality").loc["CT", "series_key"]
    volume = dicomml.load_series(manifest, ct)
    prediction = root / "prediction.nii.gz"
    labels = np.zeros(volume.spatial_shape, dtype=np.uint8)
    labels[30:50, 20:40, 20:40] = 1
    labels[35:45, 25:35, 25:35] = 2
    nib.save(nib.Nifti1Image(labels, volume.affine), prediction)
    return root, ct, prediction


def _fails(argv: list[str], capsys) -> str:
    """Run the CLI in this process; it must exit 1 with one `dicomml: error:` line on stderr, which is returned."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 1, err
    [line] = err.strip().splitlines()
    assert line.startswith("dicomml: error: "), line
    return line


@pytest.mark.parametrize("command", ["write-seg", "write-rtstruct"])
def test_label_file_written_by_dicomml_labels_is_read_by_label_option(study, tmp_path, capsys, command):
    root, _, prediction = study
    main(["labels", str(root / "manifest"), "--format", "yaml"])
    labels = tmp_path / "labels.yaml"
    labels.write_text(capsys.readouterr().out)
    assert labels.read_text().startswith("labels:")  # the guide's two steps: this file, then --label
    out = tmp_path / "pred.dcm"
    main([command, str(prediction), "--source", str(root / "dicom" / "CT"), "--label", str(labels), "-o", str(out)])
    assert out.is_file()


def test_bad_label_file_is_one_line_naming_the_file(study, tmp_path, capsys):
    root, _, prediction = study
    labels = tmp_path / "mine.yaml"
    labels.write_text("labels:\n  lesion: {value: 1, colour: [1, 2, 3]}\n")
    line = _fails(
        ["write-seg", str(prediction), "--source", str(root / "dicom" / "CT"), "--label", str(labels), "-o", str(tmp_path / "x.dcm")],
        capsys,
    )
    assert f"{labels}: labels[lesion].colour: unknown key" in line


@pytest.mark.parametrize("kind", ["truncated", "text", "dicom"])
@pytest.mark.parametrize("command", ["write-seg", "write-rtstruct"])
def test_prediction_nibabel_cannot_read_is_one_line_naming_the_file(study, tmp_path, capsys, command, kind):
    root, _, prediction = study
    if kind == "dicom":
        bad = root / "dicom" / "CT" / "CT0001.dcm"
    else:
        bad = tmp_path / "bad.nii.gz"
        bad.write_bytes(prediction.read_bytes()[:2000] if kind == "truncated" else b"hi\n")
    argv = [command, str(bad), "--source", str(root / "dicom" / "CT"), "--label", "lesion=1", "--label", "liver=2"]
    line = _fails([*argv, "-o", str(tmp_path / "x.dcm")], capsys)
    assert line.startswith(f"dicomml: error: {bad}: cannot read the prediction as NIfTI (")
    assert not (tmp_path / "x.dcm").exists()


def test_an_eoferror_is_an_error_not_ctrl_c(study, tmp_path, capsys, monkeypatch):
    root, _, prediction = study

    def truncated(*args, **kwargs):
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    monkeypatch.setattr(dicomml, "write_seg", truncated)
    line = _fails(
        ["write-seg", str(prediction), "--source", str(root / "dicom" / "CT"), "--label", "a=1", "-o", str(tmp_path / "x.dcm")], capsys
    )
    assert "aborted" not in line and "end-of-stream marker" in line


def test_ctrl_c_is_still_aborted_130(study, tmp_path, capsys, monkeypatch):
    root, _, prediction = study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dicomml, "write_seg", interrupted)
    with pytest.raises(SystemExit) as exit_:
        main(["write-seg", str(prediction), "--source", str(root / "dicom" / "CT"), "--label", "a=1", "-o", str(tmp_path / "x.dcm")])
    assert exit_.value.code == 130
    assert capsys.readouterr().err.strip() == "dicomml: aborted"


def test_sample_data_into_a_folder_that_cannot_be_made_is_one_output_error_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    line = _fails(["sample-data", str(blocker / "study")], capsys)
    assert line.startswith(f"dicomml: error: {blocker / 'study' / 'CT'}: cannot be created (")


def test_export_with_a_bad_mask_key_writes_nothing(study, tmp_path, capsys):
    root, ct, _ = study
    out = tmp_path / "out" / "ct.nii.gz"
    line = _fails(["export", str(root / "manifest"), ct, "--mask", "nosuchkey", "-o", str(out)], capsys)
    assert "nosuchkey" in line
    assert not out.exists()


def test_messages_name_the_cli_option_beside_the_python_argument(study, tmp_path, capsys):
    from dicomml.assemble.plan import _NOT_RESAMPLABLE, _RESAMPLE_OR_KEEP

    assert "(the CLI's --on-irregular resample / keep)" in _RESAMPLE_OR_KEEP
    assert "(the CLI's --on-irregular keep)" in _NOT_RESAMPLABLE
    root, _, prediction = study
    argv = ["write-seg", str(prediction), "--source", str(root / "dicom" / "CT"), "--label", "lesion=1", "-o", str(tmp_path / "x.dcm")]
    assert "labels= (the CLI's --label) does not name" in _fails(argv, capsys)  # the prediction also holds 2
    empty = tmp_path / "empty.yaml"
    empty.write_text("labels: {}\n")
    argv = ["write-seg", str(prediction), "--source", str(root / "dicom" / "CT"), "--label", str(empty), "-o", str(tmp_path / "x.dcm")]
    assert "labels= (the CLI's --label) is empty" in _fails(argv, capsys)
    argv = ["preprocess", str(root / "manifest"), "--config", "ct_1mm", "--cache", str(tmp_path / "c"), "--workers", "0", "--quiet"]
    line = _fails([*argv, "--where", "modality = 'PET'"], capsys)
    assert "Manifest.series (the CLI's `dicomml list MANIFEST`, with --where)" in line


def test_cache_verify_delete_says_what_it_deleted_and_still_exits_1(tmp_path, capsys):
    from dicomml.cache import Cache

    cache = Cache(tmp_path / "c")
    image = np.arange(40 * 50 * 60, dtype=np.int16).reshape(40, 50, 60)
    for key in ("a", "b"):
        cache.put(key, image, np.eye(4), chunks=(16, 16, 16))
    corrupt_chunk(cache, "b")
    with pytest.raises(SystemExit) as exit_:
        main(["cache", "verify", "--delete", str(tmp_path / "c")])
    assert exit_.value.code == 1  # the corruption was found
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"dicomml: error: {tmp_path / 'c'}: 1 corrupted entries: b; deleted, so they are recomputed when next used"
    assert Cache(tmp_path / "c").keys() == ["a"]


_NOISY = """
import logging
import click
from dicomml.cli import main as cli_main
from dicomml.errors import RemoteSourceError

@click.command("fetch")
def fetch():
    try:
        raise ConnectionError("Cannot connect to host storage.googleapis.com:443")
    except ConnectionError:
        logging.getLogger("gcsfs").exception("_request out of retries on exception")  # as gcsfs.retry does
    logging.getLogger("urllib3.connectionpool").warning("Retrying (Retry(total=2)) after connection broken")
    logging.getLogger("aiobotocore.credentials").error("unable to load credentials")
    raise RemoteSourceError("gs://nonexistent-bucket-xyz/: cannot be listed")

cli_main._LazyGroup.get_command = lambda self, ctx, name: fetch
cli_main.main(["fetch"])
"""


def test_storage_clients_logs_do_not_print_tracebacks_before_the_error_line():
    result = subprocess.run([sys.executable, "-c", _NOISY], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == "dicomml: error: gs://nonexistent-bucket-xyz/: cannot be listed\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["show", "{manifest}", "{ct}", "-o", "{tmp}/x.jpg"],
        ["show", "{manifest}", "{ct}", "-o", "{tmp}/x.png", "--montage", "-3"],
        ["info", "{manifest}", "--plot", "{tmp}/cohort.svg"],
        ["index", "{dicom}", "-o", "{tmp}/m", "--workers", "0"],
        ["index", "{dicom}", "-o", "{tmp}/m", "--workers", "-3"],
        ["index", "{dicom}", "-o", "{tmp}/m", "--timeout", "-1"],
    ],
)
def test_out_of_range_options_and_a_non_png_suffix_are_refused_before_any_work(study, tmp_path, capsys, argv):
    root, ct, _ = study
    values = {"manifest": str(root / "manifest"), "ct": ct, "tmp": str(tmp_path), "dicom": str(root / "dicom")}
    with pytest.raises(SystemExit) as exit_:
        main([a.format(**values) for a in argv])
    assert exit_.value.code == 2, capsys.readouterr()  # a usage error
    assert "Invalid value" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_index_timeout_0_still_means_in_process(study, tmp_path, capsys):
    root, _, _ = study
    main(["index", str(root / "dicom"), "-o", str(tmp_path / "m"), "--timeout", "0", "--workers", "1", "--quiet", "--salt", "s"])
    assert (tmp_path / "m").is_dir()
