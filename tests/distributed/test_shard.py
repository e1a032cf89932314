"""Static shards: every series in exactly one shard, stable, and the launcher's variables."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

from dicomml.cli.preprocess import shard_from_env
from dicomml.distributed import select_shard, shard_of
from dicomml.distributed.shard import parse_shard
from dicomml.errors import ConfigError


def _items(n: int, start: int = 0) -> list[SimpleNamespace]:
    """Series keys shaped like the manifest's (16 hex digits), fixed."""
    return [SimpleNamespace(series_key=hashlib.sha1(str(i).encode()).hexdigest()[:16]) for i in range(start, start + n)]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 64])
def test_shards_cover_every_series_exactly_once(count):
    items = _items(3000)
    seen = [item.series_key for i in range(count) for item in select_shard(items, i, count)]
    assert len(seen) == len(items)
    assert set(seen) == {item.series_key for item in items}
    sizes = [len(select_shard(items, i, count)) for i in range(count)]
    assert min(sizes) > 0.5 * len(items) / count  # roughly balanced


def test_a_series_keeps_its_shard_when_the_selection_changes():
    items = _items(500)
    whole = {item.series_key: i for i in range(4) for item in select_shard(items, i, 4)}
    part = items[::3] + _items(100, start=10_000)
    for i in range(4):
        for item in select_shard(part, i, 4):
            assert whole.get(item.series_key, i) == i


def test_shard_of_is_a_fixed_function_of_the_key():
    # SHA-256 based, so the same on every rank, machine and Python version
    first_8_bytes = hashlib.sha256(b"3f2a9c0d1e4b5a67").digest()[:8]
    assert shard_of("3f2a9c0d1e4b5a67", 1000) == int.from_bytes(first_8_bytes, "big") % 1000


@pytest.mark.parametrize("text", ["3/3", "-1/2", "a/b", "1", "1/0", "1/2/3"])
def test_bad_shard_text_is_a_config_error(text):
    with pytest.raises(ConfigError, match="shard"):
        parse_shard(text)


def test_parse_shard():
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard("6/8") == (6, 8)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"RANK": "3", "WORLD_SIZE": "8"}, ((3, 8), "RANK/WORLD_SIZE")),
        ({"RANK": "0", "WORLD_SIZE": "1"}, None),  # a single process is not a shard
        ({"SLURM_PROCID": "2", "SLURM_NTASKS": "4"}, ((2, 4), "SLURM_PROCID/SLURM_NTASKS")),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, None),  # `srun` with one task
        # torchrun inside a SLURM job: torchrun's ranks win
        ({"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, ((1, 2), "RANK/WORLD_SIZE")),
        (
            {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "10", "SLURM_ARRAY_TASK_MIN": "1"},
            ((6, 10), "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"),
        ),
        (  # --array=0-18:2 gives IDs 0, 2, ..., 18
            {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "10", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"},
            ((3, 10), "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"),
        ),
    ],
)
def test_shard_from_launcher_environment(env, expected):
    assert shard_from_env(env) == expected


@pytest.mark.parametrize("env", [{"RANK": "x", "WORLD_SIZE": "2"}, {"RANK": "2", "WORLD_SIZE": "2"}])
def test_bad_launcher_variables_are_config_errors_naming_them(env):
    with pytest.raises(ConfigError, match="RANK"):
        shard_from_env(env)
