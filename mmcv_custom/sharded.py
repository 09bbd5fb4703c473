"""Sharded data parallelism for the billion-parameter InternImages on mmengine's ``FlexibleRunner``.

* :func:`internimage_block_wrap_policy`: the FSDP auto-wrap policy, one FSDP unit per
  ``InternImageBlock``; the stem, downsamples, norms and heads form the root unit. A block gathers its
  parameters for its own forward and backward only, and the block's ``with_cp`` checkpointing
  recomputes inside the unit, so activation checkpointing composes with the sharding.
* :class:`InternImageFSDPStrategy`: mmengine's ``FSDPStrategy`` (same arguments) with what training
  these models needs on top of it:

  - the optimizer is built from the *unsharded* model and then moved onto the FSDP parameters:
    with ``use_orig_params`` the parameters FSDP exposes are flat 1-D views of each rank's
    shard, so any rule that looks at shapes (``CustomLayerDecayOptimizerConstructor``: no weight
    decay for 1-D parameters) would otherwise put every weight in the no-decay group;
  - ``clip_grad`` clips by the norm over *all* shards (``FSDP.clip_grad_norm_``); mmengine's
    ``OptimWrapper`` would clip each rank by the norm of its own shard;
  - the state dict is gathered with the wrapped model's own state-dict hooks held back and run
    afterwards: ``InternImageClassifier`` renames keys to the published layout in such a hook,
    which inside FSDP runs before the root unit's hook, and that one then misses the keys of the
    parameters it owns (this is what made mmengine's ``full`` save fail, on CPU as on GPU);
  - on a machine without a GPU the wrapper gets the CPU as its device (mmengine passes the
    local rank, a CUDA index) and state dicts are gathered without ``offload_to_cpu`` (on CPU it
    made the gathered optimizer states alias one buffer); the gloo process group is created
    by ``tools/train.py``;
  - without a process group (``tools/test.py`` without a launcher) the model is not wrapped;
  - ``--resume`` refuses a checkpoint of another model with a message naming the file.

  ``state_dict_cfg`` defaults to ``'full'``: rank 0 writes one file in the layout of a DDP run
  (published keys), which ``tools/test.py``, ``load_from`` and the converter read as they are, and
  from which a run resumes with any number of processes.
* :func:`check_strategy_dependencies`: a DeepSpeed config without ``deepspeed`` installed stops
  with an error naming the package.
"""
from __future__ import annotations

import copy
import importlib.util
from functools import partial

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.device import get_device
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import BaseOptimWrapper, build_optim_wrapper
from mmengine.registry import FUNCTIONS, HOOKS, STRATEGIES

from .models.internimage import InternImageBlock

__all__ = ['internimage_block_wrap_policy', 'InternImageFSDPStrategy', 'ShardedEMAHook',
           'use_sharded_ema', 'check_strategy_dependencies']

# EMA hooks that deep-copy the model; ShardedEMAHook replaces them under FSDP.
_EMA_HOOKS = ('EMAHook', 'PublishedCheckpointEMAHook')
_FSDP_STRATEGIES = ('InternImageFSDPStrategy', 'FSDPStrategy')


