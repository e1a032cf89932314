"""The content-keyed Zarr v3 cache of preprocessed volumes.

``key.py`` makes the key (series content x pipeline config x format version),
``array.py`` is the on-disk layout of one array and its fast read path, and
``store.py`` is :class:`Cache` (atomic publish, verify, gc).
"""

from dicomml.cache.key import FORMAT_VERSION, entry_key, source_fingerprint
from dicomml.cache.store import Cache, CacheEntry

__all__ = ["FORMAT_VERSION", "Cache", "CacheEntry", "entry_key", "source_fingerprint"]
