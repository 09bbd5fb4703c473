# `make demo`: Mask R-CNN + InternImage on the embedded COCO-format demo data, on CPU.
# Generates data/demo_coco (synthetic shapes with polygon masks), trains with tools/dist_train.sh
# (progress lines with ETA every 10 iterations), then evaluates the last checkpoint with
# tools/test.py, which prints pycocotools' box (bbox) and mask (segm) mAP tables.
#
# DEMO_DET_NPROC processes share the config's batch of 4 images (one thread each: on a small,
# busy CPU, separate processes scale better than one process with several OpenMP threads).
DEMO_DET_CONFIG ?= configs/demo/mask-rcnn_internimage-micro_fpn_demo-coco.py
DEMO_DET_WORK_DIR ?= work_dirs/demo-det
DEMO_DET_NPROC ?= 2

.PHONY: demo demo-det
demo: demo-det

demo-det: setup
	$(PY) tools/make_demo_data.py --task det
	PORT=$${PORT:-29510} OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} tools/dist_train.sh $(DEMO_DET_CONFIG) $(DEMO_DET_NPROC) \
		--work-dir $(DEMO_DET_WORK_DIR) --cfg-options train_dataloader.batch_size=$$((4 / $(DEMO_DET_NPROC)))
	$(PY) tools/test.py $(DEMO_DET_CONFIG) "$$(cat $(DEMO_DET_WORK_DIR)/last_checkpoint)" --work-dir $(DEMO_DET_WORK_DIR)/test
