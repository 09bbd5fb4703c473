"""mmengine checkpoints load and resume under torch's ``weights_only=True`` default."""
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

import mmcv_custom.safe_load  # noqa: F401  registers the allow-list


class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return {'loss': nn.functional.cross_entropy(out, torch.stack(labels))}
        return out


class ToyDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', 'b'))

    def __len__(self):
        return 16

    def __getitem__(self, idx):
        g = torch.Generator().manual_seed(idx)
        return dict(inputs=torch.randn(4, generator=g), labels=torch.tensor(idx % 2))


class Crash(RuntimeError):
    pass


class CrashAfterEpoch(Hook):
    """Simulates a crash once the checkpoint of the given epoch is on disk."""
    priority = 'LOWEST'  # after CheckpointHook

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch == self.epoch:
            raise Crash(f'simulated crash after epoch {self.epoch}')


def _runner(work_dir, max_epochs, resume=False, crash_after=None):
    torch.manual_seed(0)  # the model is built before the Runner seeds anything
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_size=4, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], gamma=0.5, by_epoch=True),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0, deterministic=True),
        resume=resume,
        custom_hooks=[CrashAfterEpoch(crash_after)] if crash_after else None,
        experiment_name=f'toy_{max_epochs}_{int(resume)}_{crash_after}',
        default_scope='mmengine',
    )


def test_runner_checkpoint_loads_with_weights_only(tmp_path):
    runner = _runner(tmp_path, max_epochs=1)
    runner.train()
    ckpt = tmp_path / 'epoch_1.pth'
    # torch's default (weights_only=True) must accept everything mmengine wrote
    state = torch.load(ckpt, map_location='cpu')
    assert set(state) >= {'meta', 'state_dict', 'optimizer', 'message_hub', 'param_schedulers'}
    scalars = state['message_hub']['log_scalars']
    assert 'train/loss' in scalars and len(scalars['train/loss'].data[0]) > 0


def test_resume_continues_exactly(tmp_path):
    full = _runner(tmp_path / 'full', max_epochs=3)
    full.train()
    expected = {k: v.clone() for k, v in full.model.state_dict().items()}

    first = _runner(tmp_path / 'part', max_epochs=3, crash_after=1)
    with pytest.raises(Crash):
        first.train()
    assert (tmp_path / 'part' / 'epoch_1.pth').exists()
    resumed = _runner(tmp_path / 'part', max_epochs=3, resume=True)
    resumed.train()
    assert resumed.iter == full.iter == 12
    assert resumed.optim_wrapper.get_lr()['lr'] == full.optim_wrapper.get_lr()['lr']
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=f'{name} differs after resume')


def test_without_allow_list_torch_refuses(tmp_path):
    """Guards the test above: the plain torch default really rejects mmengine checkpoints."""
    runner = _runner(tmp_path, max_epochs=1)
    runner.train()
    code = textwrap.dedent(f"""
        import pickle, sys, torch
        try:
            torch.load({str(tmp_path / 'epoch_1.pth')!r}, map_location='cpu')
        except pickle.UnpicklingError as e:
            sys.exit(3)
        sys.exit(0)
    """)
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    if proc.returncode == 0:
        pytest.fail('torch loaded an mmengine checkpoint without the allow-list: '
                    'this test no longer checks anything')
    assert proc.returncode == 3, proc.stderr
