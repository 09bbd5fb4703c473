"""Run one image through a trained model and show what it predicts.

    python tools/image_demo.py IMAGE CONFIG CHECKPOINT [--out-file out.png] [--device cpu]
                               [--cfg-options key=value ...]

A thin command line over the upstream inferencers; the config's ``default_scope`` picks one:

- ``mmdet``: ``DetInferencer`` draws the predicted boxes and masks above ``--score-thr`` into
  ``--out-file`` and prints them;
- ``mmseg``: ``MMSegInferencer`` writes the colour overlay of the predicted segmentation into
  ``--out-file`` and prints each class's share of the pixels;
- ``mmpretrain``: ``ImageClassificationInferencer`` prints the ``--topk`` classes with their
  scores (and draws the top prediction into ``--out-file`` when given).

The config's ``custom_imports`` register InternImage before the inferencer builds the model. A
checkpoint of another model is refused as it is loaded (the inferencers load non-strictly and
would otherwise predict with random weights).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

import mmcv_custom  # noqa: E402,F401  torch.load allow-list for mmengine checkpoints
from mmcv_custom.checkpoint import checked_whole_model_loading  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Single-image inference demo.')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-file', default=None, help='where to write the drawn result')
    parser.add_argument('--device', default='cuda:0' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection: boxes to draw')
    parser.add_argument('--opacity', type=float, default=0.5, help='segmentation overlay')
    parser.add_argument('--topk', type=int, default=5, help='classification: classes to print')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        metavar='KEY=VALUE', help='override config entries, as in tools/train.py')
    return parser.parse_args(argv)


def _write_rgb(image: np.ndarray, out_file: str) -> None:
    mmcv.imwrite(mmcv.rgb2bgr(image), out_file)


def detect(cfg: Config, args) -> None:
    from mmdet.apis import DetInferencer

    with checked_whole_model_loading(args.checkpoint):
        inferencer = DetInferencer(cfg, args.checkpoint, device=args.device, show_progress=False)
    result = inferencer(args.image, return_vis=args.out_file is not None, no_save_vis=True,
                        no_save_pred=True, pred_score_thr=args.score_thr)
    pred = result['predictions'][0]
    classes = inferencer.model.dataset_meta['classes']
    shown = [(s, label, box) for s, label, box in zip(pred['scores'], pred['labels'], pred['bboxes'])
             if s >= args.score_thr]
    for score, label, box in shown:
        x0, y0, x1, y1 = (round(float(v), 1) for v in box)
        print(f'{classes[label]:>16s} {score:.3f}  box ({x0}, {y0}, {x1}, {y1})')
    if args.out_file:
        _write_rgb(result['visualization'][0], args.out_file)
    print(f'{len(shown)} detections above {args.score_thr}'
          + (f'; drawn into {args.out_file}' if args.out_file else ''))


def segment(cfg: Config, args) -> None:
    from mmseg.apis import MMSegInferencer

    with checked_whole_model_loading(args.checkpoint):
        inferencer = MMSegInferencer(cfg, args.checkpoint, device=args.device)
    inferencer.show_progress = False
    result = inferencer(args.image, return_vis=args.out_file is not None, opacity=args.opacity)
    pred = result['predictions']  # one image: its class-index map
    classes = inferencer.model.dataset_meta['classes']
    ids, counts = np.unique(pred, return_counts=True)
    for i, c in sorted(zip(ids.tolist(), counts.tolist()), key=lambda t: -t[1]):
        print(f'{classes[i]:>16s} {c / pred.size:6.1%} of the pixels')
    if args.out_file:
        _write_rgb(result['visualization'], args.out_file)
        print(f'overlay written to {args.out_file}')


def classify(cfg: Config, args) -> None:
    from mmpretrain.apis import ImageClassificationInferencer
    from mmpretrain.visualization import UniversalVisualizer

    # mmpretrain's inferencer builds its pipeline in the current default scope, which another
    # task's inferencer may have set in this process
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with checked_whole_model_loading(args.checkpoint):
            inferencer = ImageClassificationInferencer(cfg, pretrained=args.checkpoint,
                                                       device=args.device)
        # mmpretrain draws a progress bar without ending its line, which would swallow the
        # first result line when stdout is not a terminal; for one image it says nothing anyway
        with contextlib.redirect_stdout(io.StringIO()):
            sample = inferencer(args.image, return_datasamples=True)[0]
    scores = sample.pred_score.cpu()
    classes = inferencer.classes or [str(i) for i in range(len(scores))]
    top = scores.topk(min(args.topk, len(scores)))
    for rank, (score, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
        print(f'{rank}. {classes[idx]:>20s} {score:.4f}')
    if args.out_file:
        image = mmcv.imread(args.image, channel_order='rgb')
        UniversalVisualizer().visualize_cls(image, sample, classes=classes, draw_gt=False,
                                            out_file=args.out_file)
        print(f'top prediction drawn into {args.out_file}')


TASKS = {'mmdet': detect, 'mmseg': segment, 'mmpretrain': classify}


def main(argv=None) -> None:
    args = parse_args(argv)
    if not osp.isfile(args.image):
        raise FileNotFoundError(f'image {args.image!r} does not exist')
    scope = Config.fromfile(args.config, import_custom_modules=False).get('default_scope')
    if scope not in TASKS:
        raise ValueError(f'the config {args.config!r} has default_scope {scope!r}; '
                         f'image_demo.py handles {sorted(TASKS)}')
    cfg = Config.fromfile(args.config)  # imports the config's custom_imports
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    TASKS[scope](cfg, args)


if __name__ == '__main__':
    main()
