"""Private data: the salted ``patient_key`` and where the salt lives.

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

__all__ = ["patient_key", "resolve_salt", "salt_id"]


def patient_key(patient_id: str, salt: bytes) -> str | None:
    """Salted SHA-256 of a PatientID, 16 hex digits; None for an empty ID.

    Examples
    --------
    >>> patient_key("12345", b"salt")
    '0d8b61ef30fdbe3d'
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
