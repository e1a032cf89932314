"""Benchmark: indexing remote sources, dicomml against the plain client loops, with added latency.

Two parts, each on 127.0.0.1 with a proxy that adds ``--latency`` seconds
(default 0.02) to every request, for both contenders alike. The proxy runs in
its own process: it stands for the network, whose work is not the client's
(in the benchmark's process it would take the measured client's GIL for
every request it forwards).

- **DICOMweb**: a real Orthanc (DICOMweb plugin) loaded with synthetic CT
  series (``--series`` series of ``--per-series`` slices, 64x64). Contenders:
  ``dicomweb-client loop`` (QIDO-RS search for series, then WADO-RS metadata
  of each series in turn, each instance turned into a pydicom Dataset) and
  ``dicomml index dicomweb+http://...``. Target: >= 3x.
- **S3**: moto's S3 server with ``--objects`` synthetic slices in an
  anonymous-read bucket. Contenders: ``s3fs loop`` (list, then read each whole
  object and parse it with pydicom, in turn) and ``dicomml index s3://...``.
  Target: >= 3x.

Both run in one warm process: the modules either contender imports (pydicom,
dicomweb-client, s3fs, and dicomml's indexer with pandas, DuckDB and pyarrow)
are imported before the timing, as ``bench_index.py`` does, by indexing one
local file first. The DICOMweb part also times the walk of the server alone
(QIDO-RS, metadata, transfer syntaxes), to say where dicomml's time goes.

Prints instances/s, the ratios, and one markdown table.

Usage: ``python benchmarks/bench_remote.py [--series 300] [--per-series 4] [--objects 5000]
[--latency 0.02] [--parts dicomweb,s3]``
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil

import dicomml
from dicomml.dicom.synthetic import write_series
from dicomml.testing.servers import FaultProxy, orthanc, s3_bucket

TARGET = 3.0


def _write_cohort(folder: Path, series: int, per_series: int) -> list[Path]:
    rng = np.random.default_rng(0)
    files: list[Path] = []
    for s in range(series):
        volume = rng.integers(0, 2000, size=(per_series, 64, 64), dtype=np.uint16)
        files += write_series(folder / f"s{s:05d}", volume)
    return files


def _dicomweb_loop(url: str) -> int:
    from dicomweb_client import DICOMwebClient
    from pydicom.dataset import Dataset

    client = DICOMwebClient(url)
    n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for series in client.search_for_series(get_remaining=True):
            study_uid, series_uid = series["0020000D"]["Value"][0], series["0020000E"]["Value"][0]
            for item in client.retrieve_series_metadata(study_uid, series_uid):
                Dataset.from_json(item)
                n += 1
    return n


def _s3_loop(endpoint: str, bucket: str) -> int:
    import pydicom
    import s3fs

    fs = s3fs.S3FileSystem(anon=True, endpoint_url=endpoint, skip_instance_cache=True)
    n = 0
    for path in fs.find(bucket):
        pydicom.dcmread(io.BytesIO(fs.cat_file(path)), stop_before_pixels=True)
        n += 1
    return n


class _Proxy:
    """A :class:`FaultProxy` in a child process: ``url``, and ``requests`` forwarded so far."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        assert process.stdout is not None
        self.url = process.stdout.readline().strip()

    @property
    def requests(self) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())


