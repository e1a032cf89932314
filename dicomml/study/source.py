"""`StudySource`: what one study sample is made from (no pandas: a Dataset reads it back from a kept list)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["StudySource"]


@dataclass(frozen=True)
class StudySource:
    """What one study sample is made from.

    Attributes
    ----------
    study_uid
        StudyInstanceUID.
    key
        Its cache key: all member series' files, by role, the masks' files and the config.
    members
        ``(role, series key or None)`` in channel order; None is a missing role.
    annotation_keys
        ``(role, annotation key)`` of the SEG / RTSTRUCT objects whose masks
        come along (empty when the config caches no masks).
    """

    study_uid: str
    key: str
    members: tuple[tuple[str, str | None], ...]
    annotation_keys: tuple[tuple[str, str], ...] = ()

    @property
    def series_key(self) -> str:
        """The study UID: what run reports and rank shards name a task by (their ``series_key``)."""
        return self.study_uid

    def to_json(self) -> list[Any]:
        """A JSON-able list that :meth:`from_json` reads back."""
        return [self.study_uid, self.key, [list(m) for m in self.members], [list(a) for a in self.annotation_keys]]

    @classmethod
    def from_json(cls, row: list[Any]) -> StudySource:
        """The source :meth:`to_json` wrote."""
        uid, key, members, annotation_keys = row
        return cls(uid, key, tuple((role, series) for role, series in members), tuple((role, a) for role, a in annotation_keys))
