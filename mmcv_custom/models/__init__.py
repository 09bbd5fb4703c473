"""Task-agnostic InternImage models (no mmdet/mmseg/mmpretrain imports)."""
from .internimage import InternImage

__all__ = ['InternImage']
