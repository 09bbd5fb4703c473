from .internimage_head import (
    AttentionPoolingBlock,
    CrossAttention,
    InternImageClipHead,
    InternImageClsHead,
)

__all__ = ['InternImageClsHead', 'InternImageClipHead', 'AttentionPoolingBlock', 'CrossAttention']
