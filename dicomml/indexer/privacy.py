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
import re
import secrets
from pathlib import Path
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from dicomml.errors import ConfigError
from dicomml.indexer.schema import PHI_FIELDS
from dicomml.paths import is_url

__all__ = ["WITHHELD", "patient_key", "resolve_salt", "salt_id", "storable_source", "withhold_identifiers"]

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

    A salt is a secret: with an empty one, ``patient_key`` is a plain hash
    that anyone can recompute from guessed PatientIDs, so an empty or blank
    salt (given, or a stored file that holds nothing) is refused. A long
    random one (32 or more characters, as the generated one) is best.

    Parameters
    ----------
    salt
        An explicit salt; wins over the stored one.
    config_dir
        Folder of the stored salt; default ``~/.config/dicomml``.

    Returns
    -------
    bytes

    Raises
    ------
    ConfigError
        If ``salt``, or the stored salt, is empty or only blanks.

    Examples
    --------
    >>> resolve_salt("my project salt")
    b'my project salt'
    """
    if salt is not None:
        given = salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)
        if not given.strip():
            raise ConfigError(
                "the salt is empty: patient_key would be a plain hash of the PatientID, open to guessing; "
                "give a secret salt, or none to use the stored one (~/.config/dicomml/salt)"
            )
        return given
    folder = Path(config_dir) if config_dir is not None else Path.home() / ".config" / "dicomml"
    path = folder / "salt"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # written whole under another name, then linked: a process that finds the file never reads it half written
        draft = folder / f".salt-{secrets.token_hex(8)}"
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:  # another process made it first
            pass
        finally:
            draft.unlink()
    stored = path.read_bytes().strip()
    if not stored:
        raise ConfigError(
            f"{path}: the stored salt is empty, which would leave patient_key open to guessed PatientIDs; "
            "delete the file to have a new one made, or give a salt"
        )
    return stored


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
    query = _withheld(split.query) if split.query and not include_phi else split.query
    return urlunsplit(split._replace(netloc=split.netloc.rpartition("@")[2], query=query))


#: A query string inside free text: from ``?`` to a blank, quote or bracket (requests' messages quote ``url: /path?query (``).
_QUERY_IN_TEXT = re.compile(r"\?([^\s'\"()<>]+)")


def withhold_identifiers(text: str) -> str:
    """``text`` with the identifier values of every query string in it withheld, as :func:`storable_source` does.

    For messages that quote a request their caller did not word (an HTTP
    client's reason, which names the URL it asked for).

    Examples
    --------
    >>> withhold_identifiers("Max retries exceeded with url: /dicom-web/series?PatientID=123&offset=0 (Caused by ...)")
    'Max retries exceeded with url: /dicom-web/series?PatientID=WITHHELD&offset=0 (Caused by ...)'
    """
    return _QUERY_IN_TEXT.sub(lambda match: "?" + _withheld(match.group(1)), text)


def _withheld(query: str) -> str:
    """A query string with the values of the parameters that name a direct identifier replaced by :data:`WITHHELD`."""
    identifiers = _identifier_keys()
    parts = [part.partition("=") for part in query.split("&")]
    return "&".join(
        f"{key}={WITHHELD}" if sep and identifiers & set(unquote_plus(key).lower().split(".")) else key + sep + value
        for key, sep, value in parts
    )


def _identifier_keys() -> set[str]:
    """QIDO-RS attribute names of the direct identifiers, lowercase: keywords and ``ggggeeee`` tags."""
    from pydicom.datadict import keyword_for_tag

    tags = [tag for tag, _ in PHI_FIELDS.values()]
    return {keyword_for_tag(tag).lower() for tag in tags} | {f"{tag:08x}" for tag in tags}
