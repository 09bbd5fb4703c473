"""Detection data pieces: up-front checks of COCO-format annotation files."""
from .checks import check_coco_annotations, check_datasets, coco_datasets

__all__ = ['check_coco_annotations', 'check_datasets', 'coco_datasets']
