"""Pipeline configuration: frozen dataclasses, loaded from YAML, serialized stably.

A pipeline has two parts. :class:`Deterministic` (orientation, spacing,
crop/pad, dtype, masks, storage layout) runs *before* the cache and is what
the cache key hashes; :class:`AtLoad` (windows, normalization, random
augmentation) runs *after* it, when a sample is read, so changing a window
never invalidates a cache entry.

YAML layout (every key optional except ``name``)::

    name: ct_1mm
    deterministic:
      orientation: RAS          # RAS+ axis code of the cached array axes
      spacing: [1.0, 1.0, 1.0]  # mm along the three array axes, or null (keep)
      shape: null               # crop/pad to (i, j, k) voxels, or null (keep)
      dtype: int16              # int16 | uint16 | uint8 | float16 | float32
      masks: []                 # segment labels to cache; ["*"] = every segment
      chunks: [64, 64, 64]      # inner Zarr chunk shape (voxels) of the cached arrays
      philips_scaling: float    # float (as dcm2niix) | display: Philips MR's private scaling
      on_irregular: raise       # raise | resample | keep (gaps, tilt, varying geometry)
      max_voxels: 1073741824    # most voxels one assembled volume may have (hostile-input ceiling; not in the cache key)
      annotations:              # the dataset's label map: the same channels for every sample
        labels: {liver: 1, tumor: 2}   # or [liver, tumor], or {liver: {value, codes, aliases, color}}
        mode: channels          # channels (multi-hot) | label_map
        choose: all             # all | union | newest | each | description:TEXT (a Python predicate: from the API)
        on_bad: raise           # raise | skip (a bad annotation is recorded, its siblings kept)
      volumes:                  # 4D series: which volumes to keep (default: all of them)
        by: all                 # all | index | echo | b_value | range
        values: []              # indices, echo numbers, b-values, or [start, stop(, step)]
        reduce: none            # none | mean | max: the kept volumes to one
    at_load:
      windows:                  # stacked as channels, each scaled to [0, 1]
        - {name: soft_tissue, center: 40, width: 400}
      normalize: none           # none | zscore (after windows, if any)
      augment:                  # random transforms of dicomml.transforms, in order
        - {name: RandomFlip, params: {axes: [0, 1, 2], p: 0.5}}

Presets ship inside the package (``dicomml/configs/*.yaml``): wherever a
config is accepted, a preset name such as ``"ct_seg"`` works as well as a
path or a :class:`PipelineConfig`; :func:`presets` lists them.

Examples
--------
>>> load_config("ct_1mm").deterministic.spacing
(1.0, 1.0, 1.0)
>>> cfg = PipelineConfig.from_dict({"name": "demo", "deterministic": {"spacing": [1.5, 1.5, 1.5]}})
>>> cfg.deterministic.spacing
(1.5, 1.5, 1.5)
>>> len(cfg.cache_hash())
64
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dicomml.dicom.philips import PHILIPS_SCALINGS, PhilipsScaling
from dicomml.errors import ConfigError
from dicomml.limits import DEFAULT_MAX_VOXELS

__all__ = [
    "PRESET_DIR",
    "Annotations",
    "AtLoad",
    "Augmentation",
    "Deterministic",
    "GENERIC_CODES",
    "Label",
    "PipelineConfig",
    "VolumeSelection",
    "WindowSpec",
    "check_one_of",
    "did_you_mean",
    "load_config",
    "parse_labels",
    "presets",
    "read_config_file",
    "read_yaml_file",
    "with_options",
]

#: The folder of the shipped preset configs (package data).
PRESET_DIR = Path(__file__).resolve().parent / "configs"

_DTYPES = ("int16", "uint16", "uint8", "float16", "float32")
_NORMALIZE = ("none", "zscore")
_AXIS_LETTERS = ({"L", "R"}, {"A", "P"}, {"S", "I"})
#: How a config may select the volumes of a 4D series, and reduce them to one.
SELECT_BY = ("all", "index", "echo", "b_value", "range")
REDUCE = ("none", "mean", "max")


@dataclass(frozen=True)
class WindowSpec:
    """One intensity window, output scaled to [0, 1].

    Attributes
    ----------
    center, width
        Window center and width in the image's units (HU for CT), DICOM
        (0028,1050) / (0028,1051) convention: ``[center - width/2, center + width/2]``.
    name
        Label of the channel (``"brain"``, ``"bone"``...).
    """

    center: float
    width: float
    name: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.width) and self.width > 0):
            raise ConfigError(f"window {self.name or ''}: center {self.center}, width {self.width}; width must be > 0")

    @property
    def low(self) -> float:
        """Lowest value of the window (maps to 0)."""
        return self.center - self.width / 2

    @property
    def high(self) -> float:
        """Highest value of the window (maps to 1)."""
        return self.center + self.width / 2


@dataclass(frozen=True)
class Augmentation:
    """A random transform of :mod:`dicomml.transforms`, by class name, with its keyword arguments."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the transform's constructor (lists for sequences)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}


