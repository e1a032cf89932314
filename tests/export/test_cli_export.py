"""``dicomml export`` on an indexed sample study: image and mask NIfTI on one grid, lesion in place."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import dicomml
from dicomml.cli.main import main
from dicomml.sample import write_sample_study
from dicomml.sample.phantom import LESION_CENTRE, LESION_RADIUS


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_sample_study(root / "dicom")
    manifest = dicomml.index([str(root / "dicom")], str(root / "manifest"), workers=1)
    ct_key = manifest.series.set_index("modality").loc["CT", "series_key"]
    return root, ct_key, manifest.annotations.annotation_key.iloc[0]


def test_export_writes_image_and_mask_on_one_grid(indexed, capsys):
    root, ct_key, annotation = indexed
    main(["export", str(root / "manifest"), ct_key, "-o", str(root / "ct.nii.gz"), "--mask", annotation])
    assert capsys.readouterr().out.split() == ["wrote", str(root / "ct.nii.gz"), "wrote", str(root / "ct_mask.nii.gz")]
    image, mask = nib.load(root / "ct.nii.gz"), nib.load(root / "ct_mask.nii.gz")
    assert image.shape == mask.shape == (128, 128, 80)
    np.testing.assert_array_equal(image.affine, mask.affine)
    hu, labels = np.asanyarray(image.dataobj), np.asanyarray(mask.dataobj)
    lesion = np.argwhere(labels == 1)
    centre_ras = nib.affines.apply_affine(image.affine, lesion.mean(axis=0))
    assert np.linalg.norm(centre_ras - LESION_CENTRE) < 2.0  # where the phantom put it, in RAS+ mm
    assert len(lesion) * 2.0 * 2.0 * 2.5 == pytest.approx(4 / 3 * np.pi * LESION_RADIUS**3, rel=0.15)
    assert np.median(hu[labels == 1]) == pytest.approx(35, abs=20)  # soft tissue inside the lung
    assert np.median(hu[labels == 2]) == pytest.approx(100, abs=20)  # contrast-enhanced liver


def test_export_refuses_other_suffixes(indexed):
    root, ct_key, _ = indexed
    with pytest.raises(SystemExit) as exc:
        main(["export", str(root / "manifest"), ct_key, "-o", str(root / "ct.png")])
    assert exc.value.code == 2


def test_export_creates_missing_folders(indexed, capsys):
    root, ct_key, annotation = indexed
    out = root / "missing" / "dir" / "x.nii.gz"
    main(["export", str(root / "manifest"), ct_key, "-o", str(out), "--mask", annotation])
    assert nib.load(out).shape == nib.load(root / "missing/dir/x_mask.nii.gz").shape == (128, 128, 80)


def test_export_under_a_file_is_one_line_error(indexed, capsys):
    root, ct_key, _ = indexed
    (root / "afile").write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["export", str(root / "manifest"), ct_key, "-o", str(root / "afile/x.nii.gz")])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and err.count("\n") == 1
    assert err.startswith(f"dicomml: error: {root / 'afile/x.nii.gz'}: cannot create its folder")


def test_export_max_voxels_option_and_environment_variable(indexed, capsys, monkeypatch):
    root, ct_key, _ = indexed
    args = ["export", str(root / "manifest"), ct_key, "-o", str(root / "limit.nii.gz")]
    monkeypatch.setenv("DICOMML_MAX_VOXELS", "1000")
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 1 and "exceeds the limit of 1000" in capsys.readouterr().err
    main([*args, "--max-voxels", str(128 * 128 * 80)])  # the option wins over the environment
    assert nib.load(root / "limit.nii.gz").shape == (128, 128, 80)
    monkeypatch.delenv("DICOMML_MAX_VOXELS")
    with pytest.raises(SystemExit) as exc:
        main([*args, "--max-voxels", "1000"])
    assert exc.value.code == 1 and "--max-voxels" in capsys.readouterr().err


def test_export_of_diffusion_series_writes_bval_and_bvec(tmp_path, data_dir, capsys):
    manifest = dicomml.index([str(data_dir / "dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2")], str(tmp_path / "manifest"), workers=1, progress=False)
    main(["export", str(tmp_path / "manifest"), manifest.series.series_key.iloc[0], "-o", str(tmp_path / "dwi.nii")])
    written = [tmp_path / name for name in ("dwi.nii", "dwi.bval", "dwi.bvec")]
    assert capsys.readouterr().out.split() == [w for path in written for w in ("wrote", str(path))]
    assert np.loadtxt(written[1]).tolist() == [0.0] + [1000.0] * 6 and np.loadtxt(written[2]).shape == (3, 7)
