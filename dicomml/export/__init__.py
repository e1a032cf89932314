"""Export to formats other tools read: NIfTI-1 through nibabel (FSL, ITK-SNAP, BIDS tools)."""

from dicomml.export.nifti import diffusion_paths, save_nifti, to_nifti

__all__ = ["diffusion_paths", "save_nifti", "to_nifti"]
