from .backbones import InternImage

__all__ = ['InternImage']
