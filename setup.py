"""Build of the ``ops_dcnv3._C`` extension.

The C++ CPU kernels are always compiled. The CUDA kernels are compiled when torch is a CUDA build,
the CUDA toolkit (nvcc) is found, and either a GPU is visible or ``FORCE_CUDA=1`` is set. A missing
GPU never stops the build: the CPU operator is always there.

A built (non-editable) install also carries the model zoo for OpenMMLab's ``mim``, as the
OpenMMLab packages do: ``model-index.yml`` and ``configs/`` (the metafiles and every config with its
``_base_`` files) are copied into ``<package>/.mim/`` of the first top-level package by name, the
one whose folder ``mim`` reads (the first line of the wheel's ``top_level.txt``), so that
``mim search internimage-mm`` lists the models. An editable install has no package folder in
site-packages for ``mim`` to read (it maps the packages to the source tree); use a built install
for ``mim``.
"""
import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join('ops_dcnv3', 'csrc')
DEFAULT_CUDA_ARCH_LIST = '8.0;9.0+PTX'
# What `<package>/.mim/` carries (paths from the repository root): the model index and the configs
# (metafiles and configs, the `_base_` files included), as mmdet/mmseg/mmpretrain ship them.
MIM_FILES = ('model-index.yml', 'configs')
MIM_SUFFIXES = ('.py', '.yml')


def _cuda_home_default() -> None:
    # torch guesses CUDA_HOME from the location of `nvcc`; with nvcc wrapped in /usr/local/bin it
    # picks /usr/local and the link then fails on -lcudart. Prefer the toolkit's own folder.
    if os.environ.get('CUDA_HOME') or os.environ.get('CUDA_PATH'):
        return
    for candidate in ('/usr/local/cuda',):
        if os.path.exists(os.path.join(candidate, 'bin', 'nvcc')):
            os.environ['CUDA_HOME'] = candidate
            return


def _want_cuda(torch) -> bool:
    if os.environ.get('FORCE_CPU_ONLY', '0') == '1' or not torch.version.cuda:
        return False
    from torch.utils.cpp_extension import CUDA_HOME
    if CUDA_HOME is None or not (os.path.exists(os.path.join(CUDA_HOME, 'bin', 'nvcc'))
                                 or shutil.which('nvcc')):
        return False
    return torch.cuda.is_available() or os.environ.get('FORCE_CUDA', '0') == '1'


def make_extensions():
    _cuda_home_default()
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    major, minor = (int(v) for v in torch.__version__.split('.')[:2])
    cxx_std = '-std=c++20' if (major, minor) >= (2, 10) else '-std=c++17'
    sources = sorted(glob.glob(os.path.join(CSRC, '*.cpp')) +
                     glob.glob(os.path.join(CSRC, 'cpu', '*.cpp')))
    cuda_sources = sorted(glob.glob(os.path.join(CSRC, 'cuda', '*.cu')) +
                          glob.glob(os.path.join(CSRC, 'cuda', '*.cpp')))
    # at::parallel_for expands to OpenMP pragmas in the headers: without -fopenmp it runs serially.
    cxx_args = ['-O3', cxx_std, '-fopenmp']
    extra = dict(
        include_dirs=[os.path.join(HERE, CSRC)],
        extra_link_args=['-fopenmp'],
        py_limited_api=True,  # torch then defines Py_LIMITED_API itself
    )
    if cuda_sources and _want_cuda(torch):
        if not os.environ.get('TORCH_CUDA_ARCH_LIST') and not torch.cuda.is_available():
            # No GPU to detect the architecture from: machine code for the data-centre GPUs (A100,
            # H100) plus PTX of the newest, which the driver JIT-compiles on any later or other GPU
            # instead of failing with "no kernel image is available".
            os.environ['TORCH_CUDA_ARCH_LIST'] = DEFAULT_CUDA_ARCH_LIST
        return [CUDAExtension(
            'ops_dcnv3._C', sources + cuda_sources,
            define_macros=[('WITH_CUDA', None)],
            extra_compile_args={'cxx': cxx_args, 'nvcc': ['-O3', cxx_std]},
            **extra)]
    return [CppExtension(
        'ops_dcnv3._C', sources,
        extra_compile_args={'cxx': cxx_args},
        **extra)]


def build_ext_cls():
    from torch.utils.cpp_extension import BuildExtension
    return BuildExtension.with_options(no_python_abi_suffix=True)


def mim_host_package(packages) -> str:
    """The package whose ``.mim`` folder ``mim`` reads.

    ``mim`` finds an installed distribution's files at ``<site-packages>/<module>``, ``<module>``
    being the first line of its ``top_level.txt``, which setuptools writes sorted by name.
    """
    return sorted({p.split('.')[0] for p in packages})[0]


def mim_files(root: str = HERE) -> list[str]:
    """The files of :data:`MIM_FILES` (relative to ``root``), sorted."""
    out = []
    for name in MIM_FILES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            out.append(name)
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '__')))
            out += [os.path.relpath(os.path.join(folder, f), root) for f in sorted(files)
                    if f.endswith(MIM_SUFFIXES)]
    return out


class BuildPyWithMim(build_py):
    """``build_py`` that also copies :func:`mim_files` into ``<host package>/.mim/``."""

    def _mim_outputs(self) -> list[tuple[str, str]]:
        if self.editable_mode or not self.packages:
            return []
        target = os.path.join(self.build_lib, mim_host_package(self.packages), '.mim')
        return [(os.path.join(HERE, f), os.path.join(target, f)) for f in mim_files()]

    def run(self):
        super().run()
        for src, dst in self._mim_outputs():
            self.mkpath(os.path.dirname(dst))
            self.copy_file(src, dst, preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [dst for _, dst in self._mim_outputs()]


setup(
    ext_modules=make_extensions(),
    cmdclass={'build_ext': build_ext_cls(), 'build_py': BuildPyWithMim},
)
