"""The manifest's versioned schema: one Arrow schema per table.

A manifest is a folder::

    MANIFEST/
      manifest.json          schema_version, include_phi, sources, counts
      instances/part-*.parquet
      errors/part-*.parquet  (files that could not be read)
      errors/crawl.parquet   (what the walk of the sources met: loops, odd entries)
      series/part-0.parquet
      annotations/part-0.parquet

Every table is plain Parquet: pandas, polars, DuckDB and Spark read it as is.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["ANNOTATIONS", "ERRORS", "IMAGE2D_FIELDS", "SCHEMA_VERSION", "SERIES", "instances_schema"]

#: Bumped whenever a column changes meaning or type; a manifest of another version is rebuilt.
#: 2: ``series_key`` also hashes SeriesNumber and the transfer syntax. 3: ``philips_scale_slope``.
#: 4: the 2D imaging columns (:data:`IMAGE2D_FIELDS`).
SCHEMA_VERSION = 4

_F64 = pa.float64()
_F64S = pa.list_(pa.float64())
_STRS = pa.list_(pa.string())
_KIND_TYPES = {"text": pa.string(), "texts": _STRS, "int": pa.int64(), "float": _F64, "floats": _F64S}

#: 2D / projection imaging columns (:mod:`dicomml.indexer.image2d` fills them; the spacing
#: source is one of :data:`dicomml.imaging2d.spacing.SPACING_SOURCES`).
IMAGE2D_FIELDS = [
    pa.field("view", pa.string()),
    pa.field("laterality", pa.string()),
    pa.field("patient_orientation", pa.string()),
    pa.field("burned_in", pa.bool_()),
    pa.field("has_voi_lut_table", pa.bool_()),
    pa.field("has_modality_lut_table", pa.bool_()),
    pa.field("presentation_lut_shape", pa.string()),
    pa.field("spacing_source", pa.string()),
]

_FILE = [
    pa.field("path", pa.string(), nullable=False),
    pa.field("folder", pa.string()),
    pa.field("size", pa.int64()),
    pa.field("mtime_ns", pa.int64()),
]


def instances_schema(include_phi: bool) -> pa.Schema:
    """Schema of the ``instances`` table (with the identifier columns when ``include_phi``)."""
    from dicomml.indexer.records import FIELDS, PHI_FIELDS  # pydicom: not needed by a manifest reader

    fields = [
        *_FILE,
        pa.field("series_key", pa.string()),
        pa.field("transfer_syntax_uid", pa.string()),
        pa.field("patient_key", pa.string()),
        *(pa.field(name, _KIND_TYPES[kind]) for name, (_, kind) in FIELDS.items()),
        pa.field("rows", pa.int64()),
        pa.field("columns", pa.int64()),
        pa.field("n_frames", pa.int64()),
        pa.field("frame_numbers", pa.list_(pa.int32())),
        pa.field("frame_positions", _F64S),
        pa.field("image_position", _F64S),
        pa.field("image_orientation", _F64S),
        pa.field("pixel_spacing", _F64S),
        pa.field("rescale_slope", _F64),
        pa.field("rescale_intercept", _F64),
        pa.field("philips_scale_slope", _F64),  # Philips' private MR Scale Slope (2005,100E), see dicomml.dicom.philips
        pa.field("echo_key", _F64),
        pa.field("temporal_key", _F64),
        pa.field("mosaic_tiles", pa.int64()),
        pa.field("segmentation_type", pa.string()),
        pa.field("n_segments", pa.int64()),
        pa.field("labels", _STRS),
        pa.field("referenced_series_uids", _STRS),
        pa.field("referenced_sop_uids", _STRS),
        *IMAGE2D_FIELDS,
    ]
    if include_phi:
        fields += [pa.field(name, _KIND_TYPES[kind]) for name, (_, kind) in PHI_FIELDS.items()]
    return pa.schema(fields)


ERRORS = pa.schema(
    [
        *_FILE,
        pa.field("stage", pa.string()),  # "crawl" or "read"
        pa.field("error_type", pa.string()),
        pa.field("exception", pa.string()),
        pa.field("tag", pa.string()),
        pa.field("message", pa.string()),
    ]
)

SERIES = pa.schema(
    [
        pa.field("series_key", pa.string(), nullable=False),
        pa.field("series_instance_uid", pa.string()),
        pa.field("study_instance_uid", pa.string()),
        pa.field("frame_of_reference_uid", pa.string()),
        pa.field("patient_key", pa.string()),
        pa.field("modality", pa.string()),
        pa.field("sop_class_uid", pa.string()),
        pa.field("series_number", pa.int64()),
        pa.field("series_description", pa.string()),
        pa.field("manufacturer", pa.string()),
        pa.field("folder", pa.string()),
        pa.field("n_files", pa.int64()),
        pa.field("n_frames", pa.int64()),
        pa.field("n_slices", pa.int64()),
        pa.field("n_volumes", pa.int64()),
        pa.field("rows", pa.int64()),
        pa.field("columns", pa.int64()),
        pa.field("shape", pa.list_(pa.int64())),
        pa.field("pixel_spacing", _F64S),
        pa.field("slice_spacing", _F64),
        pa.field("uniform_spacing", pa.bool_()),
        pa.field("missing_slices", pa.int64()),
        pa.field("duplicate_slices", pa.int64()),
        pa.field("tilt_deg", _F64),
        pa.field("orientation", _F64S),
        pa.field("orientation_code", pa.string()),
        pa.field("first_position", _F64S),
        pa.field("transfer_syntaxes", _STRS),
        pa.field("shared_uid_keys", _STRS),
        pa.field("usable", pa.bool_()),
        pa.field("reason", pa.string()),
    ]
)

ANNOTATIONS = pa.schema(
    [
        pa.field("annotation_key", pa.string(), nullable=False),
        pa.field("path", pa.string()),
        pa.field("frame_numbers", pa.list_(pa.int32())),
        pa.field("modality", pa.string()),
        pa.field("sop_class_uid", pa.string()),
        pa.field("sop_instance_uid", pa.string()),
        pa.field("series_instance_uid", pa.string()),
        pa.field("frame_of_reference_uid", pa.string()),
        pa.field("segmentation_type", pa.string()),
        pa.field("n_segments", pa.int64()),
        pa.field("labels", _STRS),
        pa.field("referenced_series_uid", pa.string()),
        pa.field("referenced_series_key", pa.string()),
        pa.field("other_series_keys", _STRS),
        pa.field("link_method", pa.string()),
        pa.field("link_problem", pa.string()),
    ]
)
