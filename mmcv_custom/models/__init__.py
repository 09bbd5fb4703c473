"""Task-agnostic InternImage models (no mmdet/mmseg/mmpretrain imports)."""
from .cb_internimage import CBInternImage
from .internimage import InternImage

__all__ = ['InternImage', 'CBInternImage']
