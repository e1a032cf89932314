"""The dataset's label map: segments matched by code, name and alias; `dicomml labels` counts them."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from seg_refs import write_annotated_series

import dicomml
from dicomml.config import Label, parse_labels
from dicomml.errors import ConfigError
from dicomml.seg.labels import SegmentName, label_table, match_label, segment_names


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotated")
    paths = write_annotated_series(folder)
    manifest = dicomml.index(folder, folder / "manifest")
    return folder, paths, manifest


def test_segment_names_read_labels_and_codes_of_seg_and_rtstruct(annotated) -> None:
    _, paths, _ = annotated
    assert segment_names(paths["seg_b"]) == [
        SegmentName(1, "LIVER", "SRT:T-62000", "Liver"),
        SegmentName(2, "Tumour", "SCT:108369006", "Neoplasm"),
    ]
    assert segment_names(paths["rt_good"]) == [SegmentName(1, "liver")]


def test_labels_match_by_code_then_name_or_alias_case_insensitively() -> None:
    liver, tumor = parse_labels(
        {
            "liver": {"value": 1, "codes": ["SCT:10200004", "SRT:T-62000"], "aliases": ["leber"]},
            "tumor": {"value": 2, "aliases": ["tumour"]},
        }
    )
    assert match_label([liver, tumor], SegmentName(1, "organ", "SRT:T-62000")) == liver
    assert match_label([liver, tumor], SegmentName(1, "LEBER", "SCT:85756007")) == liver
    assert match_label([liver, tumor], SegmentName(2, "Tumour ")) == tumor
    assert match_label([liver, tumor], SegmentName(3, "spleen")) is None


def test_label_config_forms_and_errors() -> None:
    assert [(label.name, label.value) for label in parse_labels(["liver", "tumor"])] == [("liver", 1), ("tumor", 2)]
    assert parse_labels({"tumor": 2, "liver": 1})[0] == Label("liver", 1)
    with pytest.raises(ConfigError, match="SCHEME:VALUE"):
        parse_labels({"liver": {"value": 1, "codes": ["10200004"]}})
    with pytest.raises(ConfigError, match=">= 1"):
        parse_labels({"background": 0})
    with pytest.raises(ConfigError, match=r"labels\[liver\]\.colour: unknown key"):
        parse_labels({"liver": {"value": 1, "colour": [1, 2, 3]}})


def test_label_table_counts_every_spelling_and_code(annotated) -> None:
    _, _, manifest = annotated
    table = label_table(manifest)
    rows = {(r.label, r.code, r.modality): (r.annotations, r.series) for r in table.itertuples()}
    assert rows[("Liver", "SCT:10200004", "SEG")] == (1, 1)
    assert rows[("LIVER", "SRT:T-62000", "SEG")] == (1, 1)
    assert rows[("leber", "SCT:85756007", "SEG")] == (1, 1)
    assert rows[("liver", "", "RTSTRUCT")] == (2, 1)  # the good and the bad RTSTRUCT
    assert rows[("Tumour", "SCT:108369006", "SEG")] == (1, 1)


def _dicomml(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from dicomml.cli.main import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=dict(os.environ), timeout=300)


def test_labels_cli_prints_the_table_and_a_yaml_starting_point(annotated) -> None:
    _, _, manifest = annotated
    result = _dicomml("labels", str(manifest.path))
    assert result.returncode == 0, result.stderr
    assert "SRT:T-62000" in result.stdout and "Tumour" in result.stdout
    starting = yaml.safe_load(_dicomml("labels", str(manifest.path), "--format", "yaml").stdout)["labels"]
    assert set(starting["liver"]["codes"]) == {"SCT:10200004", "SRT:T-62000"}
    assert {"Liver", "LIVER"} <= set(starting["liver"]["aliases"])
    assert parse_labels(starting)  # the config reads it back


LABELS = parse_labels(
    {
        "liver": {"value": 1, "codes": ["SCT:10200004", "SRT:T-62000"], "aliases": ["leber"]},
        "tumor": {"value": 2, "aliases": ["tumour"]},
        "spleen": {"value": 3, "codes": ["SCT:78961009"]},
    }
)


def _keys(manifest, paths) -> dict[str, str]:
    rows = manifest.annotations
    return {
        name: rows.loc[rows.path.str.endswith(f"{name}.dcm"), "annotation_key"].iloc[0]
        for name in ("seg_a", "seg_b", "seg_c", "rt_good", "rt_bad")
    }


def _reference(manifest):
    return dicomml.load_series(manifest, dicomml.pairs(manifest).series_key.iloc[0])


def test_three_segs_and_two_rtstructs_give_one_stable_label_map(annotated) -> None:
    from dicomml.config import Annotations
    from dicomml.seg.labelmap import dataset_mask

    _, paths, manifest = annotated
    keys = _keys(manifest, paths)
    reference = _reference(manifest)
    mask = dataset_mask(manifest, list(keys.values()), reference, Annotations(on_bad="skip"), LABELS)
    assert mask.array.shape == (3,) + reference.spatial_shape
    assert mask.meta["present"] == [True, True, False]  # spleen: an empty channel, flagged absent
    assert not mask.array[2].any()
    assert list(mask.meta["skipped"]) == [keys["rt_bad"]] and "SegReferenceError" in mask.meta["skipped"][keys["rt_bad"]]
    assert set(mask.meta["annotation_keys"]) == {keys[n] for n in ("seg_a", "seg_b", "seg_c", "rt_good")}
    # the liver of every annotation is the same ellipse; the reference grid is the header grid's slice order
    liver, tumor = paths["liver"], paths["tumor"]
    np.testing.assert_array_equal(mask.array[0], liver)
    np.testing.assert_array_equal(mask.array[1], tumor)
    with pytest.raises(dicomml.errors.SegReferenceError):
        dataset_mask(manifest, list(keys.values()), reference, Annotations(on_bad="raise"), LABELS)


def test_label_map_mode_and_choice_among_annotations(annotated) -> None:
    from dicomml.config import Annotations
    from dicomml.seg.labelmap import choose_annotations, dataset_mask

    _, paths, manifest = annotated
    keys = _keys(manifest, paths)
    segs = [keys["seg_a"], keys["seg_b"], keys["seg_c"]]
    assert choose_annotations(manifest, segs, "newest") == [keys["seg_c"]]
    assert choose_annotations(manifest, segs + [keys["rt_good"]], "description:SEG_B") == [keys["seg_b"]]
    assert choose_annotations(manifest, segs, "each") == segs
    reference = _reference(manifest)
    newest = dataset_mask(manifest, [keys["seg_c"]], reference, Annotations(), LABELS)
    assert newest.meta["present"] == [True, False, False]
    single = dataset_mask(manifest, [keys["seg_b"]], reference, Annotations(mode="label_map"), LABELS)
    expected = np.where(paths["tumor"] != 0, 2, paths["liver"])  # the tumour inside the liver wins
    np.testing.assert_array_equal(single.array[0], expected)
    assert single.array.shape == (1,) + reference.spatial_shape


def test_annotation_records_and_choice_by_a_predicate(annotated) -> None:
    import datetime

    from dicomml.seg.labelmap import annotation_records, choose_annotations

    _, paths, manifest = annotated
    keys = _keys(manifest, paths)
    segs = [keys["seg_a"], keys["seg_b"], keys["seg_c"]]
    records = {r.annotation_key: r for r in annotation_records(manifest, segs + [keys["rt_good"]])}
    seg_b = records[keys["seg_b"]]
    assert (seg_b.modality, seg_b.description, seg_b.series_number, seg_b.creator) == ("SEG", "seg_b", 51, "Expert^B")
    assert seg_b.datetime == datetime.datetime(2026, 1, 2, 10, 0)
    assert seg_b.labels == ("LIVER", "Tumour") and seg_b.codes == ("SRT:T-62000", "SCT:108369006")
    assert records[keys["rt_good"]].modality == "RTSTRUCT" and records[keys["rt_good"]].labels == ("liver",)
    # a bool keeps every annotation it is True for (maybe none); its order is the order given
    assert choose_annotations(manifest, segs, lambda r: r.creator.startswith("Expert")) == [keys["seg_a"], keys["seg_b"]]
    assert choose_annotations(manifest, segs, lambda r: "SCT:108369006" in r.codes) == [keys["seg_b"]]
    assert choose_annotations(manifest, segs, lambda r: r.series_number == 99) == []
    # any other value is a sort key: the largest wins
    assert choose_annotations(manifest, segs, lambda r: len(r.segments)) == [keys["seg_b"]]
    assert choose_annotations(manifest, segs, lambda r: -r.datetime.timestamp()) == [keys["seg_a"]]  # the oldest
    assert choose_annotations(manifest, segs, lambda r: (r.creator != "Resident^C", r.datetime)) == [keys["seg_b"]]
    with pytest.raises(ConfigError, match="cannot be compared"):
        choose_annotations(manifest, segs, lambda r: r.series_number if r.series_number != 51 else "x")