_LABEL_MODES = ("channels", "label_map")
_CHOOSE = ("all", "newest", "union", "each")
_ON_BAD = ("raise", "skip")
_ON_IRREGULAR = ("raise", "resample", "keep")


#: Property types that name a kind of thing, not one structure (DICOM CID 7150's categories, and their
#: retired SRT codes): many segments share them (write_seg gives Tissue to a label without codes), so
#: they never tell labels apart; a segment coded only so is matched by its name.
GENERIC_CODES = frozenset(
    {
        "SCT:85756007",  # Tissue
        "SCT:91723000",  # Anatomical Structure
        "SCT:49755003",  # Morphologically Abnormal Structure
        "SCT:91720002",  # Body Substance
        "SCT:105590001",  # Substance
        "SCT:246464006",  # Function
        "SCT:260787004",  # Physical object
        "SCT:309825002",  # Spatial and Relational Concept
        "SRT:T-D0050",  # Tissue
        "SRT:T-D000A",  # Anatomical Structure
        "SRT:M-01000",  # Morphologically Altered Structure
    }
)


@dataclass(frozen=True)
class Label:
    """One class of a dataset's label map.

    Attributes
    ----------
    name
        The class name; also the SegmentLabel / ROIName written back.
    value
        Its value in a label map (1, 2...); in multi-hot masks its channel is
        its rank among the labels.
    codes
        Segmented property type codes that identify it, ``"SCHEME:VALUE"``
        (``"SCT:10200004"``); the first is the one written back. A code in
        :data:`GENERIC_CODES` (Tissue, Anatomical Structure...) is written
        but never matched: the name decides.
    aliases
        Other names it goes by in annotations (matched case-insensitively).
    color
        RGB display colour (0-255) written back, or None for a default.
    """

    name: str
    value: int
    codes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    color: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError(f"label {self.value}: needs a non-empty name")
        if self.value < 1:
            raise ConfigError(f"label {self.name!r}: value {self.value} must be >= 1 (0 is background)")
        for code in self.codes:
            if len(code.split(":")) != 2 or not all(code.split(":")):
                raise ConfigError(f"label {self.name!r}: code {code!r} is not SCHEME:VALUE (e.g. SCT:10200004)")
        if self.color is not None and (len(self.color) != 3 or not all(0 <= c <= 255 for c in self.color)):
            raise ConfigError(f"label {self.name!r}: color {list(self.color)} must be three values in 0-255")


@dataclass(frozen=True)
class Annotations:
    """Which annotations of a series become its masks, and how.

    Attributes
    ----------
    labels
        The dataset's label map; every sample gets these classes in this
        order, an absent one as an empty channel. Empty: the masks named by
        ``Deterministic.masks`` as each annotation has them.
    mode
        ``"channels"``: one multi-hot channel per label; ``"label_map"``: one
        channel of label values.
    choose
        Among several annotations of a series: ``"all"`` (every one, merged
        per label), ``"newest"`` (latest series date/time), ``"union"`` (as
        ``all``, explicitly), ``"each"`` (one sample per annotation),
        ``"description:TEXT"`` (those whose series description contains TEXT,
        case-insensitive), or a Python callable (from the API, not YAML)
        given each annotation's :class:`~dicomml.seg.AnnotationRecord`: it
        returns a bool (keep those that are True) or a sort key (keep the
        largest); see :func:`dicomml.seg.labelmap.choose_annotations`.
    on_bad
        An annotation that cannot be read or placed: ``"raise"``, or
        ``"skip"`` (recorded in the sample's meta; its siblings still load).
    """

    labels: tuple[Label, ...] = ()
    mode: str = "channels"
    choose: str | Callable[[Any], Any] = "all"
    on_bad: str = "raise"

    def __post_init__(self) -> None:
        check_one_of("annotations.mode", self.mode, _LABEL_MODES)
        named = isinstance(self.choose, str) and (self.choose in _CHOOSE or self.choose.startswith("description:"))
        if not (named or callable(self.choose)):
            raise ConfigError(
                f"annotations.choose {self.choose!r} is not one of {', '.join(_CHOOSE)}, description:TEXT or a callable"
                + did_you_mean(self.choose, _CHOOSE)
            )
        check_one_of("annotations.on_bad", self.on_bad, _ON_BAD)
        values = [label.value for label in self.labels]
        names = [label.name.lower() for label in self.labels]
        if len(set(values)) != len(values) or len(set(names)) != len(names):
            raise ConfigError("annotations.labels: each label needs its own name and value")


