"""What OpenMMLab's ``mim search internimage-mm`` reads: the model index, as mim's own loader parses it,
and the ``<package>/.mim/`` folder that a built install carries (setup.py).

``mim`` loads ``model-index.yml`` with the ``model-index`` package (``modelindex.load_model_index``)
from ``<site-packages>/<module>/.mim/``, ``<module>`` being the first line of the distribution's
``top_level.txt``. No network: the install is a ``setup.py build_py`` into a temporary folder.
"""
from __future__ import annotations

import glob
import importlib.metadata
import os
import os.path as osp
import subprocess
import sys

import pytest
import yaml

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
DIST = 'internimage-mm'


def _metafile_models(root: str = ROOT) -> dict[str, str]:
    """Model name -> config path of every entry of the metafiles that ``model-index.yml`` imports."""
    with open(osp.join(root, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    models = {}
    for metafile in imports:
        with open(osp.join(root, metafile)) as f:
            models.update({m['Name']: m['Config'] for m in yaml.safe_load(f)['Models']})
    return models


def _not_readme(errors: list[str]) -> list[str]:
    # Collections name README.md (the model-zoo tables of the repository's README); the loader looks
    # for it next to the metafile. mim only shows the field (mmdet's own index reports the same).
    return [e for e in errors if 'Path to README file' not in e]


def _check_with_mims_loader(root: str) -> None:
    load = pytest.importorskip('modelindex.load_model_index').load
    index = load(osp.join(root, 'model-index.yml'))
    assert not _not_readme(index.check(silent=True))
    want = _metafile_models(root)
    assert want and {m.name: m.config for m in index.models} == want
    collections = {c.name for c in index.collections}
    for model in index.models:
        assert osp.isfile(osp.join(root, model.config)), model.config
        assert model.in_collection in collections, model.name
        assert model.results and all(r.metrics for r in model.results), model.name
    try:
        from mim.commands.search import convert2df
    except ImportError:  # openmim is optional: the loader above is the one it uses
        return
    table = convert2df(index)
    assert set(table.index) == set(want)
    assert all(table.loc[name, 'config'] == config for name, config in want.items())


def test_model_index_imports_every_metafile():
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    metafiles = glob.glob(osp.join(ROOT, 'configs', '*', 'metafile.yml'))
    assert sorted(imports) == sorted(osp.relpath(p, ROOT) for p in metafiles)


def test_mims_loader_finds_every_model():
    _check_with_mims_loader(ROOT)


@pytest.fixture(scope='module')
def build_lib(tmp_path_factory):
    """The packages as ``setup.py build_py`` lays them out for a wheel (no compilation)."""
    out = tmp_path_factory.mktemp('build_lib')
    subprocess.run([sys.executable, 'setup.py', '-q', 'build_py', '--build-lib', str(out)],
                   cwd=ROOT, check=True, capture_output=True)
    return str(out)


def _host(build_lib: str) -> str:
    """The first top-level package by name: setuptools writes ``top_level.txt`` sorted."""
    return sorted(d for d in os.listdir(build_lib) if osp.isfile(osp.join(build_lib, d, '__init__.py')))[0]


def test_built_install_carries_the_model_zoo_in_the_package_mim_reads(build_lib):
    host = _host(build_lib)
    assert [d for d in os.listdir(build_lib) if osp.exists(osp.join(build_lib, d, '.mim'))] == [host]
    mim_dir = osp.join(build_lib, host, '.mim')
    shipped = sorted(osp.relpath(osp.join(folder, f), mim_dir)
                     for folder, _, files in os.walk(mim_dir) for f in files)
    configs = [osp.relpath(p, ROOT) for ext in ('py', 'yml')
               for p in glob.glob(osp.join(ROOT, 'configs', '**', f'*.{ext}'), recursive=True)]
    assert shipped == sorted(['model-index.yml'] + configs)
    assert {'configs/_base_/models/upernet_internimage-h.py', 'configs/ade20k/metafile.yml'} <= set(shipped)
    for name in shipped:
        with open(osp.join(ROOT, name), 'rb') as a, open(osp.join(mim_dir, name), 'rb') as b:
            assert a.read() == b.read(), name
    _check_with_mims_loader(mim_dir)


def test_installed_metadata_names_the_same_package(build_lib):
    try:
        top_level = importlib.metadata.distribution(DIST).read_text('top_level.txt')
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f'{DIST} is not installed')
    assert top_level.split()[0] == _host(build_lib)
    try:
        from mim.utils import package2module
    except ImportError:
        return
    assert package2module(DIST) == _host(build_lib)


def test_a_config_resolves_the_same_from_the_mim_copy(build_lib):
    """The configs travel with their ``_base_`` files: a copy resolves as the repository's does."""
    from tools.dump_resolved_configs import resolved_config

    name = 'configs/ade20k/upernet_internimage-h_8xb2-160k_ade20k-896x896.py'
    mim_dir = osp.join(build_lib, _host(build_lib), '.mim')
    assert resolved_config(osp.join(mim_dir, name)) == resolved_config(osp.join(ROOT, name))
