from .dcnv3_func import DCNv3Function, dcnv3, dcnv3_core_pytorch, dcnv3_device_math

__all__ = ['DCNv3Function', 'dcnv3', 'dcnv3_core_pytorch', 'dcnv3_device_math']
