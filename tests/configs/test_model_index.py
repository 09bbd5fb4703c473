"""``model-index.yml`` and ``configs/*/metafile.yml`` (the OpenMMLab model-zoo format read by ``mim``).

Every entry names a config that exists, every ImageNet / COCO / ADE20K / COCO-Stuff config has an
entry, the metrics and parameter counts are the published ones of the README's model-zoo tables, and
the weights, schedules and sharding runtimes are those the configs use.
"""
from __future__ import annotations

import ast
import functools
import glob
import os
import os.path as osp
import re
import sys

import pytest
import yaml
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
TASK_FOLDERS = ('imagenet', 'coco', 'ade20k', 'coco_stuff164k')
# config folders without a metafile, and why
UNLISTED_FOLDERS = {
    '_base_': 'shared bases, not models',
    'demo': 'tiny models for the CPU demos, nothing published',
    'objects365': 'the Objects365 stages of the COCO DINO-H/G/CB-H configs: no published result of '
                  'their own (the paper reports the COCO fine-tuned models only)',
}
# Published COCO-Stuff-164k results (official InternImage segmentation model zoo; the README lists
# only the ADE20K model fine-tuned from this stage): mIoU single scale, multi-scale, params (M).
COCO_STUFF_PUBLISHED = {
    'configs/coco_stuff164k/mask2former_internimage-h_8xb2-80k_coco-stuff164k-896x896.py':
        (52.6, 52.8, 1310),
}


def _index() -> dict[str, dict]:
    """Config path -> its metafile entry (with the metafile's path under ``_metafile`` and its
    collections under ``_collections``)."""
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    entries = {}
    for metafile in imports:
        assert osp.isfile(osp.join(ROOT, metafile)), f'model-index.yml imports a missing {metafile}'
        with open(osp.join(ROOT, metafile)) as f:
            meta = yaml.safe_load(f)
        collections = {c['Name'] for c in meta['Collections']}
        for model in meta['Models']:
            assert model['Config'] not in entries, f"{model['Config']} is listed twice"
            entries[model['Config']] = dict(model, _metafile=metafile, _collections=collections)
    return entries


def _readme_table(title: str) -> list[list[str]]:
    """Data rows of the first table under the README heading ``### <title>``."""
    with open(osp.join(ROOT, 'README.md')) as f:
        text = f.read()
    section = text.split(f'### {title}\n', 1)[1]
    rows = [line for line in section.splitlines() if line.startswith('|')]
    end = next((i for i, line in enumerate(section.splitlines()) if line.startswith('#')), None)
    if end is not None:
        rows = [line for line in section.splitlines()[:end] if line.startswith('|')]
    return [[c.strip() for c in row.strip('|').split('|')] for row in rows[2:]]


def _task_configs(folder: str) -> list[str]:
    return sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs', folder, '*.py')))


@functools.cache
def _config(config: str) -> Config:
    return Config.fromfile(osp.join(ROOT, config), import_custom_modules=False)


def _size(config: str) -> str:
    """The README's backbone label: ``InternImage-H``, or ``CB-InternImage-H`` for the composite."""
    cb, size = re.search(r'(cb)?internimage-(t|s|b|l|xl|h|g)_', config).groups()
    return ('CB-' if cb else '') + 'InternImage-' + size.upper()


def _pretraining(label: str) -> tuple[str, str | None]:
    """``'DINO 4-scale (Objects365 pre-training)'`` -> ``('DINO 4-scale', 'Objects365')``."""
    match = re.fullmatch(r'(.*?)(?: \((.+) pre-training\))?', label)
    return match.group(1), match.group(2)


def _assert_training_data(entry: dict, dataset: str, pretraining: str | None):
    """The metafile's training data is the task's dataset, after the README's pre-training one."""
    data = [d.strip() for d in entry['Metadata']['Training Data'].split(',')]
    assert data[-1] == dataset, entry['Name']
    if pretraining is None:
        assert data == [dataset], entry['Name']
    else:
        assert len(data) == 2 and data[0].startswith(pretraining), entry['Name']


def _metrics(entry: dict) -> dict[str, float]:
    return {k: v for result in entry['Results'] for k, v in result['Metrics'].items()}


def _millions(text: str) -> float:
    return float(text[:-1]) * (1000 if text.endswith('B') else 1)


INDEX = _index()


