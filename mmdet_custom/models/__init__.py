from .backbones import CBInternImage, InternImage
from .detectors import CBDINO

__all__ = ['InternImage', 'CBInternImage', 'CBDINO']
