from .internimage_classifier import InternImageClassifier

__all__ = ['InternImageClassifier']