def test_every_entry_names_an_existing_config_in_a_known_collection():
    assert INDEX
    for config, entry in INDEX.items():
        assert osp.isfile(osp.join(ROOT, config)), f'{config} (metafile entry) does not exist'
        assert entry['_metafile'] == osp.join(osp.dirname(config), 'metafile.yml'), config
        assert entry['Name'] == osp.splitext(osp.basename(config))[0]
        assert entry['In Collection'] in entry['_collections']
        assert entry['Results'] and all(r['Metrics'] for r in entry['Results'])


def test_every_config_folder_has_a_metafile_or_a_reason():
    folders = {d for d in os.listdir(osp.join(ROOT, 'configs'))
               if osp.isdir(osp.join(ROOT, 'configs', d))}
    assert folders == set(TASK_FOLDERS) | set(UNLISTED_FOLDERS)
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    assert sorted(imports) == sorted(f'configs/{d}/metafile.yml' for d in TASK_FOLDERS)


@pytest.mark.parametrize('folder', TASK_FOLDERS)
def test_every_task_config_is_listed(folder):
    missing = [c for c in _task_configs(folder) if c not in INDEX]
    assert not missing, f'not in configs/{folder}/metafile.yml: {missing}'


def test_imagenet_metrics_are_the_published_ones():
    table = {row[0]: row for row in _readme_table('ImageNet-1K')}
    checked = 0
    for config, entry in INDEX.items():
        if not config.startswith('configs/imagenet/'):
            continue
        row = table[_size(config)]  # model | resolution | params (published) | ... | top-1 (published)
        assert _metrics(entry) == {'Top 1 Accuracy': float(row[6])}, config
        assert entry['Metadata']['Resolution'] == int(row[1])
        assert entry['Metadata']['Parameters'] == round(_millions(row[2]) * 1e6)
        checked += 1
    assert checked == len(_task_configs('imagenet'))  # the sharded H/G variants included


def _sharding(cfg: Config) -> list[str]:
    """The metafile's label of the config's sharded runtime (none for the Runner's DDP)."""
    strategy = cfg.get('strategy')
    if strategy is None:
        assert cfg.get('runner_type', 'Runner') == 'Runner'
        return []
    assert cfg.runner_type == 'FlexibleRunner'
    if strategy.type == 'InternImageFSDPStrategy':
        return ['FSDP']
    assert strategy.type == 'DeepSpeedStrategy', strategy.type
    zero = strategy.zero_optimization
    offload = 'cpu' in (zero.offload_optimizer.device, zero.offload_param.device)
    return [f'DeepSpeed ZeRO-{zero.stage}'] + (['CPU Offload'] if offload else [])


def test_imagenet_entries_name_the_runtime_of_their_config():
    sharded = 0
    for config, entry in INDEX.items():
        if config.startswith('configs/imagenet/'):
            want = _sharding(_config(config))
            assert entry['Metadata'].get('Training Techniques', []) == want, config
            sharded += bool(want)
    assert sharded == 6  # H and G, each with FSDP, DeepSpeed ZeRO-1 and ZeRO-3 + CPU offload


def test_coco_metrics_are_the_published_ones():
    table = {}
    for row in _readme_table('COCO val2017'):
        method, pretraining = _pretraining(row[0])
        table[(method, row[1], row[2])] = row + [pretraining]
    # file name -> README schedule label, the metafile's schedule
    schedules = {'_1x_': ('1x', 'Epochs', 12), '_ms-3x_': ('3x MS', 'Epochs', 36),
                 '-12e_': ('12e', 'Epochs', 12), '_o365-pre_': ('20k it', 'Iterations', 20000)}
    checked = 0
    for config, entry in INDEX.items():
        if not config.startswith('configs/coco/'):
            continue
        collection = entry['In Collection']
        assert collection.endswith(' CB-InternImage') == _size(config).startswith('CB-'), config
        method = re.sub(r' (CB-)?InternImage$', '', collection).replace('DINO', 'DINO 4-scale')
        schedule, unit, length = next(s for key, s in schedules.items() if key in config)
        assert entry['Metadata'][unit] == length, config
        # ... | box AP (and TTA) | mask AP | params (published) | pre-training
        row = table[(method, _size(config), schedule)]
        box = re.fullmatch(r'([\d.]+)(?: \(([\d.]+) TTA\))?', row[3])
        want = {'box AP': float(box.group(1))}
        if box.group(2):
            want['box AP (TTA)'] = float(box.group(2))
        if row[4] != '-':
            want['mask AP'] = float(row[4])
        assert _metrics(entry) == want, config
        assert entry['Metadata']['Parameters'] == round(_millions(row[5]) * 1e6)
        _assert_training_data(entry, 'COCO', row[6])
        checked += 1
    assert checked == len(_task_configs('coco'))


