"""``dicomml cache info|verify|gc CACHE``: inspect, check and clean a cache (a folder or fsspec URL, with ``--storage-option``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from dicomml.cli._remote import remote_from_env, storage_option
from dicomml.errors import CacheIntegrityError, CacheMissError

if TYPE_CHECKING:  # fsspec and crc32c: imported to run, not for --help
    from dicomml.cache import Cache

__all__ = ["command"]


@click.group("cache")
def command() -> None:
    """Inspect, verify and clean a dicomml cache (local folder or fsspec URL).

    Each subcommand refuses (exit 1) a path that holds no dicomml cache, and creates nothing.
    """


def _open(cache: str, pairs: tuple[str, ...]) -> Cache:
    """The existing cache at ``cache``, reached with the ``--storage-option`` pairs."""
    from dicomml.cache import Cache

    return Cache(cache, storage_options=remote_from_env(pairs).storage_options, create=False)


@command.command("info")
@click.argument("cache")
@storage_option
def info(cache: str, storage_option: tuple[str, ...]) -> None:
    """Entries and bytes of CACHE; invalid_entries counts markers that do not parse (recomputed by the next preprocess)."""
    summary = _open(cache, storage_option).info()
    for name, value in summary.items():
        click.echo(f"{name}: {value} ({_size(value)})" if name.endswith("bytes") else f"{name}: {value}")
    if summary["invalid_entries"]:
        click.echo(
            f"{cache}: {summary['invalid_entries']} entries have a marker that does not parse; `dicomml cache verify` names them, "
            "and the next `dicomml preprocess` computes them again",
            err=True,
        )


def _size(n: float) -> str:
    """``n`` bytes for people: 1210725696 -> ``1.2 GB`` (decimal units, as disks are sold)."""
    units = ("B", "kB", "MB", "GB", "TB")
    step = 0
    while n >= 1000 and step < len(units) - 1:
        n, step = n / 1000, step + 1
    return f"{n:.0f} B" if step == 0 else f"{n:.1f} {units[step]}"


@command.command("verify")
@click.argument("cache")
@click.option("--delete", is_flag=True, help="Unpublish entries that fail, so they are recomputed.")
@storage_option
def verify(cache: str, delete: bool, storage_option: tuple[str, ...]) -> None:
    """Decode every chunk of every entry and check its checksums; exit 1 if any fails,
    also with --delete (the corruption was found; the failed entries are then gone and are
    recomputed when next used). Entries another process unpublishes meanwhile are skipped."""
    store = _open(cache, storage_option)
    keys = store.keys()
    bad, gone = [], 0
    with click.progressbar(keys, label="verifying", file=sys.stderr) as bar:
        for key in bar:
            try:
                store.verify(key, delete=delete)
            except CacheMissError:  # unpublished since listed (another process's delete)
                gone += 1
            except CacheIntegrityError as exc:
                bad.append(key)
                click.echo(f"FAILED {exc}", err=True)
    checked = len(keys) - gone
    click.echo(f"{checked - len(bad)} of {checked} entries verified" + (", failed ones unpublished" if bad and delete else ""))
    if bad:
        remedy = "deleted, so they are recomputed when next used" if delete else "rerun with --delete, then recompute"
        raise CacheIntegrityError(f"{cache}: {len(bad)} corrupted entries: {', '.join(bad)}; {remedy}", path=cache)


@command.command("gc")
@click.argument("cache")
@click.option("--grace", default=3600.0, show_default=True, help="Keep unreferenced data younger than this many seconds (writers at work).")
@storage_option
def gc(cache: str, grace: float, storage_option: tuple[str, ...]) -> None:
    """Remove data no entry names (killed or racing writers) and stale temporary files."""
    removed = _open(cache, storage_option).gc(grace_seconds=grace)
    for path in removed:
        click.echo(f"removed {path}")
    click.echo(f"{len(removed)} paths removed")