def parse_labels(spec: Any, key: str = "labels") -> tuple[Label, ...]:
    """Labels from their short forms.

    Parameters
    ----------
    spec
        ``{name: value}`` (a label map), ``[name, ...]`` (channels, values 1,
        2...), ``{name: {value, codes, aliases, color}}``, or Label objects.
    key
        Where ``spec`` came from, for messages.

    Returns
    -------
    tuple of Label
        Sorted by value, whatever the order given: the order of a Dataset's
        channels, of the channels write-back expects and of the segments
        (ROIs) it writes.

    Raises
    ------
    ConfigError
        For a form it cannot read, or two labels with the same value, the
        same name (case-insensitive) or the same code (other than a
        :data:`GENERIC_CODES` one), naming both.

    Examples
    --------
    >>> [(l.name, l.value) for l in parse_labels({"liver": 1, "tumor": 2})]
    [('liver', 1), ('tumor', 2)]
    >>> [(l.name, l.value) for l in parse_labels({"spleen": 3, "liver": 1})]
    [('liver', 1), ('spleen', 3)]
    >>> parse_labels([{"name": "liver", "codes": ["SCT:10200004"]}])[0].codes
    ('SCT:10200004',)
    """
    if spec is None:
        return ()
    if isinstance(spec, Mapping):
        items = [(name, v if isinstance(v, Mapping) else {"value": v}) for name, v in spec.items()]
    elif isinstance(spec, (list, tuple)):
        items = [(None, item) for item in spec]
    else:
        raise ConfigError(f"{key}: got {type(spec).__name__}, expected a mapping or a list")
    labels = []
    for rank, (name, item) in enumerate(items, start=1):
        if isinstance(item, Label):
            labels.append(item)
            continue
        if isinstance(item, str):
            item = {"name": item}
        where = f"{key}[{name or rank}]"
        entry = _fields(item, ("name", "value", "codes", "aliases", "color"), where)
        color = entry.get("color")
        labels.append(
            Label(
                name=_typed(entry.get("name", name), str, f"{where}.name"),
                value=_typed(entry.get("value", rank), int, f"{where}.value"),
                codes=tuple(_typed(c, str, f"{where}.codes[]") for c in _seq(entry.get("codes"), f"{where}.codes")),
                aliases=tuple(_typed(a, str, f"{where}.aliases[]") for a in _seq(entry.get("aliases"), f"{where}.aliases")),
                color=None if color is None else tuple(_typed(c, int, f"{where}.color[]") for c in _seq(color, f"{where}.color")),  # type: ignore[arg-type]
            )
        )
    by_value: dict[int, Label] = {}
    by_name: dict[str, Label] = {}
    by_code: dict[str, Label] = {}
    for label in labels:  # one segment, channel and value per label: a repeat would empty one of the two unseen
        if label.value in by_value:
            other = by_value[label.value]
            raise ConfigError(f"{key}: {other.name!r} and {label.name!r} both have value {label.value}; give each label its own value")
        if label.name.lower() in by_name:
            other = by_name[label.name.lower()]
            raise ConfigError(
                f"{key}: {other.name!r} (value {other.value}) and {label.name!r} (value {label.value}) are one name; "
                "give each label its own name"
            )
        for code in set(label.codes) - GENERIC_CODES:  # a code matches before a name: shared, it would merge the two
            if code in by_code:
                other = by_code[code]
                raise ConfigError(
                    f"{key}: {other.name!r} and {label.name!r} both have code {code}; a code identifies one label "
                    "(keep it on one, or on neither and tell them apart by name and aliases)"
                )
            by_code[code] = label
        by_value[label.value], by_name[label.name.lower()] = label, label
    return tuple(sorted(labels, key=lambda label: label.value))


