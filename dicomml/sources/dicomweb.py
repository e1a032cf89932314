"""DICOMweb servers: QIDO-RS finds series and instances, WADO-RS metadata builds the rows, WADO-RS loads.

A source URL is ``dicomweb+http(s)://host/root``, optionally narrowed to
``.../studies/{uid}`` or ``.../studies/{uid}/series/{uid}``, with QIDO-RS
query parameters in its query string (``?Modality=CT&StudyDate=20200101-``).
An instance is recorded as its WADO-RS retrieve URL with the same
``dicomweb+`` prefix; no file is downloaded to index it. The metadata
(DICOM JSON, no pixel data) is turned back into the bytes of a header, so
the indexer's one header reader makes the rows: the pixel data element is
declared with the length the pixel module implies (and never read), and
binary values the server leaves as bulk data are fetched only where the rows
need them (the Siemens CSA image header of a mosaic).

Metadata goes through dicomweb-client. Series are searched with a plain GET
because dicomweb-client escapes the wildcards of a QIDO-RS value, which some
servers (Orthanc) then match literally; instances are fetched with a plain GET
because dicomweb-client returns the parts of a multipart body that was cut
short as if whole; here a body without its closing boundary is an error,
retried.
"""

from __future__ import annotations

import base64
import functools
import io
import re
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

import numpy as np

from dicomml.dicom.meta import LONG_VRS, file_meta
from dicomml.errors import InvalidDicomFileError, MissingDependencyError, RemoteSourceError
from dicomml.paths import refuse_credentials
from dicomml.sources._remote import PrefetchedFile, Remote, Transient, shown, with_retries

if TYPE_CHECKING:
    import requests

    from dicomml.indexer.crawl import CrawlError, Entry, Files

__all__ = ["DicomWebSource", "is_dicomweb", "server"]

SCHEME = "dicomweb+"
_PATH = re.compile(
    r"^(?P<base>.*?)(?:/studies/(?P<study>[^/]+)(?:/series/(?P<series>[^/]+)"
    r"(?:/instances/(?P<instance>[^/]+))?)?)?/?$"
)
_ENCAPSULATED_EXCEPT = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})
_CSA_IMAGE = "00291010"
_IMPLICIT = "1.2.840.10008.1.2"
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"
#: A whole instance, in the transfer syntax the server holds it in.
ACCEPT_INSTANCE = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: A series' metadata, and the transfer-syntax probes still running for its instances: each ``{sop: syntax}``,
#: with the SOP Instance UID it asks for (None: the whole series).
_Pending = tuple[list[dict[str, Any]], list[tuple["str | None", "Future[dict[str, str]]"]]]
#: Bytes counted for each header when deciding whether a series is small enough to be asked for whole.
_HEADER_ALLOWANCE = 16_384
#: Answers smaller than this are read to their end after a transfer-syntax probe, so that the connection is kept.
_KEEP_BELOW = 1 << 20
#: Instances whose metadata the walk keeps for the scan (bounded memory: beyond, it is requested again).
KEEP_INSTANCES = 50_000
#: Characters a QIDO-RS value keeps unescaped: PS3.18's wildcards and value separator (Orthanc decodes no %2A or %3F).
_QIDO_SAFE = "*?,"


def is_dicomweb(url: str) -> bool:
    """Whether ``url`` names a DICOMweb server (``dicomweb+http://`` or ``dicomweb+https://``)."""
    return url.startswith(SCHEME)


def _parts(url: str) -> dict[str, Any]:
    split = urlsplit(url.removeprefix(SCHEME))
    if split.scheme not in ("http", "https") or not split.netloc:
        raise RemoteSourceError(f"{shown(url)}: not a DICOMweb URL; write dicomweb+https://host/dicom-web", path=shown(url))
    refuse_credentials(url, RemoteSourceError, "pass them as auth (the CLI reads DICOMML_DICOMWEB_TOKEN or DICOMML_DICOMWEB_USER/PASSWORD)")
    match = _PATH.match(split.path)
    assert match is not None  # the pattern matches every path
    base = f"{split.scheme}://{split.netloc}{match['base']}"
    return {
        "base": base,
        "study": match["study"],
        "series": match["series"],
        "instance": match["instance"],
        "query": _query(url, split.query),
    }