def test_ade20k_metrics_are_the_published_ones():
    # backbone label, without its pre-training note -> row; unlabelled rows are the title's UperNet 160k
    table = {}
    for row in _readme_table('ADE20K val (UperNet, 160k)'):
        label, pretraining = _pretraining(row[0])
        table[(label, row[1])] = row + [pretraining]
    checked = 0
    for config, entry in INDEX.items():
        if not config.startswith('configs/ade20k/'):
            continue
        method, iters = re.search(r'(upernet|mask2former)_internimage-\w+_8xb2-(\d+)k_', config).groups()
        if method == 'upernet':
            assert iters == '160', config  # the unlabelled rows are the title's 160k schedule
            label = _size(config)
        else:
            label = f'{_size(config)}, Mask2Former {iters}k'
        crop = re.search(r'ade20k-(\d+)x\d+', config).group(1)
        # backbone | crop | mIoU SS | mIoU MS | params (published) | pre-training
        row = table[(label, crop)]
        assert _metrics(entry) == {'mIoU': float(row[2]), 'mIoU(ms+flip)': float(row[3])}, config
        assert entry['Metadata']['Parameters'] == round(_millions(row[4]) * 1e6)
        assert entry['Metadata']['Iterations'] == int(iters) * 1000
        assert entry['Metadata']['Crop Size'] == f'({crop}, {crop})'
        _assert_training_data(entry, 'ADE20K', row[5])
        checked += 1
    assert checked == len(_task_configs('ade20k'))


def test_coco_stuff_metrics_are_the_published_ones():
    assert set(COCO_STUFF_PUBLISHED) == set(_task_configs('coco_stuff164k'))
    for config, (ss, ms, params) in COCO_STUFF_PUBLISHED.items():
        entry = INDEX[config]
        assert _metrics(entry) == {'mIoU': ss, 'mIoU(ms+flip)': ms}, config
        assert entry['Metadata']['Parameters'] == params * 1_000_000
        _assert_training_data(entry, 'COCO-Stuff-164k', None)


def test_schedules_and_crops_are_the_configs():
    for config, entry in INDEX.items():
        if config.startswith('configs/imagenet/'):
            continue
        cfg, meta = _config(config), entry['Metadata']
        if 'Epochs' in meta:
            assert cfg.train_cfg.max_epochs == meta['Epochs'], config
        else:
            assert cfg.train_cfg.max_iters == meta['Iterations'], config
        if 'Crop Size' in meta:
            assert tuple(cfg.crop_size) == ast.literal_eval(meta['Crop Size']), config


def _last_checkpoint(stage: str) -> str:
    """Where ``tools/train.py`` leaves the last checkpoint of a stage config."""
    from tools.train import default_work_dir
    loop = _config(stage).train_cfg
    name = f'epoch_{loop.max_epochs}.pth' if 'max_epochs' in loop else f'iter_{loop.max_iters}.pth'
    return osp.normpath(osp.join(default_work_dir(stage), name))


def test_weights_are_the_files_the_configs_load():
    staged = 0
    for config, entry in INDEX.items():
        cfg, meta = _config(config), entry['Metadata']
        if config.startswith('configs/imagenet/'):
            # the classifier's published weights, which the config loads into the whole model
            assert entry['Weights'] == cfg.model.init_cfg.checkpoint, config
        elif cfg.get('load_from'):
            # a later stage: the whole model comes from the last checkpoint of the stage config the
            # metafile names, whose backbone starts from the published pre-trained weights
            assert cfg.model.backbone.init_cfg is None, config
            assert meta['Pretrained Model'] == cfg.load_from, config
            stage = meta['Pretraining Config']
            assert osp.normpath(cfg.load_from) == _last_checkpoint(stage), config
            assert _config(stage).get('load_from') is None, stage
            assert meta['Pretrained Backbone'] == _config(stage).model.backbone.init_cfg.checkpoint
            staged += 1
        else:
            # detection/segmentation: the ImageNet weights the backbone starts from
            assert 'Pretrained Model' not in meta and 'Pretraining Config' not in meta, config
            assert meta['Pretrained Backbone'] == cfg.model.backbone.init_cfg.checkpoint
    assert staged == 4  # DINO H / CB-H / G from Objects365, Mask2Former-H from COCO-Stuff