@FUNCTIONS.register_module()
def internimage_block_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy: each ``InternImageBlock`` is a unit (the rest is in the root unit).

    torch's callable policy interface: asked with ``recurse=True`` whether to look inside
    ``module`` (always), and with ``recurse=False`` whether to wrap it.

    Args:
        module: The module FSDP asks about.
        recurse: Whether FSDP asks about descending into ``module``.
        nonwrapped_numel: Parameters of ``module`` not yet in a unit (unused: the unit is the block).
    """
    return recurse or isinstance(module, InternImageBlock)


def _fsdp_clip_grad_norm(model, params, max_norm: float, norm_type: float = 2.0, **kwargs):
    """``clip_grad_norm_`` over the gradients of all ranks' shards (``params`` are this rank's)."""
    return model.clip_grad_norm_(max_norm, norm_type)


try:
    from mmengine._strategy import FSDPStrategy
except ImportError:  # pragma: no cover - mmengine without FSDP support (torch < 2.0)
    FSDPStrategy = None

if FSDPStrategy is not None:

    @STRATEGIES.register_module()
    class InternImageFSDPStrategy(FSDPStrategy):
        """mmengine's ``FSDPStrategy`` (same arguments) for InternImage; see the module docstring.

        Args:
            state_dict_cfg: As in ``FSDPStrategy``; default ``'full'`` (one file, written by rank 0).
            **kwargs: ``FSDPStrategy`` arguments (``model_wrapper``, ``skip_init_weights``, ...).
        """

        def __init__(self, *, state_dict_cfg='full', **kwargs) -> None:
            super().__init__(state_dict_cfg=state_dict_cfg, **kwargs)
            if not torch.cuda.is_available():
                # On CPU, `offload_to_cpu` makes `.cpu()` a no-op on FSDP's reused all-gather
                # buffer: gathered optimizer states alias one another (exp_avg_sq == exp_avg in
                # the saved file) and a resumed run diverges. The states are on the CPU anyway.
                for cfg in (self.state_dict_config, self.optim_state_dict_config):
                    if getattr(cfg, 'offload_to_cpu', False):
                        cfg.offload_to_cpu = False
            self._optim_cfg = None
            self._unsharded_optim_wrapper = None
            self._full_shapes: dict[str, tuple] = {}

        @property
        def sharded(self) -> bool:
            """Whether the model is wrapped in FSDP (not when run without a process group)."""
            from torch.distributed.fsdp import FullyShardedDataParallel
            return isinstance(getattr(self, 'model', None), FullyShardedDataParallel)

        def prepare(self, model, *, optim_wrapper=None, **kwargs):
            # _wrap_model builds the optimizer from this config on the still unsharded model.
            self._optim_cfg = optim_wrapper
            return super().prepare(model, optim_wrapper=optim_wrapper, **kwargs)

        def build_model(self, model):
            model = super().build_model(model)
            # what a checkpoint of this model holds (published keys for the classifier)
            self._full_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            return model

        def _wrap_model(self, model: nn.Module) -> nn.Module:
            if not (dist.is_available() and dist.is_initialized()):
                print_log('InternImageFSDPStrategy: no process group (not launched distributed), '
                          'the model is not sharded', logger='current')
                return model.to(get_device())
            if isinstance(self._optim_cfg, dict):
                cfg = copy.deepcopy(self._optim_cfg)
                cfg.setdefault('type', 'OptimWrapper')
                if cfg['type'] == 'AmpOptimWrapper':
                    cfg.setdefault('use_fsdp', True)
                self._unsharded_optim_wrapper = build_optim_wrapper(model, cfg)
            if self.model_wrapper is None:
                self.model_wrapper = dict(type='MMFullyShardedDataParallel')
            if not torch.cuda.is_available() and 'device_id' not in self.model_wrapper:
                # mmengine would pass LOCAL_RANK, a CUDA device index
                self.model_wrapper = dict(self.model_wrapper, device_id=torch.device('cpu'))
            return super()._wrap_model(model)

        def build_optim_wrapper(self, optim_wrapper, model=None) -> BaseOptimWrapper:
            if not self.sharded:
                return super(FSDPStrategy, self).build_optim_wrapper(optim_wrapper, model)
            if isinstance(optim_wrapper, dict) and self._unsharded_optim_wrapper is not None:
                wrapper, self._unsharded_optim_wrapper = self._unsharded_optim_wrapper, None
                self._move_to_sharded_params(wrapper.optimizer, model)
            else:
                wrapper = super().build_optim_wrapper(optim_wrapper, model)
            if getattr(wrapper, 'clip_func', None) is torch.nn.utils.clip_grad_norm_:
                wrapper.clip_func = partial(_fsdp_clip_grad_norm, model)
            elif getattr(wrapper, 'clip_grad_kwargs', None):
                raise ValueError('InternImageFSDPStrategy: optim_wrapper.clip_grad supports '
                                 f"type='norm' only, got {wrapper.clip_grad_kwargs}")
            return wrapper

        def _move_to_sharded_params(self, optimizer, model: nn.Module) -> None:
            """Point the param groups of ``optimizer`` (built on the unsharded model, no state yet)
            at the parameters FSDP exposes, matched by name."""
            if optimizer.state:
                raise RuntimeError('InternImageFSDPStrategy: the optimizer already has a state')
            sharded = {name.replace('_fsdp_wrapped_module.', ''): param
                       for name, param in model.named_parameters()}
            for group in optimizer.param_groups:
                group['params'] = [sharded[self.id_to_name[id(p)]] for p in group['params']]

        def model_state_dict(self) -> dict:
            """The FSDP state dict, then the wrapped model's own state-dict post-hooks.

            ``InternImageClassifier`` renames keys to the published layout in such a hook. Run
            inside FSDP's ``state_dict`` it comes before the root unit's FSDP hook, which then
            misses the renamed keys of the parameters it owns (stem, heads): the ``KeyError`` /
            ``AssertionError`` of a ``full`` save, on CPU as on GPU. So the model's hooks are held
            back while FSDP gathers and run on the finished dict, as on the unwrapped model.
            """
            if not self.sharded:
                return self.model.state_dict()
            inner = self.model.module
            held = dict(inner._state_dict_hooks)
            inner._state_dict_hooks.clear()
            try:
                state = self.model.state_dict()
            finally:
                inner._state_dict_hooks.update(held)
            if not state:  # rank0_only: nothing on the other ranks
                return state
            for hook in held.values():
                result = hook(inner, state, '', {})
                if result is not None and not getattr(hook, '_from_public_api', False):
                    state = result
            return state

        def optim_state_dict(self) -> dict:
            """The optimizer state, gathered like the model's (``full``: rank 0 only)."""
            if not self.sharded:
                return self.optim_wrapper.state_dict()
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
            state = FSDP.optim_state_dict(self.model, self.optim_wrapper.optimizer)
            # what OptimWrapper.state_dict adds: the group of the logged base lr
            base = getattr(self.optim_wrapper, 'base_param_settings', None)
            if base is not None:
                state['base_param_settings'] = base
            return state

        def load_optim_state_dict(self, state_dict: dict) -> None:
            if not self.sharded:
                self.optim_wrapper.load_state_dict(state_dict)
                return
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
            state_dict = dict(state_dict)
            base = state_dict.pop('base_param_settings', None)
            # (mmengine 0.10 passes FSDP the arguments in the order of torch < 2.1)
            state_dict = FSDP.optim_state_dict_to_load(
                self.model, self.optim_wrapper.optimizer, state_dict)
            if base is not None:
                state_dict['base_param_settings'] = base
            self.optim_wrapper.load_state_dict(state_dict)

        def resume(self, filename: str, **kwargs) -> dict:
            if self._is_full_state_dict():
                from .checkpoint import CheckpointMismatchError, extract_state_dict
                from .runner_safety import check_resume_state_dict

                callback = kwargs.pop('callback', None)

                def check_then_callback(checkpoint: dict) -> None:
                    # the shapes of the unsharded model: the check needs no all-gather
                    shapes = {k: torch.empty(s, device='meta')
                              for k, s in self._full_shapes.items()}
                    try:
                        extract_state_dict(checkpoint)
                    except (KeyError, TypeError, ValueError) as e:
                        raise CheckpointMismatchError(
                            f'--resume: {filename} holds no model weights ({e})') from e
                    check_resume_state_dict(shapes, checkpoint, str(filename))
                    if callback is not None:
                        callback(checkpoint)

                kwargs['callback'] = check_then_callback
            return super().resume(filename, **kwargs)


