"""Where the cache key is made: series content x pipeline config x format version.

The key changes when any source file changes (SOP Instance UID, size or
modification time), when the deterministic part of the pipeline changes, or
when the on-disk format changes, and never otherwise: the file path, the
config's name and its at-load part (windows, augmentation) are not hashed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable
from numbers import Real
from typing import Any

from dicomml.config import PipelineConfig

__all__ = ["FORMAT_VERSION", "entry_key", "source_fingerprint"]

#: On-disk format of an entry; bump it when the layout or the codecs change.
FORMAT_VERSION = 1


def _mtime_ns(value: Any) -> int:
    """Modification time as integer nanoseconds (int ns, float seconds, or a datetime)."""
    if hasattr(value, "value") and isinstance(value.value, int):  # pandas.Timestamp
        return int(value.value)
    if isinstance(value, dt.datetime):
        return round(value.timestamp() * 1e6) * 1000
    if isinstance(value, Real) and math.isfinite(float(value)):
        # float seconds carry ~microsecond precision; ints are taken as ns when huge
        return int(value) if isinstance(value, int) and value > 10**12 else round(float(value) * 1e6) * 1000
    raise TypeError(f"mtime {value!r} is not a number of seconds, nanoseconds or a datetime")


def _line(uid: str, size: int, mtime: Any, frames: Iterable[int] | None = None) -> str:
    used = "" if frames is None else ",".join(str(int(f)) for f in frames)
    return f"{uid}\t{int(size)}\t{_mtime_ns(mtime)}\t{used}"


def source_fingerprint(files: Iterable[tuple[Any, ...]]) -> str:
    """SHA-256 (hex) of a set of source files, given as (SOP Instance UID, size, mtime[, frames]).

    Order does not matter. The same UID with another size or mtime (a
    re-encoded or rewritten file) gives another fingerprint; so do other
    frames of one multi-frame file (two echoes of an enhanced MR).

    Parameters
    ----------
    files
        ``(sop_instance_uid, size_in_bytes, mtime)`` per file, optionally with
        a fourth item, the 1-based frame numbers used (None for all); mtime in
        float seconds, integer nanoseconds or a datetime/Timestamp.

    Examples
    --------
    >>> a = source_fingerprint([("1.2.3", 100, 1.5), ("1.2.4", 100, 1.5)])
    >>> a == source_fingerprint([("1.2.4", 100, 1.5), ("1.2.3", 100, 1.5)])
    True
    >>> a == source_fingerprint([("1.2.3", 100, 2.5), ("1.2.4", 100, 1.5)])
    False
    """
    lines = sorted(_line(*f) for f in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def entry_key(fingerprint: str, config: PipelineConfig) -> str:
    """The cache key: 32 hex digits of SHA-256(format version, sources, config hash).

    Examples
    --------
    >>> k = entry_key(source_fingerprint([("1.2.3", 10, 0.0)]), PipelineConfig("a"))
    >>> k == entry_key(source_fingerprint([("1.2.3", 10, 0.0)]), PipelineConfig("b"))
    True
    >>> len(k)
    32
    """
    text = f"dicomml-cache/{FORMAT_VERSION}\n{fingerprint}\n{config.cache_hash()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]
