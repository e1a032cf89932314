"""URL lists of DICOMweb series and of overlapping bucket prefixes, empty objects and folder markers, keys with
``::``, and the Remote's timeout and storage options on buckets: each against the index of the same files on disk."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import dicomml
from dicomml.cli.main import cli
from dicomml.errors import RemoteSourceError
from dicomml.sources import FsspecSource, ObjectList, Remote
from dicomml.testing.servers import FaultProxy, s3_bucket

CT = "dcmqi/data/segmentations/24x38x3/image"
MOSAIC = "dcm_qa/In/Orientation/axmb/AxAsc36mb2a"


def _options(endpoint: str) -> dict:
    return {"anon": True, "endpoint_url": endpoint}


@pytest.fixture(scope="module")
def odd_bucket(data_dir: Path) -> Iterator[str]:
    """A bucket with the CT's files under ``ct/`` beside an empty object and a ``ct/`` folder marker, and under a key
    with ``::`` in it."""
    files = {p.name: p.read_bytes() for p in sorted((data_dir / CT).iterdir())}
    objects = {"ct/": b"", "ct/empty.dcm": b"", **{f"ct/{n}": b for n, b in files.items()}, **{f"a::b/{n}": b for n, b in files.items()}}
    with s3_bucket("odd", objects) as endpoint:
        yield endpoint


@pytest.fixture
def local_ct(data_dir: Path, tmp_path: Path) -> Path:
    """The bucket's ``ct/`` on disk: the CT's files and an empty one."""
    folder = tmp_path / "ct"
    shutil.copytree(data_dir / CT, folder)
    (folder / "empty.dcm").write_bytes(b"")
    return folder


def _sops(manifest: dicomml.Manifest) -> list[str]:
    return sorted(manifest.instances.sop_instance_uid)


def test_a_url_list_of_dicomweb_series_and_studies_indexes_each_once(orthanc_root, local_manifest, tmp_path):
    """open_source built a DicomWebSource of the list's first URL alone: the other series were dropped, silently."""
    dw = f"dicomweb+{orthanc_root}/dicom-web"
    series = local_manifest.series.set_index("modality")
    ct, mosaic = series.loc["CT"], series[series.folder.str.endswith(MOSAIC)].iloc[0]
    urls = [
        f"{dw}/studies/{ct.study_instance_uid}/series/{ct.series_instance_uid}",
        f"{dw}/studies/{mosaic.study_instance_uid}/series/{mosaic.series_instance_uid}",
        f"{dw}/studies/{ct.study_instance_uid}",  # the CT again, with its SEG
    ]
    local = local_manifest.instances
    expected = sorted(
        local[
            local.study_instance_uid.eq(ct.study_instance_uid) | local.series_instance_uid.eq(mosaic.series_instance_uid)
        ].sop_instance_uid
    )
    assert len(expected) > len(local[local.series_instance_uid == ct.series_instance_uid])
    manifest = dicomml.index(ObjectList(urls), tmp_path / "m", progress=False)
    assert manifest.meta["counts"]["errors"] == 0
    assert _sops(manifest) == expected
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    result = CliRunner().invoke(cli, ["index", "--url-list", str(tmp_path / "urls.txt"), "-o", str(tmp_path / "cli"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert _sops(dicomml.Manifest(tmp_path / "cli")) == expected


def test_a_url_list_mixing_dicomweb_and_bucket_urls_is_refused_in_one_line(tmp_path):
    urls = ["dicomweb+http://127.0.0.1:9/dicom-web/studies/1.2/series/1.2.3", "s3://cohort/a.dcm"]
    with pytest.raises(RemoteSourceError, match=r"^2 object URLs from dicomweb\+http://\S+: mixes DICOMweb and bucket URLs; [^\n]*$"):
        dicomml.index(ObjectList(urls), tmp_path / "m", progress=False)


def test_overlapping_entries_of_a_bucket_url_list_give_one_row_per_object(s3_endpoint, data_dir, tmp_path):
    """A prefix and an object or a sub-prefix under it were each listed: duplicate rows, the CT 'duplicate slice positions'."""
    prefix = f"s3://cohort/{CT.rsplit('/', 1)[0]}/"
    local = dicomml.index([str(data_dir / CT), str(data_dir / CT.replace("image", "seg"))], tmp_path / "local", progress=False)
    urls = ObjectList([prefix, prefix + "image/IMG0001.dcm", prefix + "image/", prefix + "image/IMG0001.dcm"])
    for _ in range(2):  # a rerun as well
        manifest = dicomml.index(urls, tmp_path / "m", progress=False, storage_options=_options(s3_endpoint))
        assert manifest.meta["counts"]["errors"] == 0
        assert manifest.instances.path.is_unique and _sops(manifest) == _sops(local)
        remote_ct, local_ct = (m.series.set_index("modality").loc["CT"] for m in (manifest, local))
        assert (remote_ct.n_files, remote_ct.usable) == (local_ct.n_files, local_ct.usable) == (3, True)


def test_an_empty_object_is_not_dicom_as_on_disk_and_a_folder_marker_is_no_file(odd_bucket, local_ct, tmp_path):
    """A 0-byte object was asked for bytes 0-65536 (HTTP 416): 'unreachable', retried on every run; the marker was a file."""
    local = dicomml.index(str(local_ct), tmp_path / "local", progress=False)
    remote = Remote(retries=1, storage_options=_options(odd_bucket))
    for _ in range(2):  # a rerun reads nothing again, as on disk
        manifest = dicomml.index("s3://odd/ct/", tmp_path / "m", progress=False, remote=remote)
        assert manifest.errors[["path", "error_type", "message"]].to_dict("records") == [
            {
                "path": "s3://odd/ct/empty.dcm",
                "error_type": "not_dicom",
                "message": "s3://odd/ct/empty.dcm: empty file (0 bytes), not DICOM; remove it",
            }
        ]
        assert local.errors.error_type.tolist() == ["not_dicom"] and local.errors.message[0].endswith(
            ": empty file (0 bytes), not DICOM; remove it"
        )
        assert _sops(manifest) == _sops(local)
    assert manifest.meta["last_run"]["files_read"] == 0


def test_a_key_with_a_double_colon_indexes_and_loads_as_on_disk(odd_bucket, data_dir, tmp_path):
    """_reader read s3://odd/a::b/x.dcm as an fsspec chain (a TypeError from s3fs): indexed, never loaded."""
    local = dicomml.index(str(data_dir / CT), tmp_path / "local", progress=False)
    expected = dicomml.load_series(local, local.series.series_key[0])
    urls = [f"s3://odd/a::b/{p.name}" for p in sorted((data_dir / CT).iterdir())]
    for name, source in {"prefix": "s3://odd/a::b/", "list": ObjectList(urls)}.items():
        manifest = dicomml.index(source, tmp_path / name, progress=False, storage_options=_options(odd_bucket))
        assert manifest.meta["counts"]["errors"] == 0 and sorted(manifest.instances.path) == urls
        reopened = dicomml.Manifest(tmp_path / name, remote=Remote(storage_options=_options(odd_bucket)))  # no reader opened yet
        volume = dicomml.load_series(reopened, reopened.series.series_key[0])
        assert volume.array.tobytes() == expected.array.tobytes() and volume.affine.tobytes() == expected.affine.tobytes()


@pytest.mark.parametrize("protocol", ["s3", "gs"])
def test_the_remote_timeout_and_retries_bound_a_bucket_read(protocol, request, tmp_path):
    """Bucket reads waited as long as s3fs / gcsfs default to (15 s and 5 of its own tries per try of ours, gcsfs no limit)."""
    endpoint = request.getfixturevalue("s3_endpoint" if protocol == "s3" else "gcs_endpoint")
    options = _options(endpoint) if protocol == "s3" else {"endpoint_url": endpoint, "token": "anon"}
    dicomml.index(f"{protocol}://cohort/{CT}/", tmp_path / "m", progress=False, storage_options=options)
    with FaultProxy(endpoint) as proxy:
        proxy.rules = [("IMG0001", "delay:4")]
        slow = dicomml.Manifest(
            tmp_path / "m", remote=Remote(storage_options={**options, "endpoint_url": proxy.url}, timeout_s=1, retries=1)
        )
        started = time.monotonic()
        with pytest.raises(RemoteSourceError, match=r"IMG0001\.dcm: reading the object failed after 2 tries"):
            dicomml.load_series(slow, slow.series.series_key[0])
        assert time.monotonic() - started < 3.5
        while proxy.in_flight and time.monotonic() - started < 10:  # the delayed answers, given up on, end before the server
            time.sleep(0.1)


def test_storage_options_given_win_over_the_remote_timeout(s3_endpoint):
    remote = Remote(timeout_s=3, storage_options={**_options(s3_endpoint), "config_kwargs": {"read_timeout": 40}})
    config = FsspecSource("s3://cohort/", remote).fs.config_kwargs
    assert (config["read_timeout"], config["connect_timeout"]) == (40, 3)


def test_an_unknown_storage_option_is_named_in_one_line_before_anything_is_read(s3_endpoint, tmp_path):
    """s3fs hands what it does not know to its session on first use: a TypeError told to 'check the server, or rerun'."""
    expected = r"^s3://cohort/: unknown storage option 'endpoint' for s3://; check storage_options \(the CLI: --storage-option KEY=VALUE\)$"
    with pytest.raises(RemoteSourceError, match=expected):
        dicomml.index("s3://cohort/", tmp_path / "m", progress=False, storage_options={"anon": True, "endpoint": s3_endpoint})
    assert not (tmp_path / "m").exists()
    result = CliRunner().invoke(cli, ["index", "s3://cohort/", "-o", str(tmp_path / "m"), "--storage-option", f"endpoint={s3_endpoint}"])
    assert isinstance(result.exception, RemoteSourceError) and re.match(expected, str(result.exception))


def test_a_url_list_reads_each_server_over_one_source(orthanc_root, local_manifest, tmp_path):
    """One DicomWebSource per server, not per URL: a list of thousands of series URLs shares one session and one
    bound on the metadata kept; the same Orthanc named as 127.0.0.1 and as localhost is two servers, both read."""
    from dicomml.sources import DicomWebList, DicomWebSource, open_source

    series = local_manifest.series
    ct = series[series.modality == "CT"].iloc[0]
    mosaic = series[series.folder.str.endswith(MOSAIC)].iloc[0]
    first = f"dicomweb+{orthanc_root}/dicom-web"
    second = first.replace("127.0.0.1", "localhost")
    one = [f"{first}/studies/{s.study_instance_uid}/series/{s.series_instance_uid}" for s in (ct, mosaic)]
    source = open_source(ObjectList(one))
    assert isinstance(source, DicomWebSource) and len(source.scopes) == 2
    two = [one[0], f"{second}/studies/{mosaic.study_instance_uid}/series/{mosaic.series_instance_uid}"]
    both = open_source(ObjectList(two))
    assert isinstance(both, DicomWebList) and len(both.sources) == 2
    manifest = dicomml.index(ObjectList(two), tmp_path / "m", progress=False)
    local = local_manifest.instances
    expected = local[local.series_instance_uid.isin([ct.series_instance_uid, mosaic.series_instance_uid])]
    assert manifest.meta["counts"]["errors"] == 0
    assert _sops(manifest) == sorted(expected.sop_instance_uid)
    assert {p.split("/dicom-web/")[0] for p in manifest.instances.path} == {first.split("/dicom-web")[0], second.split("/dicom-web")[0]}
