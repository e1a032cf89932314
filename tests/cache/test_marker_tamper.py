"""A cache entry's marker is untrusted data: each field a reader uses is checked when the marker is parsed.

A corrupt or tampered field gives one ``CacheIntegrityError`` naming the entry
and the field, never an untyped exception and never a read outside the cache.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dicomml.cache import Cache
from dicomml.errors import CacheIntegrityError

KEY = "k"


@pytest.fixture
def cache(tmp_path, volume) -> Cache:
    """A real cache with one entry: an int16 image (Blosc, 32-voxel chunks), two mask channels and their foreground."""
    image, mask, affine = volume
    cache = Cache(tmp_path / "c")
    cache.put(KEY, image, affine, mask=mask, meta={"series_key": "s1"}, chunks=(32, 32, 32), codec="blosc")
    return cache


def _tamper(cache: Cache, change: Callable[[dict[str, Any]], Any]) -> None:
    marker = Path(cache.root) / "entries" / f"{KEY}.json"
    document = json.loads(marker.read_text())
    change(document)
    marker.write_text(json.dumps(document))


def _layout(name: str, **fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda m: m["layouts"][name].update(fields)


@pytest.mark.parametrize(
    "change,field",
    [
        pytest.param(_layout("image", dtype="object"), "layouts.image: dtype 'object'", id="dtype-object"),
        pytest.param(_layout("image", dtype="|O"), "layouts.image: dtype '|O'", id="dtype-O"),
        pytest.param(_layout("mask", dtype="<U8"), "layouts.mask: dtype '<U8'", id="mask-dtype-str"),
        pytest.param(_layout("image", chunks=[0, 0, 0]), "layouts.image: chunks [0, 0, 0]", id="chunks-zero"),
        pytest.param(_layout("image", chunks=[32, 32, 1000]), "layouts.image: chunks [32, 32, 1000]", id="chunks-past-shape"),
        pytest.param(_layout("image", chunks=[32.5, 32, 32]), "layouts.image: chunks [32.5, 32, 32]", id="chunks-float"),
        pytest.param(_layout("image", shape=[70, 90, -100]), "layouts.image: shape [70, 90, -100]", id="shape-negative"),
        pytest.param(_layout("image", shape=[2**40] * 3, chunks=[2**40] * 3), "layouts.image: shape [1099511627776", id="shape-huge"),
        pytest.param(
            _layout("image", shape=[70, 90], chunks=[32, 32]), "layouts.image: shape [70, 90] has 2 axes, not 3 or 4", id="shape-2d"
        ),
        pytest.param(
            _layout("mask", shape=[2, 70, 90, 99]), "layouts.mask: shape [2, 70, 90, 99] is not on the image's grid", id="mask-off-grid"
        ),
        pytest.param(
            lambda m: m["layouts"].update({"../../../outside": m["layouts"]["image"]}), "layouts ['../../../outside'", id="array-name-path"
        ),
        pytest.param(lambda m: m["checksums"].pop("mask"), "checksums", id="checksum-missing"),
        pytest.param(lambda m: m["checksums"].update(image=1.5), "checksums.image: 1.5", id="checksum-float"),
        pytest.param(lambda m: m.update(affine=[[float("nan")] * 4] * 4), "affine", id="affine-nan"),
        pytest.param(lambda m: m.update(meta=None), "meta", id="meta-null"),
    ],
)
def test_a_tampered_marker_field_is_an_integrity_error_naming_entry_and_field(cache, change, field):
    _tamper(cache, change)
    with pytest.raises(CacheIntegrityError) as raised:
        Cache(cache.root).open(KEY).read()
    message = str(raised.value)
    assert f"entry {KEY} is invalid" in message and field in message and "\n" not in message


@pytest.mark.parametrize("data", ["../../../etc", "/etc", "data/k/../../..", "data/k/tok/../../other", "data/other/tok", "data/k"])
def test_a_marker_data_path_outside_its_entry_is_refused(cache, data):
    _tamper(cache, lambda m: m.update(data=data))
    with pytest.raises(CacheIntegrityError, match=rf"entry {KEY} is invalid \(data '{data}'"):
        Cache(cache.root).open(KEY)


def test_a_marker_pointing_outside_the_cache_root_reads_nothing_there(cache, tmp_path):
    """A marker naming a complete copy of the entry outside the root: no read follows it, although it would decode."""
    entry_data = Path(cache.open(KEY)._path)
    shutil.copytree(entry_data, tmp_path / "outside" / "copy")
    _tamper(cache, lambda m: m.update(data="../outside/copy"))
    with pytest.raises(CacheIntegrityError, match="data '../outside/copy'"):
        Cache(cache.root).open(KEY).read()


def test_a_deeply_nested_marker_is_an_integrity_error(cache):
    (Path(cache.root) / "entries" / f"{KEY}.json").write_text("[" * 100_000)
    with pytest.raises(CacheIntegrityError, match=f"entry {KEY} is invalid"):
        Cache(cache.root).open(KEY)


def test_verify_of_a_marker_without_a_checksum_is_an_integrity_error(cache):
    _tamper(cache, lambda m: m["checksums"].pop("foreground"))
    with pytest.raises(CacheIntegrityError, match="checksums"):
        Cache(cache.root).verify(KEY)


def test_chunks_tampered_within_the_same_grid_are_an_integrity_error(cache):
    """30-voxel chunks still make a 3x3x4 grid of a 70x90x100 image: Blosc refuses a frame larger than the chunk."""
    _tamper(cache, _layout("image", chunks=[30, 32, 32]))
    with pytest.raises(CacheIntegrityError, match=r"entry k array image: chunk \(0, 0, 0\) does not decode"):
        Cache(cache.root).open(KEY).read()
