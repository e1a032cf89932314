"""Which series of each study fills each role: SQL predicates on the manifest, then the tie-break.

Adapter only: per role, the manifest's usable series that match the role's
predicate (:meth:`~dicomml.indexer.manifest.Manifest.usable_series_keys`), with
the latest acquisition time of each for the ``newest`` / ``oldest`` tie-breaks
(:meth:`~dicomml.indexer.manifest.Manifest.series_acquired`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dicomml.errors import ConfigError, ManifestError
from dicomml.indexer.manifest import Manifest
from dicomml.study.config import Role, StudyConfig

__all__ = ["StudyMatch", "match_studies"]


@dataclass(frozen=True)
class StudyMatch:
    """The series each role picked in each study, and why some studies are left out.

    Attributes
    ----------
    table
        One row per study (``study_instance_uid``, ``patient_key``), per role
        ``<role>`` (the series key, or None) and ``<role>_candidates`` (how many
        series matched); ``status`` is ``"ok"``, or says which roles are
        missing or ambiguous; ``usable`` is whether the study makes a sample:
        never without its reference role or with an ambiguity the tie-break
        leaves open, and without another role only under ``missing: empty``.
    roles
        The role names, in channel order.
    """

    table: pd.DataFrame
    roles: tuple[str, ...]

    @property
    def usable(self) -> pd.DataFrame:
        """The studies that make a sample, sorted by study UID."""
        return self.table[self.table["usable"]].reset_index(drop=True)

    @property
    def skipped(self) -> pd.DataFrame:
        """The studies left out, with the reason in ``status``."""
        return self.table[~self.table["usable"]].reset_index(drop=True)

    def summary(self) -> pd.DataFrame:
        """Per role: studies with exactly one match, several (``ambiguous``; resolved by the tie-break or not), none.

        Examples
        --------
        >>> match_studies(manifest, config).summary()  # doctest: +SKIP
          role  matched  ambiguous  unresolved  missing
        0   t1       18          2           0        0
        """
        rows = []
        for role in self.roles:
            n = self.table[f"{role}_candidates"]
            rows.append(
                {
                    "role": role,
                    "matched": int((n == 1).sum()),
                    "ambiguous": int((n > 1).sum()),
                    "unresolved": int(((n > 1) & self.table[role].isna()).sum()),
                    "missing": int((n == 0).sum()),
                }
            )
        return pd.DataFrame(rows, columns=["role", "matched", "ambiguous", "unresolved", "missing"])


def match_studies(manifest: Manifest, config: StudyConfig) -> StudyMatch:
    """Pick, in every study of the manifest, one series per role.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest`.
    config
        The study config.

    Returns
    -------
    StudyMatch

    Raises
    ------
    ConfigError
        If a role's ``where`` is not valid SQL on the ``series`` table.
    """
    table = manifest.usable_studies().copy()
    problems: list[list[str]] = [[] for _ in range(len(table))]
    position = {uid: i for i, uid in enumerate(table["study_instance_uid"])}
    for role in config.roles:
        picked: list[str | None] = [None] * len(table)
        counts = np.zeros(len(table), dtype=np.int64)
        for uid, group in _candidates(manifest, config, role).groupby("study_instance_uid", sort=False):
            i = position.get(uid)
            if i is None:
                continue
            counts[i] = len(group)
            if len(group) > 1 and role.prefer == "none":
                problems[i].append(f"{role.name} ambiguous ({len(group)} series)")
                continue
            picked[i] = str(_ranked(group, role.prefer).iloc[0]["series_key"])
        for missing in np.flatnonzero(counts == 0):
            problems[int(missing)].append(f"{role.name} missing")
        table[role.name] = picked
        table[f"{role.name}_candidates"] = counts
    table["status"] = ["ok" if not p else "; ".join(p) for p in problems]
    # an unresolved ambiguity or a missing reference (with a grid: no role at all) leaves the study out; other missing roles per policy
    blocking = [any("ambiguous" in q or (config.missing == "skip" and "missing" in q) for q in p) for p in problems]
    anchored = table[config.reference].notna() if isinstance(config.reference, str) else table[list(config.role_names)].notna().any(axis=1)
    table["usable"] = anchored & ~np.array(blocking, dtype=bool)
    return StudyMatch(table.reset_index(drop=True), config.role_names)


def _candidates(manifest: Manifest, config: StudyConfig, role: Role) -> pd.DataFrame:
    try:
        keys = manifest.usable_series_keys(role.where)
    except ManifestError as exc:
        raise ConfigError(f"{config.name}: roles.{role.name}.where: {exc}") from None
    return manifest.series_acquired(keys)


def _ranked(group: pd.DataFrame, prefer: str) -> pd.DataFrame:
    """``group`` best first under ``prefer``; the series key breaks the last ties so the choice is stable."""
    g = group.assign(
        acquired=group["acquired"].fillna(""),
        series_number=group["series_number"].fillna(-1),
        voxel=[_voxel(p, s) for p, s in zip(group["pixel_spacing"], group["slice_spacing"])],
    )
    keys: dict[str, list[tuple[str, bool]]] = {
        "newest": [("acquired", False), ("series_number", False)],
        "oldest": [("acquired", True), ("series_number", True)],
        "most_slices": [("n_slices", False)],
        "most_volumes": [("n_volumes", False)],
        "finest": [("voxel", True)],
        "none": [],
    }
    order = keys[prefer] + [("series_key", True)]
    return g.sort_values([k for k, _ in order], ascending=[a for _, a in order], na_position="last", kind="stable")


def _voxel(pixel_spacing: Any, slice_spacing: Any) -> float:
    try:
        return float(np.prod(np.asarray(pixel_spacing, dtype=np.float64))) * float(slice_spacing)
    except (TypeError, ValueError):
        return float("inf")
