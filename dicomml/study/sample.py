"""One study sample: every role's series on the reference grid, plus the masks of any of them.

Adapter, then core: :func:`study_sources` reads the manifest (which series
fill which role, their files, the cache key); :func:`compute_study` loads the
series and calls :func:`resample_roles`, which works on Volumes only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from dicomml.assemble.volumes import apply_selection
from dicomml.cache.key import FORMAT_VERSION, source_fingerprint
from dicomml.errors import ConfigError, FrameOfReferenceError
from dicomml.indexer.manifest import Manifest
from dicomml.study.config import Role, StudyConfig
from dicomml.study.roles import StudyMatch, match_studies
from dicomml.study.suv import suv_factor
from dicomml.volume import Volume

__all__ = [
    "StudyArrays",
    "StudySource",
    "compute_study",
    "preprocess_study",
    "resample_roles",
    "role_volume",
    "study_key",
    "study_sources",
]


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


@dataclass(frozen=True)
class StudyArrays:
    """A computed study sample.

    Attributes
    ----------
    image
        (C, i, j, k), one channel per role in config order, in ``config.dtype``.
    mask
        (S, i, j, k) masks on the same grid, or None.
    affine
        4x4, (i, j, k) to RAS+ mm: the reference grid.
    roles
        Per role: ``present``, ``series_key``, ``series_uid``, ``modality``,
        ``frame_of_reference_uid``, ``suv_factor``, ``volume_indices``, source files.
    mask_labels
        One label per mask channel, ``"role/label"``.
    """

    image: np.ndarray
    mask: np.ndarray | None
    affine: np.ndarray
    roles: dict[str, dict[str, Any]]
    mask_labels: list[str]


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
    files = _group(manifest.instance_fingerprints(keys), "series_key") if keys else {}
    annotations = _annotations(manifest, keys) if config.pipeline.deterministic.masks else {}
    out = []
    for row in usable.itertuples(index=False):
        members = tuple((role, None if pd.isna(getattr(row, role)) else str(getattr(row, role))) for role in config.role_names)
        by_role: dict[str, list[tuple[Any, ...]]] = {}
        anns: list[tuple[str, str]] = []
        for role, key in members:
            if key is None:
                continue
            by_role[role] = list(files.get(key, []))
            for annotation_key, ann_files in annotations.get(key, []):
                anns.append((role, annotation_key))
                by_role[f"{role}/{annotation_key}"] = list(ann_files)
        out.append(StudySource(str(row.study_instance_uid), study_key(by_role, config), members, tuple(anns)))
    return out


def role_volume(volume: Volume, role: Role, header: Any = None) -> Volume:
    """The 3D volume a role contributes: its selected (and reduced) volumes, in SUV if asked.

    Raises
    ------
    ConfigError
        If the selection keeps several volumes and does not reduce them.
    SUVError
        If ``role.suv`` and the header lacks a tag the formula needs.
    """
    volume = apply_selection(volume, role.volumes)
    if volume.axes:
        raise ConfigError(
            f"role {role.name}: series {volume.meta.get('series_key', '?')} keeps {volume.array.shape[0]} volumes "
            f"of its {volume.axes[0]} axis; a role is one channel, so select one (volumes: {{by: index, values: [0]}}) "
            "or reduce them (reduce: mean)"
        )
    if role.suv:
        factor = suv_factor(header)
        volume = Volume(volume.array.astype(np.float32) * np.float32(factor), volume.affine, (), {**volume.meta, "suv_factor": factor})
    return volume


def resample_roles(
    volumes: Mapping[str, Volume | None],
    masks: Sequence[tuple[str, Volume]],
    config: StudyConfig,
    *,
    device: str = "cpu",
) -> StudyArrays:
    """Put every role on the reference grid (the array-level core).

    Parameters
    ----------
    volumes
        Role name to its 3D volume (:func:`role_volume`), None for a missing role.
    masks
        ``(role, mask volume)`` on that role's grid (``meta["kind"] == "mask"``).
    config
        The study config: the reference role's grid after the pipeline's
        deterministic part (orientation, spacing, shape) is the common grid.
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
    """
    from dicomml.pipeline.compute import _cast, _device, compute_entry
    from dicomml.transforms.functional.spatial import resample_image, resample_mask

    target = _device(device)
    reference = volumes[config.reference]
    if reference is None:
        raise ConfigError(f"{config.name}: the reference role {config.reference} is missing")
    ref_image, _, affine = compute_entry(reference, [], _float_pipeline(config), device=device)
    shape = ref_image.shape[-3:]
    channels, info = [], {}
    frame = reference.meta.get("frame_of_reference_uid", "")
    for role in config.roles:
        volume = volumes.get(role.name)
        info[role.name] = _provenance(volume)
        if volume is None:
            channels.append(np.zeros(shape, np.float32))
            continue
        if role.name == config.reference:
            channels.append(ref_image)
            continue
        other = volume.meta.get("frame_of_reference_uid", "")
        if other != frame and not config.trust_scanner_coordinates:
            raise FrameOfReferenceError(
                f"study role {role.name} (series {volume.meta.get('series_key')}) has FrameOfReferenceUID {other!r}, "
                f"the reference {config.reference} {frame!r}: their world coordinates need not agree; register them, "
                "or set trust_scanner_coordinates: true",
                series_uid=volume.meta.get("series_uid"),
            )
        x = torch.from_numpy(np.ascontiguousarray(volume.array))[None].to(target)
        channels.append(resample_image(x, volume.affine, affine, shape, padding="zeros")[0].cpu().numpy())
    image = np.stack([_cast(np.asarray(c, dtype=np.float32), config.dtype) for c in channels])
    parts, labels = [], []
    for owner, m in masks:  # every role's masks, the reference's too, nearest onto the common grid
        labels += [f"{owner}/{label}" for label in _labels(m)]
        x = torch.from_numpy(np.ascontiguousarray(m.array.reshape(-1, *m.spatial_shape))).to(target)
        parts.append(resample_mask(x, m.affine, affine, shape).cpu().numpy())
    mask = None
    if parts:
        mask = np.concatenate(parts).astype(np.float32 if any(p.dtype.kind == "f" for p in parts) else np.uint8)
    return StudyArrays(image, mask, affine, info, labels)


def _float_pipeline(config: StudyConfig) -> Any:
    """The study's pipeline with a float32 reference image, cast with the other roles afterwards."""
    import dataclasses

    pipeline = config.pipeline
    return dataclasses.replace(pipeline, deterministic=dataclasses.replace(pipeline.deterministic, dtype="float32"))


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

    by_name = {r.name: r for r in config.roles}
    volumes: dict[str, Volume | None] = {}
    for role, key in source.members:
        if key is None:
            volumes[role] = None
            continue
        det = config.pipeline.deterministic
        loaded = load_series(manifest, key, philips_scaling=det.philips_scaling, on_irregular=det.on_irregular, max_voxels=det.max_voxels)
        header = (
            read_dataset(str(manifest.series_files(key)["path"].iloc[0]), pixels=False, remote=manifest.remote)
            if by_name[role].suv
            else None
        )
        volumes[role] = role_volume(loaded, by_name[role], header)
    wanted = config.pipeline.deterministic.masks
    segments = None if "*" in wanted else list(wanted)
    masks = []
    for role, annotation_key in source.annotation_keys:
        reference = volumes[role]
        if reference is not None:
            masks.append((role, load_mask(manifest, annotation_key, reference=reference, segments=segments, as_channels=True)))
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
        meta = {
            "kind": "study",
            "study_uid": source.study_uid,
            "axes": ["role"],
            "role_names": list(config.role_names),
            "roles": arrays.roles,
            "annotation_keys": [f"{role}/{key}" for role, key in source.annotation_keys],
            "mask_labels": arrays.mask_labels,
            "config": config.canonical(),
            "config_name": config.name,
        }
        cache.put(source.key, arrays.image, arrays.affine, mask=arrays.mask, meta=meta, chunks=config.pipeline.deterministic.chunks)
    entry = cache.open(source.key)
    return EntryInfo(source.key, source.study_uid, computed, time.perf_counter() - start, entry.nbytes(), entry.shape)