def _query(url: str, text: str) -> dict[str, str]:
    """QIDO-RS parameters of a URL; a key given twice would keep only its last value."""
    pairs = parse_qsl(text)
    repeated = sorted({key for key, _ in pairs if sum(k == key for k, _ in pairs) > 1})
    if repeated:
        raise RemoteSourceError(
            f"{shown(url)}: {', '.join(repeated)} given more than once; give several values as one comma-separated parameter (Modality=MR,SEG)",
            path=shown(url),
        )
    return dict(pairs)


def _auth_header(auth: Any) -> dict[str, str]:
    """The Authorization header of a bearer token or ``(user, password)``; none without credentials."""
    if auth is None:
        return {}
    if isinstance(auth, str):
        return {"Authorization": f"Bearer {auth}"}
    return {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()}


def _session(remote: Remote) -> requests.Session:
    import requests
    from requests.adapters import HTTPAdapter

    timeout = remote.timeout_s

    class _Adapter(HTTPAdapter):  # dicomweb-client passes its own 20 s: the source's limit instead
        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs["timeout"] = timeout
            return super().send(request, **kwargs)

    session = requests.Session()
    # one pool of at most `concurrency` connections for every thread: idle kept-alive connections hold server threads
    adapter = _Adapter(pool_connections=4, pool_maxsize=remote.concurrency, pool_block=True, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(_auth_header(remote.auth))
    return session


def server(url: str) -> str:
    """The server part of a DICOMweb URL (``http(s)://host/root``), which one :class:`DicomWebSource` reads.

    Examples
    --------
    >>> server("dicomweb+https://pacs.example/dicom-web/studies/1.2/series/3.4?Modality=CT")
    'https://pacs.example/dicom-web'
    """
    return str(_parts(url)["base"])


class DicomWebSource:
    """A DICOMweb server (or studies or series of it), read as the indexer and the loaders need.

    Parameters
    ----------
    url
        ``dicomweb+http(s)://host/root[/studies/{uid}[/series/{uid}]][?QIDO parameters]``, or several
        such URLs of one server (a URL list): read over one session, each URL's series in the order of
        the URLs, a series that two of them name once.
    remote
        Credentials, concurrency, retries.
    """

    protocol = ("dicomweb",)

    def __init__(self, url: str | Sequence[str], remote: Remote) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        self.url = self.urls[0]  # named (as shown() words it) in the messages of calls that concern the server
        self.base: str = server(self.url)
        scopes = []
        for one in self.urls:
            parts = _parts(one)
            if parts["instance"]:
                raise RemoteSourceError(f"{shown(one)}: an instance URL; index its series (the URL up to /series/{{uid}})", path=shown(one))
            if parts["base"] != self.base:
                raise RemoteSourceError(
                    f"{shown(one)}: on another server than {shown(self.url)}; one source reads one server", path=shown(one)
                )
            scopes.append((parts["study"], parts["series"], parts["query"]))
        #: Per URL: study UID, series UID (or None) and QIDO-RS parameters.
        self.scopes: list[tuple[str | None, str | None, dict[str, str]]] = scopes
        self.remote = remote
        self._opened: tuple[requests.Session, Any] | None = None
        self._limit = threading.BoundedSemaphore(remote.concurrency)
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str], _Pending] = {}
        self._probing: ThreadPoolExecutor | None = None

    def __getstate__(self) -> dict[str, Any]:  # sessions, locks and clients are rebuilt where unpickled
        return {"url": self.urls, "remote": self.remote}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["remote"])  # type: ignore[misc]

    def _open(self) -> tuple[requests.Session, Any]:
        """The session and the dicomweb-client over it, shared by every thread (opened on first use)."""
        with self._lock:
            if self._opened is None:
                try:
                    from dicomweb_client import DICOMwebClient
                except ImportError as exc:
                    raise MissingDependencyError(
                        f"{shown(self.url)}: DICOMweb sources need dicomweb-client, which is not installed; pip install 'dicomml[dicomweb]'",
                        path=shown(self.url),
                    ) from exc
                session = _session(self.remote)
                client = DICOMwebClient(self.base, session=session)
                client.set_http_retry_params(retry=False)  # retried here, with the source's limits
                self._opened = session, client
            return self._opened

    @property
    def _client(self) -> Any:
        return self._open()[1]

    @property
    def _session(self) -> requests.Session:
        return self._open()[0]

    def _call(self, what: str, url: str, call: Any) -> Any:
        def limited() -> Any:
            with self._limit:
                return call()

        return with_retries(limited, url, self.remote, what)

    def _url(self, study: str, series: str | None = None, instance: str | None = None) -> str:
        out = f"{SCHEME}{self.base}/studies/{study}"
        out += f"/series/{series}" if series else ""
        return out + (f"/instances/{instance}" if instance else "")

    def _http(self, url: str) -> str:
        """The server's own URL of an instance URL."""
        parts = _parts(url)
        return f"{self.base}/studies/{parts['study']}/series/{parts['series']}/instances/{parts['instance']}"

    def check(self) -> None:
        """Ask the server once, so that a wrong URL or refused credentials fail before indexing."""
        self._call("searching for studies", self.url, lambda: self._client.search_for_studies(limit=1, fields=["StudyInstanceUID"]))

    # -- crawl -------------------------------------------------------------------------------
    def _series(self) -> list[tuple[str, str]]:
        """(study, series) of each URL, in the order of the URLs, each once."""
        found: dict[tuple[str, str], None] = {}
        for url, (study, series, query) in zip(self.urls, self.scopes):
            if series and not query:
                found[(str(study), series)] = None
                continue
            # a series URL with a query is searched too, so that its filter applies as on a study URL
            filters = {**query, "SeriesInstanceUID": series} if series else query
            answer = self._call("searching for series (QIDO-RS)", url, functools.partial(self._search_series, study, filters))
            found.update(dict.fromkeys(sorted({(_value(s, "0020000D"), _value(s, "0020000E")) for s in answer})))
        return list(found)

    def _search_series(self, study: str | None, filters: dict[str, str]) -> list[dict[str, Any]]:
        """QIDO-RS series matching ``filters``, page after page until one comes back empty.

        A plain GET, not dicomweb-client's search, which escapes ``*`` and ``?``
        (quote_plus) where PS3.18 writes them bare, and a space as ``+``.
        """
        url = f"{self.base}/studies/{study}/series" if study else f"{self.base}/series"
        found: list[dict[str, Any]] = []
        while True:
            query = "&".join(f"{quote(k, safe='')}={quote(v, safe=_QIDO_SAFE)}" for k, v in {**filters, "offset": str(len(found))}.items())
            response = self._session.get(f"{url}?{query}", headers={"Accept": "application/dicom+json, application/json"})
            response.raise_for_status()
            page = response.json() if response.content else []
            page = [page] if isinstance(page, dict) else page  # some servers answer one match as a bare object
            if not page:
                return found
            found.extend(page)

    def _requested(self, key: tuple[str, str]) -> _Pending:
        """WADO-RS metadata of one series, with the transfer-syntax probes of its instances started.

        A server that names no transfer syntax in the metadata ((0002,0010)
        or (0008,3002) Available Transfer Syntax UID) is asked for the start
        of each instance, whose file meta information says it; a series of
        small images (under :data:`_KEEP_BELOW` bytes of pixel data in all) is
        asked for whole, in one request instead of one per instance. The
        probes run in the background: the walk goes on, and rows are built
        from series already answered while later ones are still asked.
        """
        folder = self._url(*key)
        items: list[dict[str, Any]] = self._call(
            "reading series metadata (WADO-RS)", folder, lambda: self._client.retrieve_series_metadata(*key)
        )
        with self._lock:
            if self._probing is None:
                self._probing = ThreadPoolExecutor(self.remote.concurrency, thread_name_prefix="dicomweb-probe")
            probing = self._probing
        unnamed = [item for item in items if not _syntax(item)]
        sizes = [_pixel_bytes(item) for item in unnamed]
        images = [n for n in sizes if n is not None]
        if len(unnamed) > 1 and len(images) == len(unnamed) and sum(images) + len(images) * _HEADER_ALLOWANCE < _KEEP_BELOW:
            return items, [(None, probing.submit(self._series_syntaxes, key))]
        return items, [(sop, probing.submit(self._transfer_syntax, key, sop)) for sop in (_value(item, "00080018") for item in unnamed)]

    def _metadata(self, key: tuple[str, str]) -> tuple[list[dict[str, Any]], dict[str, RemoteSourceError]]:
        """The metadata of one series (kept from the walk, else requested), each instance's transfer syntax in it,
        and the instances whose own probe failed (each with its error, which names its URL)."""
        with self._lock:
            kept = self._kept.pop(key, None)
        items, probes = kept if kept is not None else self._requested(key)
        found: dict[str, str] = {}
        failed: dict[str, RemoteSourceError] = {}
        for sop, probe in probes:
            try:
                found.update(probe.result())
            except RemoteSourceError as exc:
                if sop is None:  # the series asked for whole: every instance shares the failure
                    raise
                failed[sop] = exc
        for item in items:
            sop = _value(item, "00080018")
            if _syntax(item) or sop in failed:
                continue
            try:  # an instance the series' answer lacked (stored meanwhile) is asked alone
                syntax = found[sop] if sop in found else self._transfer_syntax(key, sop)[sop]
            except RemoteSourceError as exc:
                failed[sop] = exc
                continue
            item["00020010"] = {"vr": "UI", "Value": [syntax]}
        return items, failed

    def _get(self, url: str, what: str, read: Any) -> Any:
        """``read(response)`` of a GET of one of our retrieve URLs, in the stored transfer syntax, through urllib3 itself.

        The session's pool, without requests' work per call, and
        uncompressed: these are many small requests.
        """
        import requests
        import urllib3

        pool = self._session.get_adapter(self.base).poolmanager  # type: ignore[attr-defined]  # our HTTPAdapter, mounted for http(s)
        headers = {"Accept": ACCEPT_INSTANCE, "Accept-Encoding": "identity", **_auth_header(self.remote.auth)}

        def get() -> Any:
            try:
                response = pool.request(
                    "GET", url.removeprefix(SCHEME), headers=headers, preload_content=False, retries=False, timeout=self.remote.timeout_s
                )
                try:
                    if response.status >= 400:
                        failed = requests.Response()
                        failed.status_code = response.status
                        raise requests.HTTPError(f"HTTP {response.status}", response=failed)
                    return read(response)
                finally:
                    response.release_conn()
            except urllib3.exceptions.HTTPError as exc:  # resets, timeouts, short reads: worth another try
                raise Transient(f"{type(exc).__name__}: {exc}") from exc

        return self._call(what, url, get)

    def _transfer_syntax(self, key: tuple[str, str], sop: str) -> dict[str, str]:
        """``{sop: transfer syntax}`` of one instance, from the file meta information at the start of its retrieve."""

        def read(response: Any) -> str:
            head = b""
            while (found := _meta_value(head, 0x0010)) is None and (chunk := response.read(16384)):
                head += chunk
            if found is None:
                raise Transient("the answer ended before the file meta information named its transfer syntax")
            if int(response.headers.get("Content-Length") or _KEEP_BELOW) < _KEEP_BELOW:
                response.drain_conn()  # a small rest is read so the connection serves the next probe
            else:
                response.close()  # the pixel data stays unread
            return found

        return {sop: str(self._get(self._url(*key, sop), "reading the transfer syntax (WADO-RS)", read))}

    def _series_syntaxes(self, key: tuple[str, str]) -> dict[str, str]:
        """``{sop: transfer syntax}`` of every instance of a series of small images, from one retrieve of the series."""

        def read(response: Any) -> dict[str, str]:
            parts = _multipart(response.headers.get("Content-Type", ""), response.read())
            return {_meta_value(part, 0x0003) or "": _meta_value(part, 0x0010) or "" for part in parts}

        return dict(self._get(self._url(*key), "reading the transfer syntaxes (WADO-RS)", read))

    def walk(self) -> Iterator[Files | CrawlError]:
        """One chunk of instance URLs per series: QIDO-RS finds the series, their metadata names the instances.

        The metadata (one request per series, concurrently) is what the
        rows are made from, so up to :data:`KEEP_INSTANCES` instances' worth
        is kept for the scan instead of being requested twice.
        """
        from dicomml.indexer.crawl import CrawlError, Files

        def read(key: tuple[str, str]) -> _Pending | RemoteSourceError:
            try:
                return self._requested(key)
            except RemoteSourceError as exc:
                return exc

        kept = 0
        with ThreadPoolExecutor(self.remote.concurrency) as pool:
            for key, answer in zip(series := self._series(), pool.map(read, series)):
                folder = self._url(*key)
                if isinstance(answer, RemoteSourceError):
                    yield CrawlError(folder, "unreachable", str(answer))
                    continue
                items = answer[0]
                if kept + len(items) <= KEEP_INSTANCES:
                    kept += len(items)
                    with self._lock:
                        self._kept[key] = answer
                urls = [self._url(*key, sop) for sop in sorted(_value(item, "00080018") for item in items)]
                yield Files(folder, urls, [0] * len(urls), [0] * len(urls), urls)

    # -- scan --------------------------------------------------------------------------------
    def open(self, path: str, mode: str = "rb") -> PrefetchedFile:
        """The header of one instance, rebuilt from its series' metadata."""
        return self.prefetch_urls([path])[path]

    def prefetch(self, entries: Sequence[Entry]) -> dict[str, PrefetchedFile]:
        """Header bytes of every entry, from one WADO-RS metadata request per series, concurrently."""
        return self.prefetch_urls([e.open_path for e in entries])

    def prefetch_urls(self, urls: Sequence[str]) -> dict[str, PrefetchedFile]:
        by_series: dict[tuple[str, str], list[str]] = {}
        for url in urls:
            parts = _parts(url)
            by_series.setdefault((parts["study"], parts["series"]), []).append(url)

        def metadata(key: tuple[str, str]) -> dict[str, PrefetchedFile]:
            try:
                items, failed = self._metadata(key)
            except RemoteSourceError as exc:
                return {url: PrefetchedFile(url, 0, error=exc) for url in by_series[key]}
            by_uid = {_value(item, "00080018"): item for item in items}
            out = {}
            for url in by_series[key]:
                sop = _parts(url)["instance"]
                if sop in failed:
                    out[url] = PrefetchedFile(url, 0, error=failed[sop])
                    continue
                item = by_uid.get(sop)
                if item is None:
                    error = RemoteSourceError(
                        f"{url}: the series' metadata lacks this instance; it was deleted meanwhile, index again", path=url
                    )
                    out[url] = PrefetchedFile(url, 0, error=error)
                    continue
                try:
                    buf, size = header_bytes(item, lambda uri, u=url: self._bulk(uri, u))
                except RemoteSourceError as exc:
                    out[url] = PrefetchedFile(url, 0, error=exc)
                    continue
                except Exception as exc:  # metadata pydicom cannot turn back into a header: an error row
                    bad = InvalidDicomFileError(
                        f"{url}: the server's metadata cannot be read as a header ({type(exc).__name__}: {exc})", path=url
                    )
                    out[url] = PrefetchedFile(url, 0, error=bad)
                    continue
                out[url] = PrefetchedFile(url, size, buf)
            return out

        result: dict[str, PrefetchedFile] = {}
        threads = min(self.remote.concurrency, max(1, len(by_series)))
        with ThreadPoolExecutor(threads) as pool:
            for part in pool.map(metadata, list(by_series)):
                result.update(part)
        return result

    def _bulk(self, uri: str, url: str) -> bytes:
        # Servers name bulk data by the host they think they have (none, or their own behind a proxy):
        # the part from /studies/ on is theirs, the host is the one we reach them by.
        if "/studies/" in uri:
            uri = self.base + uri[uri.index("/studies/") :]
        return self._call(
            "reading bulk data (WADO-RS)",
            url,
            lambda: bytes(self._client.retrieve_bulkdata(uri, media_types=("application/octet-stream",))[0]),
        )

    # -- load --------------------------------------------------------------------------------
    def read_instance(self, url: str) -> io.BytesIO:
        """One whole instance (WADO-RS), in the transfer syntax it was stored in.

        Raises
        ------
        RemoteSourceError
            Naming ``url``, when the server keeps failing or cuts the body short.
        """
        http = self._http(url)

        def get() -> bytes:
            response = self._session.get(http, headers={"Accept": ACCEPT_INSTANCE})
            response.raise_for_status()
            return _multipart(response.headers.get("Content-Type", ""), response.content)[0]

        return io.BytesIO(self._call("retrieving the instance (WADO-RS)", url, get))


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _syntax(item: dict[str, Any]) -> str:
    """The transfer syntax the metadata names: (0002,0010), else the first (0008,3002) Available Transfer Syntax UID."""
    return _value(item, "00020010") or _value(item, "00083002")


