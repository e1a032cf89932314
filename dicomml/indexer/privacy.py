"""Private data: the salted ``patient_key``, where the salt lives, and source names fit to store.

The salt never enters the manifest. It is given explicitly, or generated once
(256 random bits) and kept in the user's config folder
(``~/.config/dicomml/salt``, mode 0600), so every manifest this user builds
hashes one patient to one key, and a reader of a manifest alone cannot test
guessed PatientIDs against the keys. The manifest stores only ``salt_id``, a
hash of the salt, so that a rerun with another salt is refused instead of
mixing two key spaces.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from dicomml.indexer.schema import PHI_FIELDS
from dicomml.paths import is_url

__all__ = ["WITHHELD", "patient_key", "resolve_salt", "salt_id", "storable_source"]

#: What a manifest stores instead of a query value naming a patient (the same for every value, so reruns compare equal).
WITHHELD = "WITHHELD"


def patient_key(patient_id: str, salt: bytes) -> str | None:
    """Salted SHA-256 of a PatientID, 16 hex digits; None for an empty ID.

    Examples
    --------
    >>> patient_key("12345", b"salt")
    '8007a139ecf7b07f'
    """
    if not patient_id:
        return None
    return hashlib.sha256(salt + b"\x1f" + patient_id.encode("utf-8")).hexdigest()[:16]


def salt_id(salt: bytes) -> str:
    """A hash that identifies a salt without revealing it (16 hex digits)."""
    return hashlib.sha256(b"dicomml salt id\x1f" + salt).hexdigest()[:16]


def resolve_salt(salt: str | bytes | None = None, config_dir: str | os.PathLike[str] | None = None) -> bytes:
    """The salt to use: ``salt`` if given, else the user's stored salt, created on first use.

    Parameters
    ----------
    salt
        An explicit salt; wins over the stored one.
    config_dir
        Folder of the stored salt; default ``~/.config/dicomml``.

    Returns
    -------
    bytes

    Examples
    --------
    >>> resolve_salt("my project salt")
    b'my project salt'
    """
    if salt is not None:
        return salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)
    folder = Path(config_dir) if config_dir is not None else Path.home() / ".config" / "dicomml"
    path = folder / "salt"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def storable_source(name: str, include_phi: bool) -> str:
    """A source's name as a manifest stores it: no credentials, and no identifiers unless ``include_phi``.

    Credentials in a URL (``user:password@``) are dropped always. Without
    ``include_phi``, the values of query parameters (QIDO-RS filters of a
    DICOMweb URL) that name a direct identifier of :data:`~dicomml.indexer.schema.PHI_FIELDS`,
    by keyword or tag (``PatientID``, ``00100010``, ``...Sequence.PatientID``),
    become :data:`WITHHELD`; every other part stays as written. A local path is
    returned as it is.

    Parameters
    ----------
    name
        The source as given (a path or URL).
    include_phi
        Keep identifiers, as the manifest's rows do.

    Returns
    -------
    str

    Examples
    --------
    >>> storable_source("dicomweb+https://pacs/dicom-web?PatientID=123&Modality=CT", include_phi=False)
    'dicomweb+https://pacs/dicom-web?PatientID=WITHHELD&Modality=CT'
    """
    if not is_url(name):
        return name
    split = urlsplit(name)
    query = split.query
    if query and not include_phi:
        identifiers = _identifier_keys()
        parts = [part.partition("=") for part in query.split("&")]
        query = "&".join(
            f"{key}={WITHHELD}" if sep and identifiers & set(unquote_plus(key).lower().split(".")) else key + sep + value
            for key, sep, value in parts
        )
    return urlunsplit(split._replace(netloc=split.netloc.rpartition("@")[2], query=query))


def _identifier_keys() -> set[str]:
    """QIDO-RS attribute names of the direct identifiers, lowercase: keywords and ``ggggeeee`` tags."""
    from pydicom.datadict import keyword_for_tag

    tags = [tag for tag, _ in PHI_FIELDS.values()]
    return {keyword_for_tag(tag).lower() for tag in tags} | {f"{tag:08x}" for tag in tags}
