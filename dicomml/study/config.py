"""Study configuration: roles that pick one series per study, the reference grid, the policies.

YAML layout::

    name: brain_mr
    roles:
      t1:    {where: "series_description ILIKE '%t1%' AND NOT series_description ILIKE '%post%'"}
      t1c:   {where: "series_description ILIKE '%post%'", prefer: most_slices}
      b0:    {where: "series_description ILIKE '%dwi%'", volumes: {by: b_value, values: [0], reduce: mean}}
      b1000: {where: "series_description ILIKE '%dwi%'", volumes: {by: b_value, values: [1000], reduce: mean}}  # trace
      pet:   {where: "modality = 'PT'", suv: true}                      # float32 unless dtype says
      zones: {where: "series_description ILIKE '%zones%'", dtype: uint8, interpolation: nearest}
    reference: t1                  # the role whose grid every other role is resampled onto, or a grid:
                                   #   {spacing: [1, 1, 1], orientation: RAS, extent: union | intersection}
                                   #   or {spacing: ..., orientation: ..., size: [i, j, k]} (centred on the union)
    missing: skip                  # skip the study (reported) | empty: a zero channel, present=False
    trust_scanner_coordinates: false   # true: roles of other frames of reference are resampled anyway
    deterministic: {...}           # as a pipeline config: applied to the reference grid (orientation,
    at_load: {...}                 #   spacing, shape), dtype of the roles, masks, chunks; at_load as usual

``where`` is an SQL predicate (DuckDB) on the manifest's ``series`` table;
``prefer`` breaks ties when several series of a study match: ``newest``
(latest acquisition, then highest series number), ``oldest``, ``most_slices``,
``most_volumes``, ``finest`` (smallest voxel), or ``none`` (the study is
reported ambiguous and left out). A role gives the same channels in every
study, present or missing (:attr:`Role.channels`): one for a 3D series or
reduced volumes, else one per selected index, b-value or echo of a 4D
series, in the config's order; a study whose series keeps another number of
volumes (three b = 1000 directions for one b-value) is refused with a
``ConfigError``. ``volumes: {by: all}`` without ``reduce`` has no fixed
count and is refused.
Each role is cast to its own ``dtype`` (rounded and clipped); the entry holds
the channels in the smallest dtype that holds every role's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dicomml.config import (
    _DTYPES,
    AtLoad,
    Deterministic,
    PipelineConfig,
    VolumeSelection,
    _fields,
    _is_spacing,
    _typed,
    _volumes,
    check_one_of,
    did_you_mean,
    load_config,
    read_config_file,
)
from dicomml.errors import ConfigError

__all__ = ["PREFER", "ReferenceGrid", "Role", "StudyConfig", "load_any_config", "load_study_config"]

#: Tie-breaks between series of one study that match a role.
PREFER = ("newest", "oldest", "most_slices", "most_volumes", "finest", "none")
_MISSING = ("skip", "empty")
_INTERPOLATION = ("linear", "nearest")
_EXTENT = ("union", "intersection")


@dataclass(frozen=True)
class Role:
    """One channel of a study sample: the rule that picks its series.

    Attributes
    ----------
    name
        The channel's name (``"t1"``, ``"pet"``).
    where
        SQL predicate on the manifest's ``series`` table.
    prefer
        Tie-break among several matches (see :data:`PREFER`).
    volumes
        For a 4D series, which volumes to keep: one channel per selected index,
        echo number or b-value (``reduce`` makes them one); :attr:`channels`
        says how many, the same in every study. Left at its default, the role
        takes a 3D series (one channel).
    suv
        Convert PET activity to body-weight SUV (:func:`~dicomml.study.suv_factor`).
    dtype
        dtype of this role's channels (``int16``, ``uint8``, ``float32``...);
        None: float32 for SUV, else the pipeline's.
    interpolation
        ``linear``, or ``nearest`` for a label-like role (zones, atlases), whose
        values must not mix.
    """

    name: str
    where: str
    prefer: str = "newest"
    volumes: VolumeSelection = field(default_factory=VolumeSelection)
    suv: bool = False
    dtype: str | None = None
    interpolation: str = "linear"

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError(f"roles: {self.name!r} is not a valid role name (letters, digits, _)")
        if not self.where.strip():
            raise ConfigError(f"roles.{self.name}.where: required, an SQL predicate on the series table")
        check_one_of(f"roles.{self.name}.prefer", self.prefer, PREFER)
        if self.dtype is not None:
            check_one_of(f"roles.{self.name}.dtype", self.dtype, _DTYPES)
        check_one_of(f"roles.{self.name}.interpolation", self.interpolation, _INTERPOLATION)
        if self.volumes.by == "range":
            bounds = [int(v) for v in self.volumes.values]
            fixed = min(bounds[:2]) >= 0 or max(bounds[:2]) < 0  # mixed signs: the count depends on the series' length
            if not fixed and self.volumes.reduce == "none":
                raise ConfigError(
                    f"roles.{self.name}.volumes: range {bounds} keeps as many volumes as each series allows, but a study role "
                    "gives a fixed number of channels; give both bounds >= 0 (or both < 0), or select by index"
                )
            if fixed and not range(*bounds):
                raise ConfigError(f"roles.{self.name}.volumes: range {bounds} keeps no volume")

    @property
    def channels(self) -> int:
        """How many channels the role gives, whether a study has its series or not: fixed by the config.

        One without ``volumes`` (the series' one 3D volume) or with ``reduce``;
        else one per selected index, echo number or b-value, in their order,
        or per index of the ``range``. A study whose series keeps another
        number of volumes is refused (:func:`~dicomml.study.resample_roles`).
        """
        v = self.volumes
        if v.reduce != "none" or v.by == "all":
            return 1
        if v.by == "range":
            return len(range(*(int(x) for x in v.values)))
        return len(v.values)


@dataclass(frozen=True)
class ReferenceGrid:
    """A common grid not tied to a role.

    Attributes
    ----------
    spacing
        Voxel size (mm) along the grid's (i, j, k) axes.
    orientation
        Where the axes point, an orientation code (``"RAS"``, ``"LPS"``).
    size
        Voxels per axis, the grid centred on the union of the roles' boxes;
        None: the grid covers ``extent``.
    extent
        ``union`` or ``intersection`` of the present roles' bounding boxes
        (voxel centres, in the grid's axes).
    """

    spacing: tuple[float, float, float]
    orientation: str = "RAS"
    size: tuple[int, int, int] | None = None
    extent: str = "union"

    def __post_init__(self) -> None:
        from dicomml.transforms.functional.grid import check_axcodes

        if not _is_spacing(self.spacing):
            raise ConfigError(f"reference.spacing {list(self.spacing)}: give three positive, finite sizes in mm")
        if self.size is not None and (len(self.size) != 3 or min(self.size) < 1):
            raise ConfigError(f"reference.size {list(self.size)}: give three positive voxel counts")
        check_one_of("reference.extent", self.extent, _EXTENT)
        try:
            check_axcodes(self.orientation)
        except ValueError as exc:
            raise ConfigError(f"reference.orientation: {exc}") from None


@dataclass(frozen=True)
class StudyConfig:
    """Roles, reference grid and policies of study samples, plus the pipeline applied to them.

    Examples
    --------
    >>> cfg = StudyConfig.from_dict({"name": "s", "roles": {"ct": {"where": "modality = 'CT'"}}, "reference": "ct"})
    >>> cfg.role_names, cfg.missing
    (('ct',), 'skip')
    """

    name: str
    roles: tuple[Role, ...]
    reference: str | ReferenceGrid
    missing: str = "skip"
    trust_scanner_coordinates: bool = False
    pipeline: PipelineConfig = field(default_factory=lambda: PipelineConfig("study"))

    def __post_init__(self) -> None:
        if not self.roles:
            raise ConfigError(f"{self.name}: roles: give at least one role")
        names = [r.name for r in self.roles]
        if len(set(names)) != len(names):
            raise ConfigError(f"{self.name}: roles: names repeat ({names})")
        if isinstance(self.reference, str) and self.reference not in names:
            raise ConfigError(
                f"{self.name}: reference {self.reference!r} is not one of the roles {names}{did_you_mean(self.reference, names)}"
            )
        check_one_of(f"{self.name}: missing", self.missing, _MISSING)
        if self.pipeline.at_load.windows:
            raise ConfigError(f"{self.name}: at_load.windows: roles differ in units; normalize with at_load.normalize instead")

    @property
    def deterministic(self) -> Deterministic:
        """The pipeline's deterministic part, with the dtype the channels are cached in (what Datasets read)."""
        return dataclasses.replace(self.pipeline.deterministic, dtype=self.dtype)

    @property
    def at_load(self) -> AtLoad:
        """The pipeline's at-load part (normalization, augmentation)."""
        return self.pipeline.at_load

    def role_dtype(self, role: Role) -> str:
        """dtype a role's channels are cast to: its own, else float32 in SUV, else the pipeline's."""
        return role.dtype or ("float32" if role.suv else self.pipeline.deterministic.dtype)

    @property
    def dtype(self) -> str:
        """dtype of the cached channels: the smallest that holds every role's dtype."""
        return str(np.result_type(*(self.role_dtype(r) for r in self.roles)))

    @property
    def role_names(self) -> tuple[str, ...]:
        """Role names in channel order."""
        return tuple(r.name for r in self.roles)

    def canonical(self) -> str:
        """Stable JSON of everything that changes a cached study sample (not the name nor at_load)."""
        roles = [
            {
                "name": r.name,
                "where": r.where,
                "prefer": r.prefer,
                "volumes": [r.volumes.by, list(r.volumes.values), r.volumes.reduce],
                # with a selection, its channel count: entries cached when a series decided the channels (named
                # by volume index, in the series' order) get other keys
                **({"channels": r.channels} if r.volumes != VolumeSelection() else {}),
                "suv": r.suv,
                # left out at their defaults, so keys made before they existed stay valid
                **({"dtype": r.dtype} if r.dtype else {}),
                **({"interpolation": r.interpolation} if r.interpolation != "linear" else {}),
            }
            for r in self.roles
        ]
        body = {
            "roles": roles,
            "reference": self.reference if isinstance(self.reference, str) else dataclasses.asdict(self.reference),
            "missing": self.missing,
            "trust": self.trust_scanner_coordinates,
            "pipeline": json.loads(self.pipeline.canonical()),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def cache_hash(self) -> str:
        """SHA-256 (hex) of :meth:`canonical`."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> StudyConfig:
        """Build and validate a study config from a mapping (as parsed from YAML).

        Raises
        ------
        ConfigError
            Naming ``source`` and the key, for an unknown key, a wrong type or value.
        """
        try:
            top = _fields(data, ("name", "roles", "reference", "missing", "trust_scanner_coordinates", "deterministic", "at_load"), "")
            name = top.get("name")
            if not isinstance(name, str) or not name:
                raise ConfigError("name: required, a non-empty string")
            raw_roles = top.get("roles")
            if not isinstance(raw_roles, Mapping) or not raw_roles:
                raise ConfigError("roles: required, a mapping of role name to {where: ..., ...}")
            roles = tuple(_role(str(k), v) for k, v in raw_roles.items())
            pipeline = PipelineConfig.from_dict(
                {"name": name, "deterministic": top.get("deterministic") or {}, "at_load": top.get("at_load") or {}}, source=source
            )
            return cls(
                name=name,
                roles=roles,
                reference=_reference(top.get("reference", roles[0].name)),
                missing=_typed(top.get("missing", "skip"), str, "missing"),
                trust_scanner_coordinates=_flag(top.get("trust_scanner_coordinates", False), "trust_scanner_coordinates"),
                pipeline=pipeline,
            )
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(source) else f"{source}: {msg}", path=source) from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> StudyConfig:
        """Load a YAML file (:func:`~dicomml.config.read_config_file`) into a validated study config.

        Raises
        ------
        ConfigError
            If the file is missing, is not YAML, or holds an invalid config.
        """
        return cls.from_dict(read_config_file(path), source=str(path))


def load_study_config(config: StudyConfig | Mapping[str, Any] | str | os.PathLike[str]) -> StudyConfig:
    """Accept a study config, its dict, or the path of its YAML file."""
    if isinstance(config, StudyConfig):
        return config
    if isinstance(config, Mapping):
        return StudyConfig.from_dict(config)
    return StudyConfig.from_yaml(config)


def load_any_config(config: PipelineConfig | StudyConfig | Mapping[str, Any] | str | os.PathLike[str]) -> PipelineConfig | StudyConfig:
    """A pipeline config (object, dict, preset name or YAML file), or a study config when the dict or file names ``roles``.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or holds an invalid config.
    """
    if isinstance(config, (PipelineConfig, StudyConfig)):
        return config
    if isinstance(config, Mapping):
        return StudyConfig.from_dict(config) if "roles" in config else PipelineConfig.from_dict(config)
    try:
        data: Mapping[str, Any] = read_config_file(config)
    except ConfigError:
        data = {}  # a preset name, or a file load_config reports on
    return StudyConfig.from_dict(data, source=str(config)) if "roles" in data else load_config(config)


def _role(name: str, item: Any) -> Role:
    key = f"roles.{name}"
    r = _fields(item, ("where", "prefer", "volumes", "suv", "dtype", "interpolation"), key)
    volumes = _volumes(r.get("volumes"), f"{key}.volumes")
    if r.get("volumes") is not None and volumes.by == "all" and volumes.reduce == "none":
        raise ConfigError(
            f"{key}.volumes: by: all keeps as many volumes as each series has, but a study role gives the same channels in "
            "every study; select them (by: index, values: [0, 1]), reduce them (reduce: mean), or leave volumes out for a 3D series"
        )
    dtype = r.get("dtype")
    return Role(
        name=name,
        where=_typed(r.get("where", ""), str, f"{key}.where"),
        prefer=_typed(r.get("prefer", "newest"), str, f"{key}.prefer"),
        volumes=volumes,
        suv=_flag(r.get("suv", False), f"{key}.suv"),
        dtype=None if dtype is None else _typed(dtype, str, f"{key}.dtype"),
        interpolation=_typed(r.get("interpolation", "linear"), str, f"{key}.interpolation"),
    )


def _reference(item: Any) -> str | ReferenceGrid:
    """A role name, or ``{spacing, orientation, size | extent}``."""
    if isinstance(item, str):
        return item
    r = _fields(item, ("spacing", "orientation", "size", "extent"), "reference")
    spacing, size = r.get("spacing"), r.get("size")
    if not isinstance(spacing, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spacing):
        raise ConfigError(f"reference.spacing: {spacing!r}, expected three numbers (mm)")
    if size is not None and (not isinstance(size, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        raise ConfigError(f"reference.size: {size!r}, expected three integers")
    return ReferenceGrid(
        spacing=tuple(float(v) for v in spacing),  # type: ignore[arg-type]
        orientation=_typed(r.get("orientation", "RAS"), str, "reference.orientation"),
        size=None if size is None else tuple(size),  # type: ignore[arg-type]
        extent=_typed(r.get("extent", "union"), str, "reference.extent"),
    )


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: {value!r} is {type(value).__name__}, expected true or false")
    return value
