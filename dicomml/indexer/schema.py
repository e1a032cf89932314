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

__all__ = [
    "ANNOTATION_MODALITIES",
    "ANNOTATIONS",
    "DERIVED_RULES",
    "ERRORS",
    "FIELDS",
    "IMAGE2D_FIELDS",
    "PHI_FIELDS",
    "SCHEMA_VERSION",
    "SERIES",
    "instances_schema",
]

#: Bumped whenever a column changes meaning or type; a manifest of another version is rebuilt.
#: 2: ``series_key`` also hashes SeriesNumber and the transfer syntax. 3: ``philips_scale_slope``.
#: 4: the 2D imaging columns (:data:`IMAGE2D_FIELDS`).
SCHEMA_VERSION = 4
#: Bumped whenever the rules that derive ``series`` and ``annotations`` from ``instances`` change (no column
#: changes): a rerun rebuilds those two tables from the rows it holds, without reading a file again.
#: 1: a group of 2D images that makes no volume says so (:data:`~dicomml.imaging2d.modalities.IMAGES_2D`).
#: 2: series split across folders or by the key's orientation rounding, files too short to judge and time points
#: with unequal slices are not usable, each saying why. 3: a group of colour images is not a usable volume.
#: 4: PALETTE COLOR groups are colour images; parts of one volume in other transfer syntaxes are not usable.
DERIVED_RULES = 4
#: Modalities indexed as annotations (linked to the image series they describe).
ANNOTATION_MODALITIES = ("SEG", "RTSTRUCT")

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


# column -> (tag, how the value is kept)
#   "text": one string (multi-valued text kept with its backslashes)
#   "texts": list of strings, "int": first value as int, "float": first value as float,
#   "floats": list of floats
FIELDS: dict[str, tuple[int, str]] = {
    "sop_instance_uid": (0x00080018, "text"),
    "sop_class_uid": (0x00080016, "text"),
    "series_instance_uid": (0x0020000E, "text"),
    "study_instance_uid": (0x0020000D, "text"),
    "frame_of_reference_uid": (0x00200052, "text"),
    "modality": (0x00080060, "text"),
    "series_number": (0x00200011, "int"),
    "instance_number": (0x00200013, "int"),
    "acquisition_number": (0x00200012, "int"),
    "temporal_position": (0x00200100, "int"),
    "echo_number": (0x00180086, "int"),
    "echo_time": (0x00180081, "float"),
    "trigger_time": (0x00181060, "float"),
    "acquisition_time": (0x00080032, "text"),
    "number_of_frames": (0x00280008, "int"),
    "samples_per_pixel": (0x00280002, "int"),
    "bits_allocated": (0x00280100, "int"),
    "bits_stored": (0x00280101, "int"),
    "pixel_representation": (0x00280103, "int"),
    "photometric_interpretation": (0x00280004, "text"),
    "slice_thickness": (0x00180050, "float"),
    "spacing_between_slices": (0x00180088, "float"),
    "rescale_type": (0x00281054, "text"),
    "window_center": (0x00281050, "floats"),
    "window_width": (0x00281051, "floats"),
    "image_type": (0x00080008, "texts"),
    "series_description": (0x0008103E, "text"),
    "study_description": (0x00081030, "text"),
    "body_part": (0x00180015, "text"),
    "manufacturer": (0x00080070, "text"),
    "model": (0x00081090, "text"),
    "kvp": (0x00180060, "float"),
    "convolution_kernel": (0x00181210, "text"),
    "contrast_agent": (0x00180010, "text"),
    "study_date": (0x00080020, "text"),
    "patient_position": (0x00185100, "text"),
}

#: Direct identifiers: stored only with ``include_phi=True``.
PHI_FIELDS: dict[str, tuple[int, str]] = {
    "patient_name": (0x00100010, "text"),
    "patient_id": (0x00100020, "text"),
    "patient_birth_date": (0x00100030, "text"),
    "patient_address": (0x00101040, "text"),
    "patient_telephone": (0x00102154, "text"),
    "other_patient_ids": (0x00101000, "text"),
    "accession_number": (0x00080050, "text"),
    "institution_name": (0x00080080, "text"),
    "institution_address": (0x00080081, "text"),
    "referring_physician": (0x00080090, "text"),
    "performing_physician": (0x00081050, "text"),
    "operators_name": (0x00081070, "text"),
}


def instances_schema(include_phi: bool) -> pa.Schema:
    """Schema of the ``instances`` table (with the identifier columns when ``include_phi``)."""
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