@dataclass(frozen=True)
class VolumeSelection:
    """Which volumes of a 4D series (time, echo, diffusion, cardiac phase) the cache keeps.

    Attributes
    ----------
    by
        ``"all"`` (keep every volume), ``"index"`` (0-based, negative from the
        end), ``"echo"`` (EchoNumbers), ``"b_value"`` (s/mm², within 1) or
        ``"range"`` (``[start, stop]`` or ``[start, stop, step]``, a Python slice).
        ``echo`` and ``b_value`` keep the volumes in the order of ``values``.
        The manifest holds each echo as a series of its own, so ``echo``
        selects along the echo axis of a volume assembled with one; a 3D
        volume of another echo (or b-value) than asked is refused
        (:func:`~dicomml.assemble.volumes.select_volumes`).
    values
        The indices, echo numbers, b-values or range bounds (whole numbers
        for ``index`` and ``range``).
    reduce
        ``"none"`` keeps the selected volumes as a leading axis (one volume
        gives a 3D image); ``"mean"`` (float32) or ``"max"`` reduces them to one.
    """

    by: str = "all"
    values: tuple[float, ...] = ()
    reduce: str = "none"

    def __post_init__(self) -> None:
        check_one_of("volumes.by", self.by, SELECT_BY)
        check_one_of("volumes.reduce", self.reduce, REDUCE)
        if (self.by == "all") != (not self.values):
            raise ConfigError(f"volumes: by={self.by!r} with values {list(self.values)}; 'all' takes no values, the others need some")
        if self.by in ("index", "range") and not all(float(v).is_integer() for v in self.values):
            raise ConfigError(f"volumes.{self.by} {list(self.values)}: give whole numbers")
        if self.by == "range" and not (2 <= len(self.values) <= 3 and (len(self.values) == 2 or self.values[2] != 0)):
            raise ConfigError(f"volumes.range {list(self.values)}: give [start, stop] or [start, stop, step] with a step other than 0")


@dataclass(frozen=True)
class Deterministic:
    """The part of a pipeline that runs before the cache; the cache key hashes it.

    Attributes
    ----------
    orientation
        RAS+ axis code the cached array axes follow (``"RAS"``: axis 0 points
        right, 1 anterior, 2 superior), nibabel/MONAI convention.
    spacing
        Target voxel size in mm along the three array axes, or None to keep.
    shape
        Crop or pad (centered) to this (i, j, k) voxel shape, or None to keep.
    dtype
        dtype of the cached image (``int16`` keeps CT in HU).
    masks
        Segment labels whose masks are cached with the image; ``("*",)`` for
        all segments of the paired SEG/RTSTRUCT, empty for none.
    chunks
        Inner Zarr chunk shape (voxels, array axis order) of the cached image
        and masks; a random patch reads only the chunks it touches.
    philips_scaling
        ``"float"`` (Philips MR's private floating-point values, as dcm2niix
        writes them) or ``"display"`` (the standard rescale only); see
        :mod:`dicomml.dicom.philips`. Other images are the same either way.
    on_irregular
        What assembly does with a gap, a tilt or varying geometry:
        ``"raise"``, ``"resample"`` (onto a regular grid) or ``"keep"``.
    annotations
        The dataset's label map and how annotations become masks; its
        ``labels`` (or, without them, ``masks`` names other than ``"*"``)
        give every sample the same channels.
    volumes
        Which volumes of a 4D series are kept (:class:`VolumeSelection`);
        every one by default.
    max_voxels
        Most voxels one assembled volume may have (``max_voxels`` of
        :func:`dicomml.load_series`; see :mod:`dicomml.limits`): raise it for
        larger data. It decides only whether a series loads, never what it
        loads as, so :meth:`PipelineConfig.canonical` (the cache key) leaves
        it out.
    """

    orientation: str = "RAS"
    spacing: tuple[float, float, float] | None = None
    shape: tuple[int, int, int] | None = None
    dtype: str = "int16"
    masks: tuple[str, ...] = ()
    chunks: tuple[int, int, int] = (64, 64, 64)
    philips_scaling: PhilipsScaling = "float"
    on_irregular: Literal["raise", "resample", "keep"] = "raise"
    annotations: Annotations = field(default_factory=Annotations)

    volumes: VolumeSelection = field(default_factory=VolumeSelection)
    max_voxels: int = DEFAULT_MAX_VOXELS

    def labels(self) -> tuple[Label, ...]:
        """The dataset's label map: ``annotations.labels``, else the ``masks`` names; empty for ``"*"``."""
        if self.annotations.labels:
            return self.annotations.labels
        return () if "*" in self.masks else parse_labels(list(self.masks), "deterministic.masks")

    def __post_init__(self) -> None:
        code = self.orientation.upper() if isinstance(self.orientation, str) else ""
        if len(code) != 3 or sorted(_axis_family(c) for c in code) != [0, 1, 2]:
            raise ConfigError(f"orientation {self.orientation!r} is not a RAS+ axis code; use three letters, one of L/R, A/P, S/I each")
        object.__setattr__(self, "orientation", code)
        if self.spacing is not None and not _is_spacing(self.spacing):
            raise ConfigError(f"spacing {list(self.spacing)} must be three positive numbers (mm)")
        if self.shape is not None and not all(s > 0 for s in self.shape):
            raise ConfigError(f"shape {list(self.shape)} must be three positive voxel counts")
        check_one_of("dtype", self.dtype, _DTYPES)
        check_one_of("on_irregular", self.on_irregular, _ON_IRREGULAR)
        if not all(c > 0 for c in self.chunks):
            raise ConfigError(f"chunks {list(self.chunks)} must be three positive voxel counts")
        check_one_of("philips_scaling", self.philips_scaling, PHILIPS_SCALINGS)
        if isinstance(self.max_voxels, bool) or not isinstance(self.max_voxels, int) or self.max_voxels <= 0:
            raise ConfigError(f"max_voxels {self.max_voxels!r} must be a positive number of voxels")