def _number(item: dict[str, Any], tag: str, default: int) -> int:
    found = (item.get(tag) or {}).get("Value") or [default]
    return int(found[0] if found[0] is not None else default)


def _pixel_bytes(item: dict[str, Any]) -> int | None:
    """The size of an image's pixel data as its metadata describes it uncompressed; None for an object without pixels."""
    if not _number(item, "00280010", 0):
        return None
    n = _number(item, "00280010", 0) * _number(item, "00280011", 0) * _number(item, "00280008", 1) * _number(item, "00280002", 1)
    return (n * _number(item, "00280100", 16) + 7) // 8


def _meta_value(head: bytes, element_number: int) -> str | None:
    """Element (0002,xxxx) of the file meta information at the start of a Part 10 object; None while it is not all there."""
    at = head.find(b"DICM")
    if at < 0:
        return None if len(head) < 1 << 16 else ""
    end = at + 4
    for element, value, length in file_meta(head, end):
        end = value + length
        if end > len(head):
            return None
        if element == element_number:
            return head[value:end].decode("latin-1").rstrip("\0 ")
    return "" if end + 8 <= len(head) and head[end : end + 2] != b"\x02\x00" else None  # absent, or not all there yet


def _multipart(content_type: str, body: bytes) -> list[bytes]:
    """The DICOM parts of a WADO-RS answer; a multipart body must end with its closing boundary."""
    found = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if not content_type.lower().startswith("multipart/") or found is None:
        return [body]  # a single application/dicom body; its Content-Length was checked
    marker = b"--" + found.group(1).encode()
    close = body.rfind(marker + b"--")
    start = body.find(marker)
    if close < 0 or start < 0:
        raise Transient("the multipart body ends without its closing boundary (truncated)")
    out = []
    for part in body[start + len(marker) : close].split(b"\r\n" + marker):
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise Transient("a multipart part has no header end (truncated)")
        out.append(content.removesuffix(b"\r\n"))
    return out


