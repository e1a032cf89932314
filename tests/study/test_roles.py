"""Role rules on a built manifest: matched / ambiguous / missing, tie-breaks and the missing-role policy."""

from __future__ import annotations

import pandas as pd
import pytest

from dicomml.errors import ConfigError
from dicomml.study import match_studies

A, B, C = (f"1.2.826.0.1.3680043.8.498.{i}" for i in (1, 2, 3))


def _row(match, uid):
    return match.table.set_index("study_instance_uid").loc[uid]


def test_summary_counts_matched_ambiguous_missing_per_role(cohort, roles_config):
    summary = match_studies(cohort, roles_config()).summary().set_index("role")
    assert summary.loc["t1"].to_dict() == {"matched": 2, "ambiguous": 0, "unresolved": 0, "missing": 1}
    assert summary.loc["t2"].to_dict() == {"matched": 2, "ambiguous": 1, "unresolved": 0, "missing": 0}
    assert summary.loc["flair"].to_dict() == {"matched": 2, "ambiguous": 0, "unresolved": 0, "missing": 1}


def test_newest_and_oldest_pick_by_acquisition_time(cohort, roles_config):
    series = cohort.series.set_index("series_key")["series_description"]
    newest = _row(match_studies(cohort, roles_config()), A)
    oldest = _row(match_studies(cohort, roles_config(role_t2={"prefer": "oldest"})), A)
    assert series[newest["t2"]] == "t2_new" and series[oldest["t2"]] == "t2_old"


def test_prefer_none_leaves_an_ambiguous_study_out(cohort, roles_config):
    match = match_studies(cohort, roles_config(role_t2={"prefer": "none"}))
    row = _row(match, A)
    assert pd.isna(row["t2"]) and not row["usable"] and "t2 ambiguous (2 series)" in row["status"]
    assert match.summary().set_index("role").loc["t2", "unresolved"] == 1


def test_missing_policy_skip_or_empty_and_the_reference_is_never_optional(cohort, roles_config):
    skip = match_studies(cohort, roles_config())
    assert list(skip.usable["study_instance_uid"]) == [A]
    assert _row(skip, B)["status"] == "flair missing" and _row(skip, C)["status"] == "t1 missing"
    empty = match_studies(cohort, roles_config(missing="empty"))
    assert list(empty.usable["study_instance_uid"]) == [A, B]
    assert set(empty.skipped["study_instance_uid"]) == {C}
    # a grid tied to no role needs no reference role: C (no t1) makes a sample with an empty t1
    grid = match_studies(cohort, roles_config(missing="empty", reference={"spacing": [4, 4, 4]}))
    assert list(grid.usable["study_instance_uid"]) == [A, B, C]


def test_invalid_predicate_names_the_role(cohort, roles_config):
    with pytest.raises(ConfigError, match=r"roles\.t2\.where: .*not a valid predicate"):
        match_studies(cohort, roles_config(role_t2={"where": "no_such_column = 1"}))


def test_config_errors_are_one_line_and_name_the_key(roles_config):
    with pytest.raises(ConfigError, match="reference 'pd' is not one of the roles"):
        roles_config(reference="pd")
    with pytest.raises(ConfigError, match=r"roles\.t1\.prefer 'largest'"):
        roles_config(role_t1={"prefer": "largest"})
    with pytest.raises(ConfigError, match="roles.t1.volumes.by"):
        roles_config(role_t1={"volumes": {"by": "bval", "values": [0]}})
