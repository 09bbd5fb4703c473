from .dcnv3_func import DCNv3Function, dcnv3, dcnv3_core_pytorch

__all__ = ['DCNv3Function', 'dcnv3', 'dcnv3_core_pytorch']
