"""Run one image through a trained model and show what it predicts.

    python tools/image_demo.py IMAGE CONFIG CHECKPOINT [--out-file out.png] [--device cpu]

The config's ``default_scope`` picks the task:

- ``mmdet``: draws the predicted boxes and masks above ``--score-thr`` into ``--out-file``;
- ``mmseg``: writes the colour overlay of the predicted segmentation into ``--out-file``;
- ``mmpretrain``: prints the ``--topk`` classes with their scores (and writes the image with
  the top prediction when ``--out-file`` is given).
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
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

import mmcv_custom  # noqa: E402,F401  torch.load allow-list for mmengine checkpoints
import mmcv_custom.safe_load  # noqa: E402,F401
from mmcv_custom.checkpoint import checked_whole_model_loading  # noqa: E402

# The init functions below load non-strictly: within checked_whole_model_loading a checkpoint of
# another model is refused instead of drawing the predictions of random weights.


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
    return parser.parse_args(argv)


def detect(args) -> None:
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS

    with checked_whole_model_loading(args.checkpoint):
        model = init_detector(args.config, args.checkpoint, device=args.device)
    result = inference_detector(model, args.image)
    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    image = mmcv.imread(args.image, channel_order='rgb')
    visualizer.add_datasample('result', image, data_sample=result, draw_gt=False, show=False,
                              out_file=args.out_file, pred_score_thr=args.score_thr)
    pred = result.pred_instances
    keep = pred.scores >= args.score_thr
    classes = model.dataset_meta['classes']
    for box, score, label in zip(pred.bboxes[keep], pred.scores[keep], pred.labels[keep]):
        x0, y0, x1, y1 = (round(float(v), 1) for v in box)
        print(f'{classes[int(label)]:>16s} {float(score):.3f}  box ({x0}, {y0}, {x1}, {y1})')
    print(f'{int(keep.sum())} detections above {args.score_thr}'
          + (f'; drawn into {args.out_file}' if args.out_file else ''))


def segment(args) -> None:
    from mmseg.apis import inference_model, init_model, show_result_pyplot

    with checked_whole_model_loading(args.checkpoint):
        model = init_model(args.config, args.checkpoint, device=args.device)
    # inference has no label map: drop every annotation loader (mmseg only removes its own)
    model.cfg.test_pipeline = [t for t in model.cfg.test_pipeline
                               if 'Annotations' not in t['type']]
    result = inference_model(model, args.image)
    show_result_pyplot(model, args.image, result, show=False, opacity=args.opacity,
                       out_file=args.out_file, draw_gt=False)
    pred = result.pred_sem_seg.data.squeeze(0)
    classes = model.dataset_meta['classes']
    ids, counts = torch.unique(pred, return_counts=True)
    for i, c in sorted(zip(ids.tolist(), counts.tolist()), key=lambda t: -t[1]):
        print(f'{classes[i]:>16s} {c / pred.numel():6.1%} of the pixels')
    if args.out_file:
        print(f'overlay written to {args.out_file}')


def classify(args) -> None:
    from mmpretrain.apis import ImageClassificationInferencer
    from mmpretrain.visualization import UniversalVisualizer

    with checked_whole_model_loading(args.checkpoint):
        inferencer = ImageClassificationInferencer(args.config, pretrained=args.checkpoint,
                                                   device=args.device)
    # mmpretrain draws a progress bar without ending its line, which would swallow the first
    # result line when stdout is not a terminal; for one image the bar says nothing anyway.
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
    TASKS[scope](args)


if __name__ == '__main__':
    main()
