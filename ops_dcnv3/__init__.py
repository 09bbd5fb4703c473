"""DCNv3: grouped deformable convolution with softmax-normalised modulation (InternImage).

API-compatible with the published ``ops_dcnv3`` package: :class:`ops_dcnv3.functions.DCNv3Function`,
:func:`ops_dcnv3.functions.dcnv3_core_pytorch`, :class:`ops_dcnv3.modules.DCNv3` and
:class:`ops_dcnv3.modules.DCNv3_pytorch`. The compiled kernels (C++ CPU, CUDA when built) are the
``ops_dcnv3::dcnv3_forward`` / ``dcnv3_backward`` torch.library operators loaded from ``ops_dcnv3._C``;
importing this package never fails because they are missing, using them does.
"""
from . import functions, modules
from ._loader import compiled_devices, load_error

__all__ = ['compiled_devices', 'load_error', 'functions', 'modules']
