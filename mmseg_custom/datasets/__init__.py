"""Segmentation data pieces: annotation loading with a class-range check."""
from .loading import LoadCheckedAnnotations

__all__ = ['LoadCheckedAnnotations']
