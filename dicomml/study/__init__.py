"""Study samples: several series of one study as channels on one grid.

A :class:`StudyConfig` names *roles*; each picks one series per study from the
manifest (:func:`match_studies`), and every role is resampled onto the
reference role's grid (or a :class:`ReferenceGrid`) through world coordinates (:func:`compute_study`).
Names are imported on first use: a Dataset that only reads a study config
imports neither pandas nor pydicom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomml._lazy import lazy_exports

if TYPE_CHECKING:
    from dicomml.study.config import PREFER as PREFER
    from dicomml.study.config import ReferenceGrid as ReferenceGrid
    from dicomml.study.config import Role as Role
    from dicomml.study.config import StudyConfig as StudyConfig
    from dicomml.study.config import load_any_config as load_any_config
    from dicomml.study.config import load_study_config as load_study_config
    from dicomml.study.roles import StudyMatch as StudyMatch
    from dicomml.study.roles import match_studies as match_studies
    from dicomml.study.sample import StudyArrays as StudyArrays
    from dicomml.study.sample import compute_study as compute_study
    from dicomml.study.sample import explicit_grid as explicit_grid
    from dicomml.study.sample import preprocess_study as preprocess_study
    from dicomml.study.sample import resample_roles as resample_roles
    from dicomml.study.sample import role_volume as role_volume
    from dicomml.study.sample import study_sources as study_sources
    from dicomml.study.source import StudySource as StudySource
    from dicomml.study.suv import suv_factor as suv_factor


_EXPORTS = {
    "PREFER": "dicomml.study.config",
    "ReferenceGrid": "dicomml.study.config",
    "Role": "dicomml.study.config",
    "StudyConfig": "dicomml.study.config",
    "load_any_config": "dicomml.study.config",
    "load_study_config": "dicomml.study.config",
    "StudyMatch": "dicomml.study.roles",
    "match_studies": "dicomml.study.roles",
    "StudyArrays": "dicomml.study.sample",
    "StudySource": "dicomml.study.source",
    "compute_study": "dicomml.study.sample",
    "explicit_grid": "dicomml.study.sample",
    "preprocess_study": "dicomml.study.sample",
    "resample_roles": "dicomml.study.sample",
    "role_volume": "dicomml.study.sample",
    "study_sources": "dicomml.study.sample",
    "suv_factor": "dicomml.study.suv",
}

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
