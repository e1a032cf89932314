"""Static sharding by series key: shard I of N with no scheduler (torchrun ranks, SLURM tasks).

A series belongs to shard ``hash(series_key) mod N``, so every rank computes
the same split without talking to the others, the shards cover every series
exactly once, and a series stays in its shard when others are added to or
removed from the selection (unlike slicing a sorted list).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from dicomml.errors import ConfigError

__all__ = ["check_shard", "parse_shard", "select_shard", "shard_of"]

_T = TypeVar("_T")


def shard_of(series_key: str, count: int) -> int:
    """The shard (0 .. count - 1) a series key belongs to.

    The first 8 bytes of SHA-256 of the key, modulo ``count``: stable across
    processes, machines and Python versions (unlike ``hash``).

    Parameters
    ----------
    series_key
        A manifest ``series_key``.
    count
        Number of shards, at least 1.

    Returns
    -------
    int

    Examples
    --------
    >>> shard_of("3f2a9c0d1e4b5a67", 1)
    0
    """
    digest = hashlib.sha256(series_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(items: Sequence[_T], index: int, count: int, *, key: str = "series_key") -> list[_T]:
    """The items of shard ``index`` of ``count``, in their given order.

    Parameters
    ----------
    items
        Objects with a ``series_key`` attribute (e.g. :class:`~dicomml.pipeline.SeriesSource`).
    index, count
        This shard and the number of shards, ``0 <= index < count``.
    key
        Name of the attribute holding the series key.

    Returns
    -------
    list

    Raises
    ------
    ConfigError
        If ``index`` is not in ``0 .. count - 1``.

    Examples
    --------
    >>> from types import SimpleNamespace as S
    >>> items = [S(series_key=k) for k in "abcdef"]
    >>> sorted(k.series_key for i in range(3) for k in select_shard(items, i, 3))
    ['a', 'b', 'c', 'd', 'e', 'f']
    """
    check_shard(index, count)
    return [item for item in items if shard_of(getattr(item, key), count) == index]


def check_shard(index: int, count: int) -> None:
    """Raise :class:`ConfigError` unless ``0 <= index < count``."""
    if not (count >= 1 and 0 <= index < count):
        raise ConfigError(f"shard {index}/{count}: the index must be in 0..{count - 1} and the count at least 1 (e.g. 0/4)")


def parse_shard(text: str) -> tuple[int, int]:
    """Read ``"I/N"`` (shard I of N, 0-based).

    Raises
    ------
    ConfigError
        If ``text`` is not two integers ``I/N`` with ``0 <= I < N``.

    Examples
    --------
    >>> parse_shard("2/8")
    (2, 8)
    """
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"shard {text!r} is not I/N (shard I of N, 0-based, e.g. 0/4)") from None
    check_shard(index, count)
    return index, count
