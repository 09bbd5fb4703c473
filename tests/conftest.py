"""Test-session settings shared by the whole suite."""
import os
import shutil

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _nvcc_available() -> bool:
    cuda_home = os.environ.get('CUDA_HOME', '/usr/local/cuda')
    return bool(torch.version.cuda) and (
        os.path.exists(os.path.join(cuda_home, 'bin', 'nvcc')) or shutil.which('nvcc') is not None)


def pytest_collection_modifyitems(config, items):
    """Skip `cuda` tests without a GPU and `nvcc` tests without the CUDA toolkit."""
    skip_cuda = pytest.mark.skip(reason='needs a CUDA GPU; none is visible')
    skip_nvcc = pytest.mark.skip(reason='needs nvcc and a CUDA build of torch')
    has_gpu = torch.cuda.is_available()
    has_nvcc = _nvcc_available()
    for item in items:
        if 'cuda' in item.keywords and not has_gpu:
            item.add_marker(skip_cuda)
        if 'nvcc' in item.keywords and not has_nvcc:
            item.add_marker(skip_nvcc)


@pytest.fixture(scope='session')
def repo_root() -> str:
    """Absolute path of the repository root."""
    return ROOT