@HOOKS.register_module()
class ShardedEMAHook(Hook):
    """The EMA of mmengine's / mmpretrain's ``EMAHook`` (``ExponentialMovingAverage``) for FSDP.

    ``EMAHook`` deep-copies the model, which an FSDP-wrapped model refuses (it holds process
    groups), and would average flat shards it does not know. Here each rank keeps the EMA of its
    own shard of every parameter (the EMA is element-wise, so sharding changes nothing about its
    values; memory: one more sharded copy of the weights). Checkpoints look exactly like those of
    ``EMAHook`` with DDP: ``state_dict`` holds the EMA weights and ``ema_state_dict`` the trained
    ones (``module.`` keys and ``steps``), so the converter, ``tools/test.py`` and a DDP run read
    them alike. Buffers follow the trained model (``update_buffers=False``). tools/train.py puts
    this hook in place of ``EMAHook`` / ``PublishedCheckpointEMAHook`` when the config's strategy is
    ``InternImageFSDPStrategy``.

    Args:
        momentum: EMA momentum (``1 - decay``); the published 0.9999 decay is ``1e-4``.
        interval: Update every ``interval`` steps.
        begin_iter: First iteration with EMA updates (before it, the EMA copies the weights).
        begin_epoch: First epoch with EMA updates (takes precedence when > 0).
        evaluate_on_ema: Validate and test on the EMA weights.
        evaluate_on_origin: Also on the trained ones (not supported with FSDP: refused).
        ema_type: Only ``'ExponentialMovingAverage'``.
        update_buffers: Only ``False``.
        strict_load: Unused (loading goes through the FSDP model).
    """
    priority = 'NORMAL'

    def __init__(self, momentum: float = 0.0002, interval: int = 1, begin_iter: int = 0,
                 begin_epoch: int = 0, evaluate_on_ema: bool = True,
                 evaluate_on_origin: bool = False, ema_type: str = 'ExponentialMovingAverage',
                 update_buffers: bool = False, strict_load: bool = False) -> None:
        if ema_type != 'ExponentialMovingAverage':
            raise ValueError(f'ShardedEMAHook: ema_type must be ExponentialMovingAverage, got '
                             f'{ema_type!r}')
        if update_buffers:
            raise ValueError('ShardedEMAHook: update_buffers=True is not supported')
        if evaluate_on_origin:
            raise ValueError('ShardedEMAHook: evaluate_on_origin=True is not supported')
        if not 0.0 < momentum < 1.0:
            raise ValueError(f'ShardedEMAHook: momentum must be in (0, 1), got {momentum}')
        self.momentum = momentum
        self.interval = interval
        self.begin_iter = begin_iter
        self.begin_epoch = begin_epoch
        self.enabled_by_epoch = begin_epoch > 0
        self.evaluate_on_ema = evaluate_on_ema
        self.steps = 0
        self._src: list[torch.Tensor] = []
        self._ema: list[torch.Tensor] = []

    def before_run(self, runner) -> None:
        # with use_orig_params these are this rank's (possibly empty) flat views of each shard
        self._src = [p for p in runner.model.parameters()]
        self._ema = [p.detach().clone() for p in self._src]

    def _started(self, runner) -> bool:
        if self.enabled_by_epoch:
            return runner.epoch + 1 >= self.begin_epoch
        return runner.iter + 1 >= self.begin_iter

    @torch.no_grad()
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self._started(runner):
            for ema, src in zip(self._ema, self._src):
                ema.copy_(src)
            return
        if self.steps == 0:
            for ema, src in zip(self._ema, self._src):
                ema.copy_(src)
        elif self.steps % self.interval == 0:
            for ema, src in zip(self._ema, self._src):
                if ema.dtype.is_floating_point:
                    ema.lerp_(src, self.momentum)
        self.steps += 1

    @torch.no_grad()
    def _swap(self) -> None:
        for ema, src in zip(self._ema, self._src):
            tmp = src.detach().clone()
            src.copy_(ema)
            ema.copy_(tmp)

    def before_val_epoch(self, runner) -> None:
        if self.evaluate_on_ema:
            self._swap()

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self.evaluate_on_ema:
            self._swap()

    before_test_epoch = before_val_epoch
    after_test_epoch = after_val_epoch

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # the EMA weights gathered like the trained ones: swapped into the shards meanwhile
        self._swap()
        try:
            ema_state = runner.strategy.model_state_dict()
        finally:
            self._swap()
        model_state = checkpoint['state_dict']
        source = {f'module.{k}': model_state[k] for k in ema_state if k in model_state}
        checkpoint['ema_state_dict'] = dict(steps=torch.tensor(self.steps), **source)
        model_state.update(ema_state)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        ema_state = checkpoint.get('ema_state_dict')
        if ema_state is None:
            return  # the EMA starts from the loaded weights at the first update (steps 0)
        if not getattr(runner, '_resume', False):
            # load_from: the model gets `state_dict`, which holds the EMA weights
            return
        # Resume: the EMA weights (under `state_dict`) go into the shards through the model,
        # then `state_dict` gets the trained weights back, which the strategy loads next.
        model_state = checkpoint['state_dict']
        runner.strategy.load_model_state_dict(dict(model_state), strict=False)
        with torch.no_grad():
            for ema, src in zip(self._ema, self._src):
                ema.copy_(src)
        for key, value in ema_state.items():
            if key.startswith('module.'):
                model_state[key[len('module.'):]] = value
        self.steps = int(ema_state.get('steps', 0))


