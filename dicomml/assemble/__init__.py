"""Assembly: from a series' files (or manifest rows) to a :class:`~dicomml.volume.Volume`.

``load_files`` for a list of files, ``load_series`` for a group of a
manifest; ``dicomml.dicom.series_key`` says which frames form one group, ``plan`` where
each frame goes, ``resample`` how irregular stacks become regular.
"""

from dicomml.assemble.load import load_files, load_series

__all__ = ["load_files", "load_series"]
