"""A Lightning ``LightningDataModule`` over dicomml Datasets (needs ``lightning`` installed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dicomml._optional import require
from dicomml.data.datasets import collate, reach_epoch
from dicomml.errors import ConfigError

if TYPE_CHECKING:
    from lightning.pytorch import LightningDataModule
else:  # optional: the [lightning] extra
    LightningDataModule = require("lightning.pytorch", extra="lightning", feature="dicomml.data.DataModule").LightningDataModule

__all__ = ["DataModule"]


class DataModule(LightningDataModule):
    """Train / validation / test DataLoaders over dicomml Datasets, with :func:`collate`.

    The training loader shuffles with a ``DistributedSampler`` (sharded by the
    trainer's rank under DDP) whose ``set_epoch`` also reaches the dataset, so
    each epoch draws new patches and augmentations, reproducibly.

    Parameters
    ----------
    train, val, test
        Datasets (any of them may be None).
    batch_size
        Samples per batch.
    num_workers
        DataLoader workers; workers persist across epochs when > 0.

    Examples
    --------
    >>> dm = DataModule(PatchDataset(...), SeriesDataset(...), batch_size=4, num_workers=2)  # doctest: +SKIP
    >>> lightning.Trainer(max_epochs=10).fit(model, datamodule=dm)  # doctest: +SKIP
    """

    def __init__(
        self,
        train: Dataset | None = None,
        val: Dataset | None = None,
        test: Dataset | None = None,
        *,
        batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.datasets = {"train": train, "val": val, "test": test}
        self.batch_size = batch_size
        self.num_workers = num_workers

    def _loader(self, name: str) -> DataLoader | list[DataLoader]:
        dataset = self.datasets[name]
        if dataset is None:
            if name == "train":
                raise ConfigError("DataModule: no train dataset was given; pass train= to fit")
            return []  # Lightning skips a loop without loaders, as it does for a module with no such hook
        sampler = None
        if name == "train":
            trainer = self.trainer
            world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            sampler = _EpochSampler(dataset, num_replicas=world, rank=rank, shuffle=True)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (and, under DDP, sharded) loader of the training dataset; new draws each epoch."""
        loader = self._loader("train")
        assert isinstance(loader, DataLoader)
        return loader

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Loader of the validation dataset, in order (none without one: Lightning skips validation)."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """Loader of the test dataset, in order (none without one)."""
        return self._loader("test")


class _EpochSampler(DistributedSampler):
    """DistributedSampler whose ``set_epoch`` (called by Lightning every epoch) also reaches the dataset.

    Lightning keeps a sampler that is already a DistributedSampler, so this
    one shards under DDP and shuffles (seeded by the epoch) on one device.
    """

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        reach_epoch(self.dataset, epoch)
