"""A cache in an S3 bucket (moto's server on 127.0.0.1), reached through the CLI's ``--storage-option`` pairs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dicomml.cache import Cache
from dicomml.cli.main import main
from dicomml.testing.servers import s3_bucket

BUCKET = "caches"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_bucket(BUCKET, {}) as endpoint:
        yield endpoint


def test_storage_options_reach_the_cache_of_preprocess_and_of_the_cache_commands(cohort, s3_endpoint, tmp_path, capsys):
    # without the endpoint the cache would be looked for on AWS, which this machine cannot reach
    options = {"endpoint_url": s3_endpoint, "key": "test", "secret": "test"}
    pairs = [arg for k, v in options.items() for arg in ("--storage-option", f"{k}={v}")]
    url = f"s3://{BUCKET}/c"
    config = tmp_path / "coarse.yaml"
    config.write_text("name: coarse\ndeterministic: {spacing: [4, 4, 4]}\n")
    (key,) = sorted(cohort.sql("SELECT series_key FROM series WHERE usable AND n_slices = 3")["series_key"])[:1]
    where = f"series_key = '{key}'"
    main(["preprocess", str(cohort.path), "--config", str(config), "--cache", url, "--where", where, "--workers", "0", "--quiet", *pairs])
    assert ": 1 done, 0 skipped, 0 failed;" in capsys.readouterr().err
    cache = Cache(url, storage_options=options, create=False)
    (entry,) = cache.keys()
    cache.verify(entry)
    main(["cache", "info", url, *pairs])
    assert "entries: 1\ninvalid_entries: 0\n" in capsys.readouterr().out
    main(["cache", "verify", url, *pairs])
    assert capsys.readouterr().out.strip().endswith("1 of 1 entries verified")
    main(["cache", "gc", url, "--grace", "0", *pairs])
    assert capsys.readouterr().out.strip().splitlines()[-1] == "0 paths removed"
    main(["preprocess", str(cohort.path), "--config", str(config), "--cache", url, "--where", where, "--workers", "0", "--quiet", *pairs])
    assert ": 0 done, 1 skipped, 0 failed;" in capsys.readouterr().err
