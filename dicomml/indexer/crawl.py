"""Walk the sources: every regular file with its size and mtime, and what cannot be walked.

A source is a local folder (or file), a ``file://`` URL, or any other fsspec
URL (``memory://``, ``s3://``, ``gs://``). The walk stats files and never
opens them, so a rerun on an unchanged tree costs one ``stat`` per file; it
yields the files of a folder as one columnar :class:`Files` chunk, never one
object per file.
Directory symlinks are followed once: a link back to a folder already on the
way is a loop and is reported, not followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple

from dicomml.errors import SourceNotFoundError
from dicomml.paths import local_path

__all__ = ["CrawlError", "Entry", "Files", "Source", "crawl", "mtime_ns", "open_sources"]


class Entry(NamedTuple):
    """One regular file to read (a named tuple: millions may be made).

    Attributes
    ----------
    path
        As the manifest records it: absolute local path, or full fsspec URL.
    folder
        The folder holding it, in the same form.
    size, mtime_ns
        From ``stat`` (fsspec: ``size`` and the modification time if known, else 0).
    open_path
        The path to hand to ``open`` (or to the fsspec filesystem).
    """

    path: str
    folder: str
    size: int
    mtime_ns: int
    open_path: str


class Files(NamedTuple):
    """Regular files of one folder, found by a walk, as parallel columns.

    Attributes
    ----------
    folder
        The folder holding them, as :attr:`Entry.folder`.
    paths, sizes, mtimes_ns, open_paths
        One item per file, as the fields of :class:`Entry`.
    """

    folder: str
    paths: list[str]
    sizes: list[int]
    mtimes_ns: list[int]
    open_paths: list[str]


class CrawlError(NamedTuple):
    """Something met while walking that is not a file to index."""

    path: str
    error_type: str
    message: str


@dataclass(frozen=True)
class Source:
    """A resolved source: ``fs`` is None for the local filesystem, else a :mod:`dicomml.sources` object."""

    root: str
    fs: Any = None

    @property
    def local(self) -> bool:
        return self.fs is None


def open_sources(
    sources: Any,
    *,
    remote: Any = None,
) -> list[Source]:
    """Resolve paths and URLs, checking that each exists.

    Parameters
    ----------
    sources
        Paths, fsspec URLs, ``dicomweb+http(s)://`` URLs or a
        :class:`dicomml.sources.ObjectList`, one or several.
    remote
        How to reach remote sources: a :class:`dicomml.sources.Remote`.

    Raises
    ------
    SourceNotFoundError
        If a source does not exist (or no source is given).
    """
    from dicomml.sources.buckets import ObjectList

    items = [sources] if isinstance(sources, (str, os.PathLike, ObjectList)) else list(sources)
    if not items:
        raise SourceNotFoundError("no source given; pass at least one folder or URL to index")
    out = []
    for item in items:
        text = item if isinstance(item, ObjectList) else os.fspath(item)
        if isinstance(text, ObjectList) or ("://" in text and not text.startswith("file://")):
            from dicomml.sources import open_source  # only for URLs: a local rerun stays light

            opened = open_source(text, remote)
            out.append(Source(root=getattr(opened, "root", ""), fs=opened))
            continue
        local = Path(text.removeprefix("file://")).expanduser().absolute()
        if not local.exists():
            raise SourceNotFoundError(f"{local}: source does not exist; check the path", path=str(local))
        out.append(Source(root=str(local)))
    return out


def crawl(sources: Sequence[Source]) -> Iterator[tuple[int, Files | CrawlError]]:
    """Every regular file under the sources (sorted by path within each folder), and the crawl errors, each
    with the index of its source; a file that an earlier source holds too (a folder named twice, or with
    its parent) is listed under that one only."""
    seen: set[str] = set()
    for i, source in enumerate(sources):
        for item in _walk_local(source.root) if source.local else source.fs.walk():
            if len(sources) > 1 and isinstance(item, Files):
                item = _unseen(item, seen)
                if not item.paths:
                    continue
            yield i, item


def _unseen(files: Files, seen: set[str]) -> Files:
    """``files`` without those in ``seen``, which takes the rest (``file://`` URLs as the local paths they name)."""
    paths = [local_path(path) for path in files.paths]
    keep = [j for j, path in enumerate(paths) if path not in seen]
    seen.update(paths)
    if len(keep) == len(files.paths):
        return files
    return Files(
        files.folder,
        [files.paths[j] for j in keep],
        [files.sizes[j] for j in keep],
        [files.mtimes_ns[j] for j in keep],
        [files.open_paths[j] for j in keep],
    )


def _walk_local(root: str) -> Iterator[Files | CrawlError]:
    top = os.stat(root)
    if stat.S_ISREG(top.st_mode):
        yield Files(os.path.dirname(root), [root], [top.st_size], [top.st_mtime_ns], [root])
        return
    # Depth first; each stack item carries the (device, inode) of the folders above it.
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [(root, frozenset({(top.st_dev, top.st_ino)}))]
    while stack:
        folder, above = stack.pop()
        try:  # entries are stat'ed relative to the folder's descriptor: the kernel resolves one name, not the whole path
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            yield CrawlError(folder, "unreadable", f"{folder}: folder cannot be listed ({exc.strerror}); check permissions")
            continue
        try:
            yield from _folder(fd, folder, above, stack)
        finally:
            os.close(fd)


_name = attrgetter("name")
_mode = attrgetter("st_mode")
_size = attrgetter("st_size")
_mtime = attrgetter("st_mtime_ns")


def _folder(
    fd: int, folder: str, above: frozenset[tuple[int, int]], stack: list[tuple[str, frozenset[tuple[int, int]]]]
) -> Iterator[Files | CrawlError]:
    """The files of one open folder, sorted by name; its subfolders are pushed on ``stack``."""
    try:
        with os.scandir(fd) as it:
            children = sorted(it, key=_name)
    except OSError as exc:
        yield CrawlError(folder, "unreadable", f"{folder}: folder cannot be listed ({exc.strerror}); check permissions")
        return
    prefix = os.path.join(folder, "")
    try:  # follows symlinks
        infos = list(map(os.DirEntry.stat, children))
    except OSError:  # rare: entry by entry below, to say which
        infos = []
    if infos and all(map(stat.S_ISREG, map(_mode, infos))):  # a folder of files, the common case: no per-entry loop
        paths = [prefix + name for name in map(_name, children)]
        yield Files(folder, paths, list(map(_size, infos)), list(map(_mtime, infos)), paths)
        return
    paths, sizes, mtimes = [], [], []
    subfolders = []
    for i, child in enumerate(children):
        path = prefix + child.name
        try:
            info = infos[i] if infos else child.stat()
        except OSError as exc:
            if not child.is_symlink():
                yield CrawlError(path, "unreadable", f"{path}: cannot be read ({exc.strerror}); check permissions")
            elif exc.errno == errno.ELOOP:
                yield CrawlError(path, "symlink_loop", f"{path}: symlink loop ({exc.strerror}); not followed")
            else:
                yield CrawlError(path, "broken_symlink", f"{path}: symlink to nothing ({exc.strerror}); remove the broken link")
            continue
        mode = info.st_mode
        if stat.S_ISREG(mode):
            paths.append(path)
            sizes.append(info.st_size)
            mtimes.append(info.st_mtime_ns)
        elif stat.S_ISDIR(mode):
            identity = (info.st_dev, info.st_ino)
            if identity in above:
                yield CrawlError(path, "symlink_loop", f"{path}: symlink loop back to a parent folder; not followed")
                continue
            if child.name.lower().endswith(".dcm"):
                yield CrawlError(path, "directory_named_dcm", f"{path}: a directory named like a DICOM file; its contents are indexed")
            subfolders.append((path, above | {identity}))
        else:
            yield CrawlError(path, "not_regular_file", f"{path}: not a regular file (a FIFO, socket or device); skipped")
    if paths:
        yield Files(folder, paths, sizes, mtimes, paths)
    stack.extend(reversed(subfolders))


def mtime_ns(info: dict[str, Any]) -> int:
    """The modification time, ns, of an fsspec ``info`` dict (0 if it has none)."""
    value = info.get("mtime", info.get("LastModified", info.get("created")))
    if value is None:
        return 0
    if hasattr(value, "timestamp"):
        value = value.timestamp()
    return int(float(value) * 1e9)