#: Explicit VRs whose length takes 4 bytes (after 2 reserved ones).
_NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_SINGLE_TEXT = frozenset({"LT", "ST", "UT", "UR"})
_PIXEL_KEYS = frozenset({"7FE00010", "7FE00008", "7FE00009"})


#: Bytes per word of the binary VRs whose words a big endian object stores swapped (DICOM JSON gives them little endian).
_WORDS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _element(tag: int, vr: str, value: bytes, implicit: bool = False, order: str = "<") -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB", "UN") else b" "
    if implicit:
        return struct.pack(f"{order}HHL", tag >> 16, tag & 0xFFFF, len(value)) + value
    if vr.encode() in LONG_VRS:
        return struct.pack(f"{order}HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(value)) + value
    return struct.pack(f"{order}HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def _text(value: Any, vr: str) -> str:
    if value is None:
        return ""
    if vr == "PN" and isinstance(value, dict):
        return "=".join(value.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic")).rstrip("=")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and vr == "IS" else repr(value)
    return str(value)


def _encode(item: dict[str, Any], bulk: Any, top: bool, implicit: bool, order: str) -> bytes:
    """DICOM JSON of one dataset as elements (explicit or implicit VR, little ``<`` or big ``>`` endian), in tag order."""
    out = []
    for key in sorted(item, key=lambda k: int(k, 16)):
        tag = int(key, 16)
        if top and (key.upper() in _PIXEL_KEYS or tag >> 16 == 0x0002):
            continue
        element = item[key]
        vr = element.get("vr", "UN")
        values = element.get("Value")
        if key.upper() == "00080005":
            value = b"ISO_IR 192"  # every text value below is written as UTF-8
        elif vr == "SQ":
            value = b"".join(
                struct.pack(f"{order}HHL", 0xFFFE, 0xE000, len(body)) + body
                for body in (_encode(child or {}, bulk, False, implicit, order) for child in values or [])
            )
        elif vr in _NUMBERS:
            value = struct.pack(f"{order}{len(values or [])}{_NUMBERS[vr]}", *(values or []))
        elif vr == "AT":
            value = b"".join(struct.pack(f"{order}HH", int(v, 16) >> 16, int(v, 16) & 0xFFFF) for v in values or [])
        elif "InlineBinary" in element:
            value = base64.b64decode(element["InlineBinary"])
            if order == ">" and vr in _WORDS:
                value = np.frombuffer(value, f"<u{_WORDS[vr]}").byteswap().tobytes()
        elif "BulkDataURI" in element:
            value = bulk(key.upper(), element["BulkDataURI"])
        elif vr in ("OB", "OD", "OF", "OL", "OV", "OW", "UN"):
            value = b""
        else:
            texts = [_text(v, vr) for v in values or []]
            value = (texts[0] if vr in _SINGLE_TEXT and texts else "\\".join(texts)).encode("utf-8")
        out.append(_element(tag, vr, value, implicit, order))
    return b"".join(out)


def header_bytes(item: dict[str, Any], bulk: Any) -> tuple[bytes, int]:
    """The bytes of a header rebuilt from one instance's DICOM JSON, and the size the object would have.

    The elements are written by hand in the encoding of the instance's
    transfer syntax (implicit or explicit VR, little or big endian; text as
    UTF-8): through pydicom (``Dataset.from_json`` then ``dcmwrite``) the same
    costs several milliseconds an instance, which bounded indexing a server.
    The pixel data element closes the header, its value left out; a deflated
    instance is deflated whole, its pixel data as zeros (which deflate to
    almost nothing), since a reader inflates the whole dataset.

    Parameters
    ----------
    item
        One instance's DICOM JSON.
    bulk
        ``uri -> bytes``: fetches a bulk data value the rows need.

    Returns
    -------
    (bytes, int)
        The header and the full size the object would have.
    """
    mosaic = "MOSAIC" in [str(v).upper() for v in item.get("00080008", {}).get("Value", [])]
    syntax = _syntax(item)
    implicit, order = syntax == _IMPLICIT, ">" if syntax == _BIG_ENDIAN else "<"

    def fetch(tag: str, uri: str) -> bytes:
        return bulk(uri) if mosaic and tag == _CSA_IMAGE else b""

    sop_class = str((item.get("00080016") or {}).get("Value", [""])[0]).encode()
    meta = _element(0x00020002, "UI", sop_class)
    if syntax:
        meta += _element(0x00020010, "UI", syntax.encode())
    head = b"\0" * 128 + b"DICM" + meta
    dataset = _encode(item, fetch, True, implicit, order)
    length = _pixel_bytes(item)
    if length is None:
        return _whole(head, dataset, syntax)
    if syntax and syntax not in _ENCAPSULATED_EXCEPT:
        # an empty offset table, then one empty fragment a frame: as many fragments as the object holds frames
        element = struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF)
        element += struct.pack("<HHL", 0xFFFE, 0xE000, 0) * (1 + max(1, _number(item, "00280008", 1)))
        element += struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
        return _whole(head, dataset + element, syntax)

    length += length % 2
    element = struct.pack(f"{order}HHL" if implicit else f"{order}HH2sHL", 0x7FE0, 0x0010, *(() if implicit else (b"OW", 0)), length)
    if syntax == _DEFLATED:
        from dicomml.dicom.io import MAX_INFLATED  # past it a reader refuses the object, as it would the file

        return _whole(head, dataset + element + bytes(min(length, MAX_INFLATED + 1)), syntax)
    return head + dataset + element, len(head) + len(dataset) + len(element) + length


def _whole(head: bytes, dataset: bytes, syntax: str) -> tuple[bytes, int]:
    """A header that is the whole object: the dataset deflated when the syntax says so."""
    if syntax == _DEFLATED:
        packer = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
        dataset = packer.compress(dataset) + packer.flush()
    return head + dataset, len(head) + len(dataset)
