"""Run an exported model on one image in ONNX Runtime; prints (and draws) what image_demo.py does.

    python tools/deploy/ort_infer.py CONFIG MODEL.onnx IMAGE [--out-file out.png] [--threads N]

The image goes through the config's test pipeline and data preprocessor (as in PyTorch), the
tensors through ONNX Runtime. Detection then runs mmdet's own post-processing on the ONNX Runtime
outputs: the RPN's proposal NMS, the RoI heads' files (MODEL.roi_bbox.onnx, MODEL.roi_mask.onnx),
box decoding + NMS and mask pasting, so the boxes and masks are those of ``tools/image_demo.py``.
The model built from CONFIG only provides these functions and the preprocessing; its weights are
not used. DCNv3 custom-op files load the library of ``make deploy-ortlib``.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from tools.deploy import common  # noqa: E402
from tools.deploy.common import DeployError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='ONNX Runtime inference on one image.')
    p.add_argument('config')
    p.add_argument('model', help='the .onnx file written by export_onnx.py')
    p.add_argument('image')
    p.add_argument('--out-file', default=None, help='where to draw the result')
    p.add_argument('--score-thr', type=float, default=0.3, help='detection: boxes to print/draw')
    p.add_argument('--topk', type=int, default=5, help='classification: classes to print')
    p.add_argument('--threads', type=int, default=None, help='ONNX Runtime intra-op threads')
    return p.parse_args(argv)


def classify(args, cfg, model, session) -> torch.Tensor:
    x, _ = common.preprocess(model, cfg, 'mmpretrain', args.image)
    scores = common.run_session(session, x)[0][0].softmax(-1)
    classes = model.dataset_meta.get('classes') or [str(i) for i in range(len(scores))]
    top = scores.topk(min(args.topk, len(scores)))
    for rank, (score, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
        print(f'{rank}. {classes[idx]:>20s} {score:.4f}')
    return scores


def segment(args, cfg, model, session) -> torch.Tensor:
    from mmseg.models.utils import resize

    x, samples = common.preprocess(model, cfg, 'mmseg', args.image)
    logits = common.run_session(session, x)[0]
    meta = samples[0].metainfo
    # As mmseg's postprocess_result: drop the padding, then back to the original image size.
    h, w = meta['img_shape']
    logits = resize(logits[:, :, :h, :w], size=meta['ori_shape'], mode='bilinear',
                    align_corners=model.decode_head.align_corners)
    pred = logits.argmax(1)[0]
    classes = model.dataset_meta.get('classes') or [str(i) for i in range(logits.shape[1])]
    ids, counts = torch.unique(pred, return_counts=True)
    for i, c in sorted(zip(ids.tolist(), counts.tolist()), key=lambda t: -t[1]):
        print(f'{classes[i]:>16s} {c / pred.numel():6.1%} of the pixels')
    if args.out_file:
        import mmcv
        from mmengine.structures import PixelData
        from mmseg.registry import VISUALIZERS
        from mmseg.structures import SegDataSample

        vis = VISUALIZERS.build(cfg.visualizer)
        vis.dataset_meta = model.dataset_meta
        sample = SegDataSample(pred_sem_seg=PixelData(data=pred[None]))
        vis.add_datasample('result', mmcv.imread(args.image, channel_order='rgb'), sample,
                           draw_gt=False, show=False, out_file=args.out_file)
        print(f'overlay written to {args.out_file}')
    return pred


def detect(args, cfg, model, session):
    """The detections (InstanceData, in original-image pixels) of one image."""
    from mmdet.structures.bbox import bbox2roi

    x, samples = common.preprocess(model, cfg, 'mmdet', args.image)
    metas = [s.metainfo for s in samples]
    outs = common.run_session(session, x)
    levels = len(outs) // 3
    feats, cls_scores, bbox_preds = outs[:levels], outs[levels:2 * levels], outs[2 * levels:]
    roi_head = model.roi_head
    with torch.no_grad():
        proposals = model.rpn_head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas,
                                                   cfg=model.test_cfg.rpn, rescale=False)
        heads = {}
        for suffix, extractor, _ in common.roi_stages(model):
            path = common.sibling_path(args.model, suffix)
            heads[suffix] = (common.ort_session(path, args.threads), extractor.num_inputs)

        def run_head(suffix: str, rois: torch.Tensor) -> list[torch.Tensor]:
            sess, n = heads[suffix]
            return common.run_session(sess, rois, *feats[:n])

        # StandardRoIHead.predict: boxes in the network's input frame, then masks rescaled.
        rois = bbox2roi([p.bboxes for p in proposals])
        if rois.shape[0] == 0:
            raise DeployError('the RPN proposed no boxes for this image')
        cls_score, bbox_pred = run_head('roi_bbox', rois)
        results = roi_head.bbox_head.predict_by_feat(
            rois=(rois,), cls_scores=(cls_score,), bbox_preds=(bbox_pred,), batch_img_metas=metas,
            rcnn_test_cfg=roi_head.test_cfg, rescale=not roi_head.with_mask)
        if roi_head.with_mask:
            mask_rois = bbox2roi([r.bboxes for r in results])
            if mask_rois.shape[0] == 0:
                results = roi_head.bbox_head.predict_by_feat(
                    rois=(rois,), cls_scores=(cls_score,), bbox_preds=(bbox_pred,),
                    batch_img_metas=metas, rcnn_test_cfg=roi_head.test_cfg, rescale=True)
            else:
                mask_pred = run_head('roi_mask', mask_rois)[0]
                results = roi_head.mask_head.predict_by_feat(
                    mask_preds=(mask_pred,), results_list=results, batch_img_metas=metas,
                    rcnn_test_cfg=roi_head.test_cfg, rescale=True)
    pred = results[0]
    keep = pred.scores >= args.score_thr
    classes = model.dataset_meta.get('classes') or []
    for box, score, label in zip(pred.bboxes[keep], pred.scores[keep], pred.labels[keep]):
        x0, y0, x1, y1 = (round(float(v), 1) for v in box)
        name = classes[int(label)] if classes else str(int(label))
        print(f'{name:>16s} {float(score):.3f}  box ({x0}, {y0}, {x1}, {y1})')
    print(f'{int(keep.sum())} detections above {args.score_thr}'
          + (f'; drawn into {args.out_file}' if args.out_file else ''))
    if args.out_file:
        import mmcv
        from mmdet.registry import VISUALIZERS

        samples[0].pred_instances = pred
        vis = VISUALIZERS.build(cfg.visualizer)
        vis.dataset_meta = model.dataset_meta
        vis.add_datasample('result', mmcv.imread(args.image, channel_order='rgb'),
                           data_sample=samples[0], draw_gt=False, show=False,
                           out_file=args.out_file, pred_score_thr=args.score_thr)
    return pred


TASKS = {'mmpretrain': classify, 'mmseg': segment, 'mmdet': detect}


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.image):
        raise DeployError(f'IMAGE {args.image!r} does not exist')
    cfg, scope = common.load_config(args.config)
    common.env_threads(args.threads)
    session = common.ort_session(args.model, args.threads)
    model = common.build_model(cfg, scope)
    return TASKS[scope](args, cfg, model, session)


if __name__ == '__main__':
    try:
        main()
    except DeployError as e:
        sys.exit(f'error: {e}')
