"""``dicomml preprocess MANIFEST --config YAML --cache CACHE``: fill the cache for a manifest.

The only place that reads the launcher's environment: without ``--shard``
(and without ``--scheduler``), a shard is taken from torchrun's
``RANK``/``WORLD_SIZE``, then SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``, then
a SLURM array's ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT`` (minus
``SLURM_ARRAY_TASK_MIN``, divided by ``SLURM_ARRAY_TASK_STEP``), whichever is
set first with a count above 1. The decoding threads of a task come from
``OMP_NUM_THREADS`` (set per rank by torchrun and SLURM) unless
``--threads`` is given, ``--max-voxels`` defaults to ``DICOMML_MAX_VOXELS``
(else the config's ``max_voxels``), and the glibc setting ``MALLOC_TRIM_THRESHOLD_``,
when set, is passed on to the workers of a local cluster. ``--storage-option``
pairs reach both the manifest's bucket files and the cache (``s3://...``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import click

from dicomml.cli._options import max_voxels
from dicomml.cli._remote import open_manifest, storage_option
from dicomml.config import presets
from dicomml.distributed.shard import check_shard, parse_shard
from dicomml.errors import ConfigError

__all__ = ["command", "shard_from_env", "threads_from_env"]

#: Variables of this process's environment that the workers of a local cluster get.
_WORKER_VARIABLES = ("MALLOC_TRIM_THRESHOLD_",)

#: (index variable, count variable) pairs, in order of precedence.
_RANK_VARIABLES = (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"))


def threads_from_env(env: Mapping[str, str]) -> int | None:
    """The thread budget ``OMP_NUM_THREADS`` gives a process, None when unset or not a positive integer.

    Examples
    --------
    >>> threads_from_env({"OMP_NUM_THREADS": "4"}), threads_from_env({})
    (4, None)
    """
    value = env.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def shard_from_env(env: Mapping[str, str]) -> tuple[tuple[int, int], str] | None:
    """The shard a launcher's environment assigns, and the variables it came from.

    Parameters
    ----------
    env
        The environment (``os.environ``).

    Returns
    -------
    ((index, count), source) or None
        None when no launcher variables with a count above 1 are set.

    Raises
    ------
    ConfigError
        If a variable is not an integer or the index is out of range.

    Examples
    --------
    >>> shard_from_env({"RANK": "3", "WORLD_SIZE": "8"})
    ((3, 8), 'RANK/WORLD_SIZE')
    >>> shard_from_env({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "10"})
    ((4, 10), 'SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT')
    """
    for index_var, count_var in _RANK_VARIABLES:
        if index_var in env and count_var in env:
            index, count = _int(env, index_var), _int(env, count_var)
            if count > 1:
                return _checked(index, count, f"{index_var}/{count_var}")
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        count = _int(env, "SLURM_ARRAY_TASK_COUNT")
        step = _int(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
        first = _int(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
        if count > 1:
            index = (_int(env, "SLURM_ARRAY_TASK_ID") - first) // max(step, 1)
            return _checked(index, count, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")
    return None


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(f"environment variable {name}={env[name]!r} is not an integer; unset it or pass --shard I/N") from None


def _checked(index: int, count: int, source: str) -> tuple[tuple[int, int], str]:
    try:
        check_shard(index, count)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}; fix the launcher's variables or pass --shard I/N") from None
    return (index, count), source


@click.command("preprocess")
@click.argument("manifest", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--config",
    "config",
    required=True,
    help=f"A preset name ({', '.join(presets())}), the path of a pipeline YAML, or a study config (roles): one task per study.",
)
@click.option("--cache", required=True, help="Cache folder or fsspec URL (created if absent).")
@click.option("--where", default=None, help="SQL predicate on the series table, e.g. \"modality = 'CT'\".")
@click.option(
    "--workers", type=click.IntRange(min=0), default=None, help="Worker processes of a local Dask cluster [one per CPU]; 0: this process."
)
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler, e.g. tcp://host:8786.")
@click.option("--shard", default=None, help="Process shard I of N (0-based, e.g. 0/4); default from RANK/WORLD_SIZE or SLURM variables.")
@click.option("--device", default="cpu", show_default=True, help="cpu, or cuda: resample on the worker's GPU when it has one.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads decoding one series [OMP_NUM_THREADS; 1 per Dask worker, every core in this process].",
)
@click.option(
    "--retries", type=click.IntRange(min=0), default=2, show_default=True, help="Dask retries of a task failing with an unexpected error."
)
@click.option("--report", default=None, help="Parquet run report path or URL [CACHE/reports/preprocess-<time>-<id>.parquet].")
@click.option("--quiet", is_flag=True, help="No progress bar (the summary is still printed).")
@click.option(
    "--images",
    is_flag=True,
    help="2D images (CR, DX, MG, US, SC...): --config is an image config YAML, --where a predicate on instances; a report row per image.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="With --images: images per task.")
@click.option(
    "--modalities", default=None, help="With --images: comma-separated modalities taken as 2D images, as ImageDataset's [its list]."
)
@click.option("--masks", is_flag=True, help="With --images: cache the SEG / RTSTRUCT masks of each image, as ImageDataset(masks=True).")
@max_voxels
@storage_option
def command(
    manifest: str,
    config: str,
    cache: str,
    where: str | None,
    workers: int | None,
    scheduler: str | None,
    shard: str | None,
    device: str,
    threads: int | None,
    retries: int,
    report: str | None,
    quiet: bool,
    images: bool,
    batch_size: int,
    modalities: str | None,
    masks: bool,
    max_voxels: int | None,
    storage_option: tuple[str, ...],
) -> None:
    """Compute the cache entry of every selected usable series of MANIFEST.

    Complete entries are skipped, failures are recorded in the run report and
    never stop the run; exit status 1 only when every series failed or the
    input or output is unusable.
    """
    chosen = parse_shard(shard) if shard else None
    if chosen is None and scheduler is None:
        found = shard_from_env(os.environ)
        if found is not None:
            chosen, source = found
            click.echo(f"shard {chosen[0]}/{chosen[1]} from {source}", err=True)
    common: dict[str, Any] = dict(
        where=where, workers=workers, scheduler=scheduler, shard=chosen, device=device, retries=retries, report=report, progress=not quiet
    )
    opened = open_manifest(manifest, storage_option)
    common["storage_options"] = opened.remote.storage_options  # the cache's too (an s3:// cache beside s3:// sources)
    if not images and (modalities is not None or masks):
        raise click.UsageError("--modalities and --masks go with --images")
    if images:
        from dicomml.distributed.images import preprocess_images

        chosen_modalities = None if modalities is None else [m.strip().upper() for m in modalities.split(",") if m.strip()]
        result = preprocess_images(
            opened, config, cache, modalities=chosen_modalities, masks=masks, batch_size=batch_size, max_voxels=max_voxels, **common
        )
    else:
        from dicomml.distributed import preprocess  # torch and Dask: imported to run, not to parse the options

        result = preprocess(
            opened,
            config,
            cache,
            threads=threads if threads is not None else threads_from_env(os.environ),
            worker_env={k: os.environ[k] for k in _WORKER_VARIABLES if k in os.environ},
            max_voxels=max_voxels,
            **common,
        )
    if quiet:
        click.echo(result.summary(), err=True)
