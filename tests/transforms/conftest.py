"""Real volumes for the transform tests: dcm2niix reference NIfTIs of the corpus, read by nibabel."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest

from dicomml.geometry import LPS_TO_RAS
from dicomml.volume import Volume

#: Reference NIfTIs (INDEX.csv ``reference_output``) used as real volumes, by short name.
NIFTIS = {
    "mr_sagittal": "dcm_qa_decubitus/derived-dcm2niix/In/HFDR/2_t1_fl2d_sag/t1_fl2d_sag_2.nii",  # PSR, 1 x 1 x 4.8 mm
    "mr_oblique": "dcm_qa_philips_enh/Ref/1901_WIP_3DpCASL_cl.nii.gz",  # oblique, 2.5 x 2.5 x 4 mm
    "ct_3slice": "dcmqi/derived-dcm2niix/data/segmentations/ct-3slice/6.9_Colonoscopy_2.nii",  # LAS, 0.81 x 0.81 x 1 mm
}
LIVER_LABELS = "dcmqi/data/segmentations/liver_seg.nrrd"  # dcmqi's label map of the liver SEG over ct-3slice


def read_nifti(data_dir: Path, relative: str) -> Volume:
    """A Volume (float32, first 3D volume) from a corpus NIfTI; the affine is nibabel's (RAS+)."""
    image = nib.load(data_dir / relative)
    array = np.asarray(image.dataobj, dtype=np.float32)
    return Volume(np.ascontiguousarray(array.reshape(array.shape[:3] + (-1,))[..., 0]), image.affine)


@pytest.fixture(scope="session")
def nifti(data_dir: Path, corpus_index):
    """``nifti(name) -> Volume`` for a name of ``NIFTIS`` (reference outputs listed in INDEX.csv)."""
    listed = {p for cell in corpus_index["reference_output"] for p in cell.split(";")}

    def load(name: str) -> Volume:
        assert NIFTIS[name] in listed
        return read_nifti(data_dir, NIFTIS[name])

    return load


@pytest.fixture(scope="session")
def liver_pair(data_dir: Path, corpus_index) -> tuple[Volume, Volume]:
    """The ct-3slice CT (dcm2niix) and dcmqi's liver label map (NRRD, LPS) as two Volumes."""
    row = corpus_index[corpus_index["reference_output"] == LIVER_LABELS].iloc[0]
    assert row["referenced_series_folder"] == "dcmqi/data/segmentations/ct-3slice"
    image = read_nifti(data_dir, NIFTIS["ct_3slice"])
    labels, header = nrrd.read(str(data_dir / LIVER_LABELS))
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(header["space directions"], dtype=np.float64).T
    lps[:3, 3] = header["space origin"]
    return image, Volume(labels.astype(np.uint8), LPS_TO_RAS @ lps, meta={"kind": "mask"})
