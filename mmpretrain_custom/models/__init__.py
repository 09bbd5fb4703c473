from .arch import internimage_cls_model
from .backbones import InternImage
from .classifiers import InternImageClassifier
from .heads import AttentionPoolingBlock, InternImageClipHead, InternImageClsHead

__all__ = [
    'InternImage', 'InternImageClassifier', 'InternImageClsHead', 'InternImageClipHead',
    'AttentionPoolingBlock', 'internimage_cls_model',
]
