"""A z-scored channel that is constant over its volume (a study's missing role) is only centred, in patches as whole."""

from __future__ import annotations

import torch

from dicomml.data import PatchDataset, StudyDataset
from dicomml.transforms import ZNormalize


def _with_missing_role() -> dict:
    return {
        "name": "ct_and_absent_pet",
        "roles": {"ct": {"where": "modality = 'CT'"}, "pet": {"where": "modality = 'PT'"}},
        "reference": "ct",
        "missing": "empty",
        "deterministic": {"orientation": "RAS", "spacing": [4.0, 4.0, 4.0], "dtype": "float32", "chunks": [32, 32, 32]},
        "at_load": {"normalize": "zscore"},
    }


def test_patches_of_a_study_missing_a_role_are_crops_of_the_whole_sample(study, tmp_path):
    _, manifest = study
    whole = StudyDataset(manifest, _with_missing_role(), tmp_path / "c")[0]
    assert whole["meta"]["role_present"] == {"ct": True, "pet": False}
    assert torch.equal(whole["image"][1], torch.zeros_like(whole["image"][1]))
    patches = PatchDataset(manifest, _with_missing_role(), tmp_path / "c", patch_size=(8, 8, 8), samples_per_volume=3)
    for i in range(3):
        patch = patches[i]
        i0, j0, k0 = patch["meta"]["patch_start"]
        torch.testing.assert_close(patch["image"], whole["image"][:, i0 : i0 + 8, j0 : j0 + 8, k0 : k0 + 8])


def test_given_statistics_with_zero_std_centre_the_channel():
    image = torch.tensor([[[[5.0, 5.0]]], [[[1.0, 3.0]]]])
    torch.testing.assert_close(ZNormalize(mean=[5.0, 2.0], std=[0.0, 1.0])(image), torch.tensor([[[[0.0, 0.0]]], [[[-1.0, 1.0]]]]))
