"""mmpretrain ``ImageClassifier`` whose state dict has the published InternImage key layout.

mmpretrain's ``ImageClassifier`` stores its parts as ``backbone.*`` and ``head.*``; the published
ImageNet checkpoints have ``patch_embed.*``, ``levels.*``, ``conv_head.*``, ``head.weight``... at the top
level (under ``model`` in the file). Rather than converting files, this classifier maps keys in both
directions inside ``state_dict()`` / ``load_state_dict()`` (torch hooks, which mmengine's checkpoint
functions also run):

* saving removes the ``backbone.`` and ``head.`` prefixes, so what it writes (``state_dict()``, mmengine
  checkpoints) has exactly the published keys;
* loading accepts both layouts: a published state dict (recognised by top-level ``patch_embed.*`` /
  ``levels.*`` keys) gets the prefixes back by module name; the prefixed layout loads as is. A whole
  published checkpoint passed as a state dict (``{'model': {...}, ...}``, which is what mmengine's
  ``load_from`` hands over for such a file) is unwrapped first.

The unprefixed names cannot collide: backbone children (``patch_embed``, ``levels``) and head children
(``conv_head``, ``head``, ``dcnv3_head_*``, ``clip_projector``, ``fc_norm``) are distinct.
"""
from __future__ import annotations

from collections.abc import Mapping

from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS

__all__ = ['InternImageClassifier']

_STRIPPED = ('backbone.', 'head.')


@MODELS.register_module()
class InternImageClassifier(ImageClassifier):
    """``ImageClassifier`` (same arguments) that saves and loads the published key layout."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for part in ('backbone', 'head'):
            if getattr(self, part, None) is None:
                raise ValueError(f'InternImageClassifier needs a {part}')
        self.register_state_dict_post_hook(_to_published_keys)
        self.register_load_state_dict_pre_hook(_from_published_keys)

    def _published_roots(self) -> dict[str, str]:
        """Top-level published name -> our child module holding it."""
        roots = {}
        for part in ('backbone', 'head'):
            for name in getattr(self, part)._modules:
                roots[name] = part
            for name in getattr(self, part)._parameters:
                roots[name] = part
        return roots


def _replace_contents(state_dict: dict, items) -> None:
    """Rewrite ``state_dict`` in place (callers hold references to it) keeping the given order."""
    items = list(items)
    state_dict.clear()
    state_dict.update(items)


def _to_published_keys(module, state_dict, prefix, local_metadata) -> None:
    items = []
    for k, v in state_dict.items():
        if k.startswith(prefix):
            rest = k[len(prefix):]
            for p in _STRIPPED:
                if rest.startswith(p):
                    rest = rest[len(p):]
                    break
            k = prefix + rest
        items.append((k, v))
    _replace_contents(state_dict, items)


def _from_published_keys(module, state_dict, prefix, local_metadata, strict, missing_keys,
                         unexpected_keys, error_msgs) -> None:
    # A whole checkpoint file given as the state dict: take its weights.
    if not prefix:
        for key in ('state_dict', 'model'):
            if isinstance(state_dict.get(key), Mapping):
                _replace_contents(state_dict, state_dict[key].items())
                break
    ours = [k for k in state_dict if k.startswith(prefix)]
    rests = [k[len(prefix):] for k in ours]
    rests = [r[len('module.'):] if r.startswith('module.') else r for r in rests]
    if any(r.startswith(_STRIPPED[0]) for r in rests):
        return  # already in mmpretrain's layout
    roots = module._published_roots()
    mapping = {}
    for k, r in zip(ours, rests):
        part = roots.get(r.split('.', 1)[0])
        mapping[k] = prefix + (f'{part}.{r}' if part else r)
    _replace_contents(state_dict, ((mapping.get(k, k), v) for k, v in state_dict.items()))
