"""A small synthetic study for demos, notebooks and tests (no real data needed).

``write_sample_study(directory)`` writes an axial CT of a torso phantom, a
DICOM SEG (lesion, liver) on it made with highdicom, and a sagittal MR of the
same phantom, all seeded.
"""

from dicomml.sample.study import SampleStudy, write_sample_study

__all__ = ["SampleStudy", "write_sample_study"]
