"""One study sample: every role's series on the reference grid, plus the masks of any of them.

Adapter, then core: :func:`study_sources` reads the manifest (which series
fill which role, their files, the cache key); :func:`compute_study` loads the
series and calls :func:`resample_roles`, which works on Volumes only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from dicomml.assemble.volumes import apply_selection
from dicomml.cache.key import FORMAT_VERSION, source_fingerprint
from dicomml.errors import ConfigError, FrameOfReferenceError, ManifestError
from dicomml.indexer.manifest import Manifest
from dicomml.study.config import ReferenceGrid, Role, StudyConfig
from dicomml.study.roles import StudyMatch, match_studies
from dicomml.study.source import StudySource
from dicomml.study.suv import suv_factor
from dicomml.volume import Volume

__all__ = [
    "StudyArrays",
    "StudySource",
    "compute_study",
    "explicit_grid",
    "preprocess_study",
    "resample_roles",
    "role_volume",
    "study_key",
    "study_sources",
]


@dataclass(frozen=True)
class StudyArrays:
    """A computed study sample.

    Attributes
    ----------
    image
        (C, i, j, k), each role's channels in config order, in ``config.dtype``.
    mask
        (S, i, j, k) masks on the same grid, or None.
    affine
        4x4, (i, j, k) to RAS+ mm: the reference grid.
    roles
        Per role: ``present``, ``series_key``, ``series_uid``, ``modality``,
        ``frame_of_reference_uid``, ``suv_factor``, ``volume_indices``, source
        files, and ``channels`` (name, and for a 4D role the volume's index,
        b-value, gradient along the grid's axes, echo time...): as many as
        :attr:`~dicomml.study.Role.channels`, present or missing.
    mask_labels
        One label per mask channel, ``"role/label"``.
    """

    image: np.ndarray
    mask: np.ndarray | None
    affine: np.ndarray
    roles: dict[str, dict[str, Any]]
    mask_labels: list[str]

    @property
    def channel_names(self) -> list[str]:
        """One name per image channel: the role's, or ``"role/j"`` for channel j of a role of several (the same in every study)."""
        return [c["name"] for info in self.roles.values() for c in info["channels"]]


def study_key(files_by_role: Mapping[str, Sequence[tuple[Any, ...]]], config: StudyConfig) -> str:
    """Cache key of a study sample: 32 hex digits of SHA-256(format, each role's files, config hash)."""
    lines = [f"{role}\t{source_fingerprint(files)}" for role, files in sorted(files_by_role.items())]
    text = f"dicomml-study/{FORMAT_VERSION}\n" + "\n".join(lines) + f"\n{config.cache_hash()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def study_sources(manifest: Manifest, config: StudyConfig, match: StudyMatch | None = None) -> list[StudySource]:
    """The usable studies of a manifest, with their members and cache keys, sorted by study UID.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest`.
    config
        The study config.
    match
        A :func:`~dicomml.study.match_studies` result to reuse.
    """
    from dicomml.pipeline.sources import _annotations, _group

    match = match or match_studies(manifest, config)
    usable = match.usable
    keys = sorted({str(k) for role in config.role_names for k in usable[role].dropna()})
    files = _group(manifest.instance_fingerprints(keys)) if keys else {}
    annotations = _annotations(manifest, keys) if config.pipeline.deterministic.masks else {}
    annotation_files = {annotation_key: ann_files for pairs in annotations.values() for annotation_key, ann_files in pairs}
    out = []
    for row in usable.itertuples(index=False):
        members = tuple((role, None if pd.isna(getattr(row, role)) else str(getattr(row, role))) for role in config.role_names)
        anns = tuple((role, a) for role, key in members if key is not None for a, _ in annotations.get(key, []))
        key = _members_key(members, anns, files, annotation_files, config)
        out.append(StudySource(str(row.study_instance_uid), key, members, anns))
    return out


def _members_key(
    members: Sequence[tuple[str, str | None]],
    annotation_keys: Sequence[tuple[str, str]],
    files: Mapping[str, Sequence[tuple[Any, ...]]],
    annotation_files: Mapping[str, Sequence[tuple[Any, ...]]],
    config: StudyConfig,
) -> str:
    """The study's cache key from its (role, series key) members, (role, annotation key) annotations and their files by key."""
    by_role = {role: list(files.get(key, [])) for role, key in members if key is not None}
    by_role.update({f"{role}/{a}": list(annotation_files.get(a, [])) for role, a in annotation_keys})
    return study_key(by_role, config)


def _check_key(manifest: Manifest, source: StudySource, config: StudyConfig) -> None:
    """Refuse to publish under ``source.key`` what its files no longer are: rewritten and indexed again since it was resolved.

    The study's counterpart of the series' check (``dicomml.pipeline.compute``):
    called after every member and mask was loaded from the manifest's rows,
    one read of their fingerprints, no DICOM file.

    Raises
    ------
    ManifestError
        If the manifest's files of the members and their annotations give another key now.
    """
    from dicomml.pipeline.sources import _group

    files = _group(manifest.instance_fingerprints([key for _, key in source.members if key is not None]))
    annotations = [a for _, a in source.annotation_keys]
    annotation_files = _group(manifest.annotation_fingerprints(annotations)) if annotations else {}
    if _members_key(source.members, source.annotation_keys, files, annotation_files, config) != source.key:
        raise ManifestError(
            f"{manifest.path}: study {source.study_uid} changed since its cache key {source.key} was resolved (files of "
            "its series were rewritten and indexed again); make a new Dataset (or list the studies again) to cache what they hold now",
            path=str(manifest.path),
        )


def role_volume(volume: Volume, role: Role, header: Any = None) -> Volume:
    """What a role contributes: its selected (and reduced) volumes, in SUV if asked.

    Several kept volumes (DWI b-values, echoes) stay a leading axis: one channel each.

    Raises
    ------
    SUVError
        If ``role.suv`` and the header lacks a tag the formula needs.
    """
    volume = apply_selection(volume, role.volumes)
    if role.suv:
        factor = suv_factor(header)
        volume = Volume(
            volume.array.astype(np.float32) * np.float32(factor), volume.affine, volume.axes, {**volume.meta, "suv_factor": factor}
        )
    return volume


def resample_roles(
    volumes: Mapping[str, Volume | None],
    masks: Iterable[tuple[str, Volume]],
    config: StudyConfig,
    *,
    device: str = "cpu",
) -> StudyArrays:
    """Put every role on the common grid (the array-level core).

    Roles are read from ``volumes`` in config order, the reference role
    first; each role is resampled in a worker thread while the next one is
    read, so a lazy mapping (:func:`compute_study`'s) overlaps loading and
    resampling.

    Parameters
    ----------
    volumes
        Role name to what it contributes (:func:`role_volume`: 3D, or N-D for
        several channels), None for a missing role.
    masks
        ``(role, mask volume)`` on that role's grid (``meta["kind"] == "mask"``),
        iterated after every role is read.
    config
        The study config: the common grid is the reference role's grid after
        the pipeline's deterministic part (orientation, spacing, shape), or
        the config's :class:`~dicomml.study.ReferenceGrid`.
    device
        Where resampling runs.

    Returns
    -------
    StudyArrays

    Raises
    ------
    FrameOfReferenceError
        If a role's FrameOfReferenceUID differs from the reference's and the
        config does not trust scanner coordinates.
    ConfigError
        If the reference role is missing, or a ``ReferenceGrid`` intersection
        is empty; if a role's series keeps another number of volumes than the
        role's :attr:`~dicomml.study.Role.channels`, or a selected b-value or
        echo matches several volumes (or none): a study sample has the same
        channels, with the same meaning, in every study.
    """
    from concurrent.futures import ThreadPoolExecutor

    from dicomml.pipeline.compute import _device
    from dicomml.transforms.functional.spatial import resample_mask

    target = _device(device)
    by_name = {r.name: r for r in config.roles}
    first = config.reference if isinstance(config.reference, str) else None
    order = ([first] if first else []) + [r.name for r in config.roles if r.name != first]
    if isinstance(config.reference, str):
        reference = volumes[config.reference]
        if reference is None:
            raise ConfigError(f"{config.name}: the reference role {config.reference} is missing")
        _check_channels(reference, by_name[config.reference])
        ref_image, _, affine = _reference_channels(reference, config)
        shape: tuple[int, ...] = ref_image.shape[-3:]
        frame = reference.meta.get("frame_of_reference_uid", "")
    else:
        present = [v for v in (volumes[name] for name in order) if v is not None]
        if not present:
            raise ConfigError(f"{config.name}: the study has none of its roles")
        affine, shape = explicit_grid(config.reference, present)
        frame = present[0].meta.get("frame_of_reference_uid", "")
    parts: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    # resampling (torch, no GIL) overlaps reading the next role's files
    with ThreadPoolExecutor(1, initializer=_one_intra_op_thread) as pool:
        for name in order:
            volume = volumes[name]
            info[name] = _provenance(volume)
            role = by_name[name]
            if volume is None:  # the role's channels all the same (Role.channels), zero
                parts[name] = np.zeros((role.channels, *shape), np.dtype(config.role_dtype(role)))
                info[name]["channels"] = [{"name": _channel_name(role, j)} for j in range(role.channels)]
                continue
            if name == first:
                parts[name] = ref_image.reshape(-1, *shape)
            else:
                _check_channels(volume, role)
                _check_frame(volume, name, frame, config)
                parts[name] = pool.submit(_onto, volume, role, config, affine, shape, target)
            info[name]["channels"] = _channels(volume, role, affine)
        arrays = [p.result() if hasattr(p, "result") else p for p in (parts[r.name] for r in config.roles)]
    info = {r.name: info[r.name] for r in config.roles}  # channel order
    image = np.empty((sum(len(a) for a in arrays), *shape), np.dtype(config.dtype))
    c = 0
    for a in arrays:
        image[c : c + len(a)] = a
        c += len(a)
    mask_parts, labels = [], []
    for owner, m in masks:  # every role's masks, the reference's too, nearest onto the common grid
        labels += [f"{owner}/{label}" for label in _labels(m)]
        x = torch.from_numpy(np.ascontiguousarray(m.array.reshape(-1, *m.spatial_shape))).to(target)
        mask_parts.append(resample_mask(x, m.affine, affine, shape).cpu().numpy())
    mask = None
    if mask_parts:
        mask = np.concatenate(mask_parts).astype(np.float32 if any(p.dtype.kind == "f" for p in mask_parts) else np.uint8)
    return StudyArrays(image, mask, affine, info, labels)


def explicit_grid(grid: ReferenceGrid, volumes: Sequence[Volume]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The affine (RAS+ mm) and shape of a :class:`~dicomml.study.ReferenceGrid` over some volumes.

    The grid's axes point along ``grid.orientation``; it covers the union or
    intersection of the volumes' voxel-centre boxes, measured along those
    axes, or has ``grid.size`` voxels centred on the union.

    Raises
    ------
    ConfigError
        If the intersection is empty.
    """
    from nibabel.orientations import axcodes2ornt

    ornt = axcodes2ornt(tuple(grid.orientation.upper()))
    axes = np.zeros((3, 3))
    axes[ornt[:, 0].astype(int), np.arange(3)] = ornt[:, 1]  # column j: where grid axis j points, in RAS
    lows, highs = [], []
    for v in volumes:
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in v.spatial_shape], indexing="ij")).reshape(3, -1)
        along = axes.T @ (v.affine[:3, :3] @ corners + v.affine[:3, 3:4])  # mm along the grid's axes
        lows.append(along.min(axis=1))
        highs.append(along.max(axis=1))
    union = (np.min(lows, axis=0), np.max(highs, axis=0))
    low, high = union if grid.extent == "union" or grid.size else (np.max(lows, axis=0), np.min(highs, axis=0))
    spacing = np.asarray(grid.spacing, dtype=np.float64)
    if grid.size is not None:
        size = np.asarray(grid.size)
        low = (low + high) / 2 - (size - 1) / 2 * spacing
    elif np.any(high < low):
        raise ConfigError(
            f"reference grid: the roles' boxes do not intersect (along {grid.orientation}: {low.round(1)} to {high.round(1)} mm)"
        )
    else:
        size = np.floor((high - low) / spacing + 1e-6).astype(int) + 1
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing
    affine[:3, 3] = axes @ low
    return affine, (int(size[0]), int(size[1]), int(size[2]))


def _reference_channels(volume: Volume, config: StudyConfig) -> tuple[np.ndarray, Any, np.ndarray]:
    """The reference role through the pipeline's deterministic part, cast to its role's dtype."""
    import dataclasses

    from dicomml.pipeline.compute import compute_entry

    role = next(r for r in config.roles if r.name == config.reference)
    det = dataclasses.replace(config.pipeline.deterministic, dtype=config.role_dtype(role))
    return compute_entry(volume, [], dataclasses.replace(config.pipeline, deterministic=det))


def _one_intra_op_thread() -> None:
    """Run this thread's torch ops on one core, the other reading files; the count is per thread only under OpenMP.

    Several intra-op threads per small op, next to a thread parsing headers,
    wait on each other at every op's barrier when the cores are busy.
    """
    if "parallel backend: OpenMP" in torch.__config__.parallel_info():
        torch.set_num_threads(1)


def _check_frame(volume: Volume, name: str, frame: str, config: StudyConfig) -> None:
    other = volume.meta.get("frame_of_reference_uid", "")
    if other != frame and not config.trust_scanner_coordinates:
        raise FrameOfReferenceError(
            f"study role {name} (series {volume.meta.get('series_key')}) has FrameOfReferenceUID {other!r}, "
            f"the reference {_reference_name(config)} {frame!r}: their world coordinates need not agree; register them, "
            "or set trust_scanner_coordinates: true",
            series_uid=volume.meta.get("series_uid"),
        )


def _reference_name(config: StudyConfig) -> str:
    return config.reference if isinstance(config.reference, str) else f"grid (first present role, {config.role_names})"


def _onto(volume: Volume, role: Role, config: StudyConfig, affine: np.ndarray, shape: Sequence[int], device: torch.device) -> np.ndarray:
    """One role's channels on the common grid, in its dtype: linear or nearest, 0 outside the role's field of view.

    The field of view is the role's voxels' extent (outer voxel centres ± half
    a voxel): inside it, linear interpolation takes the edge voxel's value
    where it runs past the outer centres; beyond it, 0 (SimpleITK's
    ``Resample`` with a default value of 0; ``padding="fov"``).
    """
    from dicomml.pipeline.compute import _cast
    from dicomml.transforms.functional.spatial import resample_image, resample_mask

    x = torch.from_numpy(np.ascontiguousarray(volume.array).reshape(-1, *volume.spatial_shape)).to(device)
    dtype = config.role_dtype(role)
    if role.interpolation == "nearest":
        return _cast(resample_mask(x, volume.affine, affine, shape).cpu().numpy().astype(np.float32), dtype)
    out = resample_image(x, volume.affine, affine, shape, padding="fov", dtype=getattr(torch, dtype))  # rounded and clipped as _cast
    return out.cpu().numpy()


def _channels(volume: Volume, role: Role, affine: np.ndarray) -> list[dict[str, Any]]:
    """Name and per-volume values (volume index, b-value, gradient along the grid's axes, echo time...) of a role's channels.

    Named by their place in the role (:func:`_channel_name`), as a missing role's are, whatever volumes the series holds.
    """
    from dicomml.pipeline.compute import volume_meta

    if not volume.axes:
        return [{"name": role.name}]
    meta = volume_meta(volume, affine)
    table = meta.get("volumes") or {}
    indices = meta.get("volume_indices") or list(range(volume.array.shape[0]))
    return [
        {"name": _channel_name(role, i), "volume_index": int(index), **{k: v[i] for k, v in table.items()}}
        for i, index in enumerate(indices)
    ]


def _channel_name(role: Role, j: int) -> str:
    """The role's name, or ``"role/j"`` for its channel j (0-based, the config's order) when it gives several."""
    return role.name if role.channels == 1 else f"{role.name}/{j}"


def _check_channels(volume: Volume, role: Role) -> None:
    """Refuse a present series unless its selected volumes are the role's channels: :attr:`Role.channels` of them, and
    under ``echo`` or ``b_value`` each value one volume (at least one when reduced).

    Raises
    ------
    ConfigError
        Naming the series, what the selection kept and the way out.
    """
    from dicomml.assemble.volumes import matching_volumes

    selection = role.volumes
    kept = int(volume.array.shape[0]) if volume.axes else 1
    matches = matching_volumes(volume, selection.by, selection.values) or []
    wrong = [(w, m) for w, m in zip(selection.values, matches) if not m or (len(m) > 1 and selection.reduce == "none")]
    if kept == role.channels and not wrong:
        return
    values = ", ".join(f"{v:g}" for v in selection.values)
    if selection.by == "all":
        asked = "without volumes, the role takes one volume"
    else:
        reduce = "" if selection.reduce == "none" else f", reduce: {selection.reduce}"
        asked = f"volumes {{by: {selection.by}, values: [{values}]{reduce}}} gives {role.channels} channel{'s' * (role.channels > 1)}"
    if wrong:
        found = ", ".join(_matched(volume, selection.by, w, m) for w, m in wrong)
        way = "give each b-value a role of its own with reduce: mean (a trace image), or select by index"
        if selection.by == "echo":
            way = "give each echo a role of its own (with reduce: mean for repeats), or select by index"
    elif selection.by == "all":
        found = f"the series has {kept} volumes along its {volume.axes[0]} axis"
        way = "select one (volumes: {by: index, values: [0]}) or reduce them (volumes: {by: all, reduce: mean})"
    else:
        indices = volume.meta.get("volume_indices")
        found = f"the series keeps {kept} volume{'s' * (kept > 1)}" + (f" (indices {indices})" if indices else " (it is 3D)")
        way = "every study's series must keep as many; narrow the role's where, or select volumes each series has"
    raise ConfigError(
        f"study role {role.name} (series {volume.meta.get('series_key')}): {asked}, but {found}; {way}",
        series_uid=volume.meta.get("series_uid"),
    )


def _matched(volume: Volume, by: str, value: float, matches: Sequence[int]) -> str:
    """``"b=1000 matches 3 volumes (3 gradient directions)"``, ``"echo 2 matches none of the series' volumes"``."""
    what = f"b={value:g}" if by == "b_value" else f"echo {value:g}"
    if not matches:
        return f"{what} matches none of the series' volumes"
    gradients = (volume.meta.get("volumes") or {}).get("gradient") or []
    directions = {tuple(np.round(gradients[i], 3)) for i in matches if i < len(gradients) and any(gradients[i])}
    return f"{what} matches {len(matches)} volumes" + (f" ({len(directions)} gradient directions)" if len(directions) > 1 else "")


def _provenance(volume: Volume | None) -> dict[str, Any]:
    if volume is None:
        return {"present": False}
    meta = volume.meta
    return {
        "present": True,
        "series_key": meta.get("series_key"),
        "series_uid": meta.get("series_uid"),
        "modality": meta.get("modality"),
        "frame_of_reference_uid": meta.get("frame_of_reference_uid"),
        "suv_factor": meta.get("suv_factor"),
        "volume_indices": meta.get("volume_indices"),
        "reduced": meta.get("reduced"),
        "source_files": list(meta.get("source_files", [])),
    }


def _labels(mask: Volume) -> list[str]:
    labels = mask.meta.get("labels") or {}
    return [str(v) for _, v in sorted(labels.items(), key=lambda kv: int(kv[0]))] if isinstance(labels, dict) else [str(v) for v in labels]


class _Loaded(Mapping[str, "Volume | None"]):
    """Role name to its volume, loaded on first access (so resample_roles reads a role while resampling the last)."""

    def __init__(self, load: Callable[[str], Volume | None], names: Sequence[str]) -> None:
        self._load, self._names, self._done = load, tuple(names), {}  # type: ignore[var-annotated]

    def __getitem__(self, name: str) -> Volume | None:
        if name not in self._done:
            self._done[name] = self._load(name)
        return self._done[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def compute_study(manifest: Manifest, source: StudySource, config: StudyConfig, *, device: str = "cpu") -> StudyArrays:
    """Load a study's member series and masks, and put them on the reference grid.

    Raises
    ------
    DicomMLError
        Whatever assembly, SUV conversion, mask decoding or the frame check raises.
    """
    from dicomml.assemble import load_series
    from dicomml.dicom.io import read_dataset
    from dicomml.seg import load_mask
    from dicomml.study.suv import first_acquired

    by_name = {r.name: r for r in config.roles}
    members = dict(source.members)
    det = config.pipeline.deterministic

    def load(role: str) -> Volume | None:
        key = members[role]
        if key is None:
            return None
        loaded = load_series(manifest, key, philips_scaling=det.philips_scaling, on_irregular=det.on_irregular, max_voxels=det.max_voxels)
        header = None
        if by_name[role].suv:  # the header of the series' first acquisition, by the manifest's times (QIBA's scan start)
            rows = manifest.table("instances", ["path", "acquisition_time"], [("series_key", "==", key)]).sort_by("path")
            first = first_acquired(rows.column("acquisition_time").to_pylist()) or 0
            header = read_dataset(str(rows.column("path")[first]), pixels=False, remote=manifest.remote)
        return role_volume(loaded, by_name[role], header)

    volumes = _Loaded(load, config.role_names)
    segments = None if "*" in det.masks else list(det.masks)
    masks = (  # read after every role, on its own grid
        (role, load_mask(manifest, annotation_key, reference=volumes[role], segments=segments, as_channels=True, max_voxels=det.max_voxels))
        for role, annotation_key in source.annotation_keys
        if volumes[role] is not None
    )
    return resample_roles(volumes, masks, config, device=device)


def preprocess_study(source: StudySource, manifest: Manifest, config: StudyConfig, cache: Any, *, device: str = "cpu") -> Any:
    """Compute and publish the cache entry of one study sample, unless it is already there.

    The entry is one Zarr group like a series entry: ``image`` (C, i, j, k),
    one channel per role and one chunk column per channel, ``mask`` and
    ``foreground`` when masks come along, and per-role provenance in its
    metadata; published atomically, keyed on every member's files, the
    roles and the config.

    Returns
    -------
    EntryInfo
        With ``series_key`` the study UID.

    Raises
    ------
    DicomMLError
        Whatever assembly, SUV conversion, mask decoding or the frame check raises.
    """
    import time

    from dicomml.pipeline.compute import EntryInfo

    start = time.perf_counter()
    computed = not cache.has(source.key)
    if computed:
        arrays = compute_study(manifest, source, config, device=device)
        _check_key(manifest, source, config)
        meta = {
            "kind": "study",
            "study_uid": source.study_uid,
            "axes": ["role"],
            "role_names": list(config.role_names),
            "channel_names": arrays.channel_names,
            "roles": arrays.roles,
            "annotation_keys": [f"{role}/{key}" for role, key in source.annotation_keys],
            "mask_labels": arrays.mask_labels,
            "config": config.canonical(),
            "config_name": config.name,
        }
        cache.put(source.key, arrays.image, arrays.affine, mask=arrays.mask, meta=meta, chunks=config.pipeline.deterministic.chunks)
    entry = cache.open(source.key)
    return EntryInfo(source.key, source.study_uid, computed, time.perf_counter() - start, entry.nbytes(), entry.shape)