@contextmanager
def _proxy(upstream: str, latency: float) -> Iterator[_Proxy]:
    command = [sys.executable, __file__, "--serve-proxy", upstream, "--latency", str(latency)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield _Proxy(process)
    finally:
        process.kill()
        process.wait()


def _serve_proxy(upstream: str, latency: float) -> int:
    """The child's side: print the URL, then the request count for each line read; stop at the end of input."""
    with FaultProxy(upstream, latency_s=latency) as proxy:
        print(proxy.url, flush=True)
        for _ in sys.stdin:
            print(proxy.requests, flush=True)
    return 0


def _warm_up(work: Path) -> None:
    """Import what both contenders import, outside the timing."""
    import dicomweb_client  # noqa: F401
    import pydicom  # noqa: F401
    import s3fs  # noqa: F401

    files = _write_cohort(work / "warm", 1, 1)
    dicomml.index(str(files[0].parent), work / "m_warm", progress=False, workers=1)


def _walk(url: str) -> float:
    """Seconds dicomml takes for the server's part alone: series search, metadata, transfer syntaxes, headers rebuilt."""
    from dicomml.sources import open_source

    start = time.perf_counter()
    source = open_source(url)
    urls = [path for item in source.walk() for path in getattr(item, "paths", ())]
    assert urls and all(f.size > 0 for f in source.prefetch_urls(urls).values())
    return time.perf_counter() - start


class _Clocks:
    """CPU seconds of this process (the client), the server and the proxy, and requests, since the last lap."""

    def __init__(self, server: psutil.Process, proxy_process: psutil.Process, proxy: _Proxy) -> None:
        self.server, self.proxy_process, self.proxy = server, proxy_process, proxy
        self.last = self._read()

    def _read(self) -> tuple[float, ...]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return (
            own.ru_utime + own.ru_stime,
            sum(self.server.cpu_times()[:2]),
            sum(self.proxy_process.cpu_times()[:2]),
            float(self.proxy.requests),
        )

    def lap(self) -> str:
        now = self._read()
        client, server, proxy, requests = (a - b for a, b in zip(now, self.last))
        self.last = self._read()
        return f"{requests:.0f} requests; CPU s: client {client:.2f}, Orthanc {server:.2f}, proxy {proxy:.2f}"


def _time(function, *args) -> tuple[float, int]:
    start = time.perf_counter()
    n = function(*args)
    return time.perf_counter() - start, n


def bench_dicomweb(work: Path, series: int, per_series: int, latency: float) -> list[tuple[str, str, int, float]]:
    files = _write_cohort(work / "cohort", series, per_series)
    start = time.perf_counter()
    with orthanc(work / "orthanc", files, timeout_s=120) as root:
        print(f"dicomweb: {len(files)} instances in {series} series loaded into Orthanc in {time.perf_counter() - start:.1f} s", flush=True)
        with _proxy(root, latency) as proxy:
            base = f"{proxy.url}/dicom-web"
            server = next(p for p in psutil.Process().children() if p.name().lower() == "orthanc")
            clocks = _Clocks(server, psutil.Process(proxy.process.pid), proxy)
            t_loop, n_loop = _time(_dicomweb_loop, base)
            print(f"  dicomweb-client loop: {n_loop} instances in {t_loop:.2f} s ({clocks.lap()})", flush=True)
            t_ours, _ = _time(lambda: dicomml.index(f"dicomweb+{base}", work / "m_dicomweb", progress=False))
            n_ours = int(dicomml.Manifest(work / "m_dicomweb").meta["counts"]["instances"])
            print(f"  dicomml index: {n_ours} instances in {t_ours:.2f} s ({clocks.lap()})", flush=True)
            t_walk = _walk(f"dicomweb+{base}")
            print(f"  of which walking the server alone takes {t_walk:.2f} s ({clocks.lap()})", flush=True)
    assert n_ours == n_loop == len(files), (n_ours, n_loop, len(files))
    return [("DICOMweb (Orthanc)", "dicomweb-client loop", n_loop, t_loop), ("DICOMweb (Orthanc)", "dicomml index", n_ours, t_ours)]


def bench_s3(work: Path, objects: int, latency: float) -> list[tuple[str, str, int, float]]:
    per_series = 100
    files = _write_cohort(work / "objects", max(1, objects // per_series), per_series)
    bucket = "bench"

    def read(path: Path) -> tuple[str, bytes]:
        return str(path.relative_to(work / "objects")), path.read_bytes()

    with ThreadPoolExecutor(8) as pool:
        contents = dict(pool.map(read, files))
    start = time.perf_counter()
    with s3_bucket(bucket, contents, timeout_s=120) as endpoint:
        print(f"s3: {len(files)} objects put into the moto bucket in {time.perf_counter() - start:.1f} s", flush=True)
        with _proxy(endpoint, latency) as proxy:
            t_loop, n_loop = _time(_s3_loop, proxy.url, bucket)
            print(f"  s3fs loop: {n_loop} objects in {t_loop:.2f} s", flush=True)
            options = {"anon": True, "endpoint_url": proxy.url, "skip_instance_cache": True}
            t_ours, _ = _time(lambda: dicomml.index(f"s3://{bucket}/", work / "m_s3", progress=False, storage_options=options))
            n_ours = int(dicomml.Manifest(work / "m_s3").meta["counts"]["instances"])
            print(f"  dicomml index: {n_ours} instances in {t_ours:.2f} s", flush=True)
    assert n_ours == n_loop == len(files), (n_ours, n_loop, len(files))
    return [("S3 (moto)", "s3fs + pydicom loop", n_loop, t_loop), ("S3 (moto)", "dicomml index", n_ours, t_ours)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=300)
    parser.add_argument("--per-series", type=int, default=4)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--parts", default="dicomweb,s3")
    parser.add_argument("--serve-proxy", metavar="UPSTREAM", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_proxy:
        return _serve_proxy(args.serve_proxy, args.latency)
    rows: list[tuple[str, str, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench_remote_") as tmp:
        work = Path(tmp)
        _warm_up(work)
        if "dicomweb" in args.parts:
            rows += bench_dicomweb(work, args.series, args.per_series, args.latency)
        if "s3" in args.parts:
            rows += bench_s3(work, args.objects, args.latency)
    print(f"\n{args.latency * 1000:g} ms added per request; one run each, imports outside the timing.\n")
    print("| source | contender | instances | seconds | instances/s | ratio | target |")
    print("|---|---|---:|---:|---:|---:|---:|")
    ok = True
    for i in range(0, len(rows), 2):
        baseline, ours = rows[i], rows[i + 1]
        ratio = baseline[3] / ours[3]
        ok &= ratio >= TARGET
        for row, r in ((baseline, "1.0x"), (ours, f"{ratio:.1f}x")):
            print(
                f"| {row[0]} | {row[1]} | {row[2]} | {row[3]:.2f} | {row[2] / row[3]:.0f} | {r} | "
                f"{'' if row is baseline else f'>= {TARGET:g}x'} |"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
