"""Detectors of the published InternImage recipes that mmdet 3 does not have."""
from .cb_dino import CBDINO

__all__ = ['CBDINO']
