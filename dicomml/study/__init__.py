"""Study samples: several series of one study as channels on one grid.

A :class:`StudyConfig` names *roles*; each picks one series per study from the
manifest (:func:`match_studies`), and every role is resampled onto the
reference role's grid (or a :class:`ReferenceGrid`) through world coordinates (:func:`compute_study`).
"""

from dicomml.study.config import PREFER, ReferenceGrid, Role, StudyConfig, load_any_config, load_study_config
from dicomml.study.roles import StudyMatch, match_studies
from dicomml.study.sample import (
    StudyArrays,
    StudySource,
    compute_study,
    explicit_grid,
    preprocess_study,
    resample_roles,
    role_volume,
    study_sources,
)
from dicomml.study.suv import suv_factor

__all__ = [
    "PREFER",
    "ReferenceGrid",
    "Role",
    "StudyArrays",
    "StudyConfig",
    "StudyMatch",
    "StudySource",
    "compute_study",
    "explicit_grid",
    "load_any_config",
    "load_study_config",
    "match_studies",
    "preprocess_study",
    "resample_roles",
    "role_volume",
    "study_sources",
    "suv_factor",
]
