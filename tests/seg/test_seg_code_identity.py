"""A property code identifies a label only when it tells segments apart: generic or shared codes leave it to the name."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from seg_refs import write_ct

import dicomml
from dicomml.cli.main import cli
from dicomml.config import Annotations, parse_labels
from dicomml.errors import ConfigError
from dicomml.seg.labelmap import dataset_mask
from dicomml.seg.labels import SegmentName, label_table, match_label, segment_names

TISSUE = "SCT:85756007"


def test_a_generic_code_does_not_match_every_segment_to_the_first_label() -> None:
    # what `dicomml labels --format yaml` wrote for two uncoded labels of a dicomml SEG
    organ, tumor = parse_labels({"organ": {"value": 1, "codes": [TISSUE]}, "tumor": {"value": 2, "codes": [TISSUE]}})
    segments = [SegmentName(1, "organ", TISSUE, "Tissue"), SegmentName(2, "tumor", TISSUE, "Tissue")]
    assert [match_label([organ, tumor], s, segments) for s in segments] == [organ, tumor]
    assert match_label([organ, tumor], SegmentName(3, "spleen", TISSUE)) is None


def test_a_code_shared_by_segments_of_one_seg_leaves_the_match_to_their_names() -> None:
    left, right, kidney = parse_labels({"left kidney": 1, "right kidney": 2, "kidney": {"value": 3, "codes": ["SCT:64033007"]}})
    segments = [SegmentName(1, "Left Kidney", "SCT:64033007"), SegmentName(2, "right kidney", "SCT:64033007")]
    assert [match_label([left, right, kidney], s, segments) for s in segments] == [left, right]
    # alone in its SEG the code identifies it, whatever its name (the documented behaviour)
    assert match_label([left, right, kidney], segments[0], segments[:1]) == kidney


def test_config_refuses_one_identifying_code_on_two_labels_naming_both() -> None:
    with pytest.raises(ConfigError, match=r"'liver' and 'organ' both have code SCT:10200004") as caught:
        parse_labels({"liver": {"value": 1, "codes": ["SCT:10200004"]}, "organ": {"value": 2, "codes": ["SRT:T-62000", "SCT:10200004"]}})
    assert "\n" not in str(caught.value)
    assert len(parse_labels({"a": {"value": 1, "codes": [TISSUE]}, "b": {"value": 2, "codes": [TISSUE]}})) == 2  # generic: harmless


@pytest.fixture(scope="module")
def two_segs(tmp_path_factory):
    """A CT and two SEGs written by dicomml with uncoded labels (organ/tumor, x/y), indexed."""
    folder = tmp_path_factory.mktemp("uncoded")
    write_ct(folder / "ct", (6, 24, 24), 1.0)
    ct = dicomml.load_files(sorted((folder / "ct").iterdir()))
    organ_tumor = np.zeros((2, *ct.spatial_shape), np.uint8)
    organ_tumor[0, 1:5, 2:12, 2:12] = 1
    organ_tumor[1, 2:4, 14:20, 14:20] = 1
    xy = np.zeros(ct.spatial_shape, np.uint8)
    xy[1:3, 3:6, 15:21] = 1
    xy[3:6, 16:22, 3:6] = 2
    dicomml.write_seg(organ_tumor, folder / "ct", {"organ": 1, "tumor": 2}, folder / "seg_a.dcm", affine=ct.affine)
    dicomml.write_seg(xy, folder / "ct", {"x": 1, "y": 2}, folder / "seg_b.dcm", affine=ct.affine)
    manifest = dicomml.index(folder, folder / "manifest")
    return folder, manifest, ct


def test_uncoded_labels_of_dicomml_segs_each_get_their_own_channel(two_segs) -> None:
    folder, manifest, ct = two_segs
    table = label_table(manifest)
    assert set(table.code) == {TISSUE} and not table.identifies.any()  # Tissue is write_seg's fallback, no identity
    labels = parse_labels({name: {"value": v, "codes": [TISSUE]} for v, name in enumerate(["organ", "tumor", "x", "y"], 1)})
    keys = manifest.annotations.annotation_key.tolist()
    mask = dataset_mask(manifest, keys, ct, Annotations(), labels)
    # the oracle: highdicom's decoding of each segment, by name
    expected = {}
    for path in ("seg_a.dcm", "seg_b.dcm"):
        seg = hd.seg.segread(folder / path)
        uids = [ds.SOPInstanceUID for ds in dicomml.seg.write.source_grid(folder / "ct").datasets]
        pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=list(seg.segment_numbers), combine_segments=False)
        for s in segment_names(folder / path):
            expected[s.label] = pixels[..., s.number - 1]
    assert mask.meta["present"] == [True, True, True, True]
    for channel, name in enumerate(["organ", "tumor", "x", "y"]):
        assert np.array_equal(mask.array[channel], expected[name]), name


def _labels_yaml(manifest) -> dict:
    listed = CliRunner().invoke(cli, ["labels", str(manifest.path), "--format", "yaml"])
    assert listed.exit_code == 0, listed.output
    return yaml.safe_load(listed.output)["labels"]


def test_labels_yaml_lists_no_generic_code_and_one_label_per_identifying_code(two_segs, tmp_path) -> None:
    _, manifest, _ = two_segs
    labels = _labels_yaml(manifest)
    assert list(labels) == ["organ", "tumor", "x", "y"] and all(entry["codes"] == [] for entry in labels.values())
    parse_labels(labels)  # a valid config, whose labels each get their own channel
    # one structure under two names in two SEGs, with its code: one label, the other name its alias
    write_ct(tmp_path / "ct", (6, 24, 24), 1.0)
    ct = dicomml.load_files(sorted((tmp_path / "ct").iterdir()))
    liver = np.zeros(ct.spatial_shape, np.uint8)
    liver[1:4, 4:10, 4:10] = 1
    for name, path in (("liver", "a.dcm"), ("Leber", "b.dcm")):
        dicomml.write_seg(liver, tmp_path / "ct", {name: {"value": 1, "codes": ["SCT:10200004"]}}, tmp_path / path, affine=ct.affine)
    labels = _labels_yaml(dicomml.index(tmp_path, tmp_path / "manifest"))
    assert labels == {"leber": {"value": 1, "codes": ["SCT:10200004"], "aliases": ["Leber", "liver"]}}
    parse_labels(labels)