def check_strategy_dependencies(cfg) -> None:
    """Stop with an error naming the missing package when the config's strategy needs one.

    Args:
        cfg: The config (``strategy.type`` is looked at).

    Raises:
        ImportError: ``strategy.type`` is ``DeepSpeedStrategy`` and ``deepspeed`` is not installed.
    """
    strategy = cfg.get('strategy') or {}
    kind = strategy.get('type') if isinstance(strategy, dict) else type(strategy).__name__
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))
    if name.rsplit('.', 1)[-1] == 'DeepSpeedStrategy' and importlib.util.find_spec('deepspeed') is None:
        raise ImportError(
            'this config trains with strategy DeepSpeedStrategy, which needs the optional package '
            '`deepspeed` (not installed): `pip install deepspeed` (CUDA machines), or use the '
            'FSDP variant of the config (strategy InternImageFSDPStrategy, torch only)')


def _type_name(kind) -> str:
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))
    return name.rsplit('.', 1)[-1]


def use_sharded_ema(cfg) -> bool:
    """Put :class:`ShardedEMAHook` (same arguments) in place of the config's EMA hooks under FSDP.

    Args:
        cfg: The config; ``custom_hooks`` is edited in place when ``strategy.type`` is an FSDP
            strategy.

    Returns:
        Whether a hook was replaced.
    """
    strategy = cfg.get('strategy')
    if not isinstance(strategy, dict) or _type_name(strategy.get('type')) not in _FSDP_STRATEGIES:
        return False
    replaced = False
    for hook in cfg.get('custom_hooks') or []:
        if isinstance(hook, dict) and _type_name(hook.get('type')) in _EMA_HOOKS:
            hook['type'] = 'ShardedEMAHook'
            replaced = True
    return replaced
