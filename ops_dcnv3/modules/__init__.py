from .dcnv3 import DCNv3, DCNv3_pytorch

__all__ = ['DCNv3', 'DCNv3_pytorch']