@dataclass(frozen=True)
class AtLoad:
    """The part of a pipeline that runs when a sample is read (never cached).

    Attributes
    ----------
    windows
        Windows stacked as channels, each scaled to [0, 1]; empty keeps the
        cached intensities as one channel.
    normalize
        ``"zscore"`` standardizes each channel over its voxels; ``"none"``.
    augment
        Random transforms applied in order; parameters are drawn once per
        sample and applied to image and masks alike.
    """

    windows: tuple[WindowSpec, ...] = ()
    normalize: str = "none"
    augment: tuple[Augmentation, ...] = ()

    def __post_init__(self) -> None:
        check_one_of("normalize", self.normalize, _NORMALIZE)


@dataclass(frozen=True)
class PipelineConfig:
    """A named pipeline: :class:`Deterministic` then :class:`AtLoad`.

    Examples
    --------
    >>> cfg = PipelineConfig("x", Deterministic(spacing=(1.0, 1.0, 1.0)))
    >>> cfg.canonical()
    '{"chunks":[64,64,64],"dtype":"int16","masks":[],"orientation":"RAS","philips_scaling":"float","shape":null,"spacing":[1.0,1.0,1.0]}'
    """

    name: str
    deterministic: Deterministic = field(default_factory=Deterministic)
    at_load: AtLoad = field(default_factory=AtLoad)

    def canonical(self) -> str:
        """Stable JSON of the deterministic part: sorted keys, no spaces, floats as floats.

        The name and the at-load part are left out on purpose: renaming a
        config or changing a window keeps every cache entry valid; so is
        ``max_voxels``, which decides whether a series loads, not what is cached.
        """
        deterministic = self.deterministic
        if callable(deterministic.annotations.choose):
            # a predicate acts when the sources are listed: the annotations it keeps are in the key by their files
            deterministic = dataclasses.replace(deterministic, annotations=dataclasses.replace(deterministic.annotations, choose="all"))
        det = dataclasses.asdict(deterministic)
        del det["max_voxels"]
        # options at their defaults are left out, so configs written before they existed keep their cache keys
        defaults = (
            ("on_irregular", "raise"),
            ("annotations", dataclasses.asdict(Annotations())),
            ("volumes", dataclasses.asdict(VolumeSelection())),
        )
        for key, default in defaults:
            if det[key] == default:
                del det[key]
        if det["spacing"] is not None:
            det["spacing"] = [float(s) for s in det["spacing"]]
        return json.dumps(det, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def cache_hash(self) -> str:
        """SHA-256 (hex) of :meth:`canonical`, one component of the cache key."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, no tuples) that :meth:`from_dict` reads back."""
        out = _plain(dataclasses.asdict(self))
        out["at_load"]["augment"] = [{"name": a.name, "params": a.kwargs()} for a in self.at_load.augment]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> PipelineConfig:
        """Build and validate a config from a mapping (as parsed from YAML).

        Parameters
        ----------
        data
            ``{"name": ..., "deterministic": {...}, "at_load": {...}}``.
        source
            Where ``data`` came from, named in error messages.

        Raises
        ------
        ConfigError
            Naming ``source`` and the key, for an unknown key, a wrong type or value.
        """
        try:
            top = _fields(data, ("name", "deterministic", "at_load"), "")
            if not isinstance(top.get("name"), str) or not top["name"]:
                raise ConfigError("name: required, a non-empty string")
            det = _fields(top.get("deterministic") or {}, _names(Deterministic), "deterministic")
            load = _fields(top.get("at_load") or {}, _names(AtLoad), "at_load")
            return cls(
                name=top["name"],
                deterministic=Deterministic(
                    orientation=_typed(det.get("orientation", "RAS"), str, "deterministic.orientation"),
                    spacing=_triple(det.get("spacing"), float, "deterministic.spacing"),
                    shape=_triple(det.get("shape"), int, "deterministic.shape"),
                    dtype=_typed(det.get("dtype", "int16"), str, "deterministic.dtype"),
                    masks=tuple(_typed(m, str, "deterministic.masks[]") for m in _seq(det.get("masks"), "deterministic.masks")),
                    chunks=_triple(det.get("chunks", (64, 64, 64)), int, "deterministic.chunks"),
                    philips_scaling=_typed(det.get("philips_scaling", "float"), str, "deterministic.philips_scaling"),
                    on_irregular=_typed(det.get("on_irregular", "raise"), str, "deterministic.on_irregular"),
                    annotations=_annotations(det.get("annotations") or {}),
                    volumes=_volumes(det.get("volumes")),
                    max_voxels=_typed(det.get("max_voxels", DEFAULT_MAX_VOXELS), int, "deterministic.max_voxels"),
                ),
                at_load=AtLoad(
                    windows=tuple(_window(w, i) for i, w in enumerate(_seq(load.get("windows"), "at_load.windows"))),
                    normalize=_typed(load.get("normalize", "none"), str, "at_load.normalize"),
                    augment=tuple(_augment(a, i) for i, a in enumerate(_seq(load.get("augment"), "at_load.augment"))),
                ),
            )
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(source) else f"{source}: {msg}", path=source) from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> PipelineConfig:
        """Load a YAML file (:func:`read_config_file`) into a validated config.

        Raises
        ------
        ConfigError
            If the file is missing, is not YAML, or holds an invalid config.
        """
        return cls.from_dict(read_config_file(path), source=str(path))


