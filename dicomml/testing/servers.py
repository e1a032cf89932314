"""Real servers on 127.0.0.1 for tests and benchmarks: Orthanc with DICOMweb, a moto S3 endpoint, a fault proxy.

Each starts on a free loopback port, within a time limit, and stops when its
context ends. Orthanc comes from Debian (``scripts/install_servers.sh``);
moto from PyPI (the ``test`` extra).
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["FaultProxy", "ORTHANC_PLUGIN", "free_port", "gcs_bucket", "orthanc", "s3_bucket"]

ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
_HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout_s: float, auth: tuple[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url)
    if auth:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    while True:
        try:
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: the server did not answer within {timeout_s:g} s") from None
            time.sleep(0.1)


@contextmanager
def orthanc(folder: Path, files: Iterable[Path] = (), *, users: dict[str, str] | None = None, timeout_s: float = 30.0) -> Iterator[str]:
    """Run Orthanc with its DICOMweb plugin on loopback, storing in ``folder``, loaded with ``files``.

    Yields
    ------
    str
        Its HTTP root, ``http://127.0.0.1:PORT`` (DICOMweb under ``/dicom-web``).
    """
    binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(binary).exists() or not Path(ORTHANC_PLUGIN).exists():
        raise FileNotFoundError("Orthanc or its DICOMweb plugin is missing; run scripts/install_servers.sh")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "dicomml-test",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": users or {},
        "Plugins": [ORTHANC_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpThreadsCount": 64,  # more than one client keeps connections open: each holds a thread
        "StableAge": 1,
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    with open(folder / "orthanc.log", "wb") as log:
        process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    root = f"http://{_HOST}:{port}"
    auth = next(iter(users.items())) if users else None
    try:
        _wait(f"{root}/system", timeout_s, auth)
        for path in files:
            request = urllib.request.Request(f"{root}/instances", data=Path(path).read_bytes(), method="POST")
            if auth:
                import base64

                request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
            with urllib.request.urlopen(request, timeout=timeout_s):
                pass
        yield root
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def s3_bucket(bucket: str, objects: dict[str, bytes], *, timeout_s: float = 30.0) -> Iterator[str]:
    """Run moto's S3 server on loopback with one anonymous-read bucket holding ``objects``.

    Yields
    ------
    str
        The endpoint URL, ``http://127.0.0.1:PORT``.
    """
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    port = free_port()
    server = ThreadedMotoServer(ip_address=_HOST, port=port, verbose=False)
    server.start()
    endpoint = f"http://{_HOST}:{port}"
    try:
        _wait(f"{endpoint}/moto-api/", timeout_s)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket=bucket)
        # moto checks anonymous HEAD against an "s3:HeadObject" action (S3 itself maps HEAD to GetObject)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject", "s3:ListBucket", "s3:HeadObject"],
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        }
        client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        for key, data in objects.items():
            client.put_object(Bucket=bucket, Key=key, Body=data)
        yield endpoint
    finally:
        server.stop()


@contextmanager
def gcs_bucket(bucket: str, objects: dict[str, bytes]) -> Iterator[str]:
    """Run gcp-storage-emulator (the GCS JSON API, in memory) on loopback with one bucket holding ``objects``.

    gcsfs reaches it with ``{"endpoint_url": URL, "token": "anon"}``; its
    experimental bucket-type lookup (a gRPC call the emulator does not
    serve) must be off: ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` in the
    environment before gcsfs is imported.

    Yields
    ------
    str
        The endpoint URL, ``http://127.0.0.1:PORT``.
    """
    import gcsfs
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server(_HOST, port, in_memory=True, default_bucket=bucket)
    server.start()
    endpoint = f"http://{_HOST}:{port}"
    try:
        fs = gcsfs.GCSFileSystem(endpoint_url=endpoint, token="anon", skip_instance_cache=True)
        fs.pipe({f"{bucket}/{key}": value for key, value in objects.items()})
        yield endpoint
    finally:
        server.stop()


class FaultProxy:
    """An HTTP proxy on loopback that adds latency and injects faults, one per request, in order.

    Faults: ``"503"`` (or any status), ``"delay:S"`` (seconds), ``"truncate"``
    (the body cut in half, the connection dropped), ``"truncate-multipart"``
    (half the body with a matching Content-Length: a multipart body without
    its closing boundary), ``"reset"`` (the connection reset, no answer).

    Parameters
    ----------
    upstream
        ``http://127.0.0.1:PORT`` of the server behind it.
    latency_s
        Added to every request.
    """

    def __init__(self, upstream: str, latency_s: float = 0.0) -> None:
        self.upstream = upstream.removeprefix("http://").rstrip("/")
        self.latency_s = latency_s
        self.faults: deque[str] = deque()
        #: (path substring, fault): applied to every matching request while set.
        self.rules: list[tuple[str, str]] = []
        self.requests = 0
        self.bytes_out = 0
        #: Requests being answered now, and the most at once since the proxy started.
        self.in_flight = self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._upstreams = threading.local()  # one kept connection to the server per serving thread
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body leave in one segment: Nagle plus delayed ACKs would add ~40 ms a request
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.in_flight += 1
                    proxy.peak_in_flight = max(proxy.peak_in_flight, proxy.in_flight)
                try:
                    proxy._forward(self)
                finally:
                    with proxy._lock:
                        proxy.in_flight -= 1

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _forward

        self._server = ThreadingHTTPServer((_HOST, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{_HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def inject(self, *faults: str) -> None:
        """Faults for the next requests, one each."""
        with self._lock:
            self.faults.extend(faults)

    def _next_fault(self, path: str) -> str | None:
        with self._lock:
            self.requests += 1
            if self.faults:
                return self.faults.popleft()
            return next((fault for part, fault in self.rules if part in path), None)

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        fault = self._next_fault(handler.path)
        if self.latency_s:
            time.sleep(self.latency_s)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        if fault == "reset":
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            handler.connection.close()
            return
        if fault and fault.isdigit():
            handler.send_response(int(fault))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if fault and fault.startswith("delay:"):
            time.sleep(float(fault.split(":", 1)[1]))
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("connection", "keep-alive")}
        response, data = self._upstream(handler.command, handler.path, body, headers)
        cut = data[: len(data) // 2] if fault in ("truncate", "truncate-multipart") else data
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "content-length", "connection", "keep-alive"):
                handler.send_header(key, value)
        if handler.command == "HEAD":  # no body came: the upstream's length stands
            handler.send_header("Content-Length", response.getheader("Content-Length") or "0")
        else:
            handler.send_header("Content-Length", str(len(cut) if fault == "truncate-multipart" else len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(cut)
            with self._lock:
                self.bytes_out += len(cut)
        if fault == "truncate":
            handler.close_connection = True
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)

    def _upstream(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[http.client.HTTPResponse, bytes]:
        """The server's whole answer, over this thread's kept connection (a new one if the server closed it)."""
        for attempt in range(2):
            connection = getattr(self._upstreams, "connection", None)
            if connection is None:
                connection = self._upstreams.connection = http.client.HTTPConnection(self.upstream, timeout=60)
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                self._upstreams.connection = None
                if attempt:
                    raise
                continue
            if response.will_close:
                connection.close()
                self._upstreams.connection = None
            return response, data
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
