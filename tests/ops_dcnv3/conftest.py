"""Fixtures of the DCNv3 operator tests."""
import pytest

import ops_dcnv3


@pytest.fixture(scope='session')
def compiled_cpu():
    if 'cpu' not in ops_dcnv3.compiled_devices():
        pytest.fail(f'ops_dcnv3._C has no CPU kernel (load error: {ops_dcnv3.load_error()}); '
                    'build it with pip install --no-build-isolation -e .')