def read_config_file(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The mapping a config YAML file holds (:func:`read_yaml_file`), for a pipeline or a study config.

    Raises
    ------
    ConfigError
        If the file is missing, is not UTF-8 YAML, repeats a key, or its top level is not a mapping.
    """
    path = Path(path)
    try:
        data = read_yaml_file(path)
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the config ({exc.strerror}); check the path, or name a preset ({', '.join(presets())})",
            path=str(path),
        ) from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: top level is {type(data).__name__}, expected a mapping", path=str(path))
    return data


def read_yaml_file(path: str | os.PathLike[str]) -> Any:
    """What a YAML config file holds, read as every config is: UTF-8, plain YAML (``yaml.SafeLoader``), no repeated key.

    Raises
    ------
    OSError
        If the file cannot be read (each caller says how to name it instead).
    ConfigError
        One line naming the file: not UTF-8, not valid YAML (with line and column), or a key given twice in one mapping.
    """
    import yaml  # here: a config given as an object or a dict never needs it

    try:
        loader = _unique_key_loader()(Path(path).read_text(encoding="utf-8"))
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the config as UTF-8", path=str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_problem(exc)}", path=str(path)) from None
    except ConfigError as exc:  # a repeated key, found by the loader, which does not know the file
        raise ConfigError(f"{path}: {exc}", path=str(path)) from None


@functools.cache
def _unique_key_loader() -> type:
    """``yaml.SafeLoader`` refusing a key repeated in one mapping (plain safe_load keeps the last, silently dropping the first)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` is meant to be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, Hashable):  # a list as a key: SafeLoader refuses it below
                    continue
                mark = key_node.start_mark
                if key in seen:
                    raise ConfigError(
                        f"line {mark.line + 1}, column {mark.column + 1}: key {key!r} repeats the one at line {seen[key]}; keep one"
                    )
                seen[key] = mark.line + 1
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def _yaml_problem(exc: Exception) -> str:
    """One line for a YAML error: where (line, column, 1-based), what, and the way out."""
    import yaml

    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"not valid YAML ({' '.join(str(exc).split())}); fix the syntax"
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = " ".join(str(exc.problem or exc.context or type(exc).__name__).split())
    if isinstance(exc, yaml.constructor.ConstructorError):  # a tag (!!python/object...): safe_load builds none
        return f"{where}{problem}; a config is plain YAML (mappings, lists, strings, numbers), without tags"
    context = exc.context if exc.problem else None
    if context and exc.context_mark is not None and exc.context_mark is not mark:
        problem += f", {context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
    elif context:
        problem += f", {context}"
    return f"{where}not valid YAML ({problem}); fix the syntax"


def presets() -> list[str]:
    """Names of the preset configs shipped with dicomml.

    Examples
    --------
    >>> "ct_seg" in presets()
    True
    """
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(config: PipelineConfig | str | os.PathLike[str]) -> PipelineConfig:
    """Accept a config object, a preset name or the path of a YAML file.

    Parameters
    ----------
    config
        A :class:`PipelineConfig`; a preset name (a bare name such as
        ``"ct_seg"``, see :func:`presets`); or the path of a YAML file.

    Raises
    ------
    ConfigError
        If a bare name is no preset, or the file is missing or invalid.

    Examples
    --------
    >>> load_config(PipelineConfig("x")).name
    'x'
    >>> load_config("ct_seg").deterministic.masks
    ('*',)
    """
    if isinstance(config, PipelineConfig):
        return config
    text = os.fspath(config)
    if isinstance(config, str) and os.sep not in text and "/" not in text and not Path(text).suffix:  # a preset
        if text not in presets():
            raise ConfigError(
                f"{text}: no preset of that name (presets: {', '.join(presets())}); or give the path of a YAML file"
                + did_you_mean(text, presets()),
                path=text,
            )
        return PipelineConfig.from_yaml(PRESET_DIR / f"{text}.yaml")
    return PipelineConfig.from_yaml(text)


def with_options(
    config: PipelineConfig,
    *,
    on_irregular: str | None = None,
    annotations: Annotations | Mapping[str, Any] | None = None,
    max_voxels: int | None = None,
) -> PipelineConfig:
    """``config`` with its assembly, annotation and ``max_voxels`` options replaced where given (None keeps them).

    Examples
    --------
    >>> cfg = with_options(PipelineConfig("x"), on_irregular="resample", annotations={"labels": ["liver"]})
    >>> cfg.deterministic.on_irregular, [label.name for label in cfg.deterministic.labels()]
    ('resample', ['liver'])
    """
    det = config.deterministic
    if on_irregular is not None:
        det = dataclasses.replace(det, on_irregular=on_irregular)  # type: ignore[arg-type]  # checked in __post_init__
    if max_voxels is not None:
        det = dataclasses.replace(det, max_voxels=max_voxels)
    if annotations is not None:
        det = dataclasses.replace(det, annotations=annotations if isinstance(annotations, Annotations) else _annotations(annotations))
    return dataclasses.replace(config, deterministic=det)


def _axis_family(letter: str) -> int:
    for i, family in enumerate(_AXIS_LETTERS):
        if letter in family:
            return i
    return -1


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _fields(data: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    prefix = f"{where}." if where else ""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'top level'}: got {type(data).__name__}, expected a mapping")
    unknown = sorted(set(map(str, data)) - set(allowed))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key; expected one of {', '.join(allowed)}{did_you_mean(unknown[0], allowed)}")
    return dict(data)


def did_you_mean(word: Any, choices: Iterable[Any]) -> str:
    """``"; did you mean 'spacing'?"`` for a near miss among ``choices``, else ``""`` (the tail of a one-line message)."""
    named = {c.lower(): c for c in choices if isinstance(c, str)}  # case-insensitive: 'SKIP' is a near miss of 'skip'
    close = difflib.get_close_matches(str(word).lower(), list(named), n=1, cutoff=0.75)
    return f"; did you mean {named[close[0]]!r}?" if close else ""


def check_one_of(key: str, value: Any, allowed: Iterable[Any]) -> None:
    """A one-line ConfigError unless ``value`` is one of ``allowed``, suggesting the nearest."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{key} {value!r} is not one of {', '.join(map(str, allowed))}{did_you_mean(value, allowed)}")


def _is_spacing(spacing: Any) -> bool:
    """Three finite, positive voxel sizes (mm): NaN or inf would pass ``> 0`` checks and break the JSON cache key."""
    return len(spacing) == 3 and all(math.isfinite(s) and s > 0 for s in spacing)


def _typed(value: Any, kind: type, key: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{key}: {value!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _seq(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: got {type(value).__name__}, expected a list")
    return list(value)


def _triple(value: Any, kind: type, key: str) -> Any:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    items = _seq(value, key)
    if len(items) != 3:
        raise ConfigError(f"{key}: {items} has {len(items)} values, expected 3 (one per array axis)")
    return tuple(_typed(v, kind, f"{key}[{i}]") for i, v in enumerate(items))


def _window(item: Any, i: int) -> WindowSpec:
    key = f"at_load.windows[{i}]"
    w = _fields(item, ("name", "center", "width"), key)
    if "center" not in w or "width" not in w:
        raise ConfigError(f"{key}: needs center and width")
    return WindowSpec(
        center=_typed(w["center"], float, f"{key}.center"),
        width=_typed(w["width"], float, f"{key}.width"),
        name=_typed(w.get("name", ""), str, f"{key}.name"),
    )


def _volumes(item: Any, key: str = "deterministic.volumes") -> VolumeSelection:
    if item is None or item == "all":
        return VolumeSelection()
    v = _fields(item, _names(VolumeSelection), key)
    values = tuple(_typed(x, float, f"{key}.values[{i}]") for i, x in enumerate(_seq(v.get("values"), f"{key}.values")))
    try:
        return VolumeSelection(
            by=_typed(v.get("by", "all"), str, f"{key}.by"),
            values=values,
            reduce=_typed(v.get("reduce", "none"), str, f"{key}.reduce"),
        )
    except ConfigError as exc:  # its messages start "volumes."; say where the selection sits
        message = str(exc)
        raise ConfigError(message if message.startswith(key) else key[: -len("volumes")] + message) from None


def _annotations(item: Any) -> Annotations:
    key = "deterministic.annotations"
    a = _fields(item, _names(Annotations), key)
    return Annotations(
        labels=parse_labels(a.get("labels"), f"{key}.labels"),
        mode=_typed(a.get("mode", "channels"), str, f"{key}.mode"),
        choose=a["choose"] if callable(a.get("choose")) else _typed(a.get("choose", "all"), str, f"{key}.choose"),
        on_bad=_typed(a.get("on_bad", "raise"), str, f"{key}.on_bad"),
    )


def _augment(item: Any, i: int) -> Augmentation:
    key = f"at_load.augment[{i}]"
    a = _fields(item, ("name", "params"), key)
    name = _typed(a.get("name"), str, f"{key}.name")
    params = a.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{key}.params: got {type(params).__name__}, expected a mapping")
    frozen = tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in params.items()))
    augmentation = Augmentation(name=name, params=frozen)
    _check_transform(augmentation, key)
    return augmentation


def _check_transform(augmentation: Augmentation, key: str) -> None:
    """Refuse at load an augmentation that names no transform of :mod:`dicomml.transforms` or whose params it refuses."""
    from dicomml import transforms as T  # here: only a config with augmentations needs torch to load

    cls = getattr(T, augmentation.name, None)
    if not (isinstance(cls, type) and issubclass(cls, T.Transform)):
        known = [name for name in dir(T) if isinstance(getattr(T, name), type) and issubclass(getattr(T, name), T.Transform)]
        raise ConfigError(
            f"{key}.name: {augmentation.name!r} is not a dicomml.transforms transform (e.g. RandomFlip, RandomAffine, RandomCrop)"
            + did_you_mean(augmentation.name, known)
        )
    try:
        cls(**augmentation.kwargs())
    except (TypeError, ValueError) as exc:  # ConfigError is a ValueError: the transform's own check
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{key}.params: {reason}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
