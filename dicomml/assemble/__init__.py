"""Assembly: from a series' files (or manifest rows) to a :class:`~dicomml.volume.Volume`."""
