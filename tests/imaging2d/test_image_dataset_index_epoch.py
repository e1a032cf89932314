"""ImageDataset samples record ``meta["index"]`` and ``meta["epoch"]``, and read indices, as the volume Datasets' do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

import dicomml
from dicomml.imaging2d import ImageConfig, ImageDataset
from dicomml.imaging2d.synthetic import write_image2d


def test_image_samples_record_their_index_and_epoch(tmp_path):
    for i in range(3):
        write_image2d(tmp_path / "dx" / f"{i}.dcm", np.full((40, 48), 100 * i, np.uint16), bits_stored=12)
    dicomml.index(tmp_path / "dx", tmp_path / "manifest", workers=1, progress=False)
    ds = ImageDataset(tmp_path / "manifest", tmp_path / "cache", ImageConfig(size=(32, 32)))
    assert [ds[i]["meta"]["index"] for i in range(3)] == [0, 1, 2]
    assert ds[-1]["meta"]["index"] == 2 and ds[np.int64(1)]["meta"]["index"] == 1 and ds[torch.tensor(0)]["meta"]["index"] == 0
    assert ds[-1]["key"] == ds[2]["key"]
    with pytest.raises(IndexError, match="ImageDataset index 3 is out of range for 3 samples"):
        ds[3]
    ds.set_epoch(4)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=default_collate)))
    assert batch["meta"]["index"].tolist() == [0, 1, 2] and batch["meta"]["epoch"].tolist() == [4, 4, 4]
